package raft

import (
	"sync"

	hraft "github.com/hashicorp/raft"
)

// pipelineTransport is hashicorp/raft's NetworkTransport with append
// pipelines whose sender cannot block for good.
//
// In hashicorp/raft (v1.7.3) a leader replicates to a follower through a
// pipeline: a sender writes AppendEntries requests, the pipeline's reader
// decodes the answers and hands them over a channel to the replication's
// decoder. Both of the pipeline's channels hold MaxRPCsInFlight-2 items,
// none at the default of two. The decoder stops at the first refused
// append (or newer term), and the sender only looks at that between two
// sends: the reader then blocks handing over the next answer, the sender
// on handing the reader its next request, and nothing ever wakes either.
// The follower gets heartbeats but no more entries, and the leader's
// shutdown waits on that replication forever (hashicorp/raft#612; CI met
// it once under a write load). Here the answers are taken from the reader
// as they come and held until the decoder wants them or the pipeline is
// closed, so the sender always moves on.
type pipelineTransport struct {
	*hraft.NetworkTransport
	beats *heartbeatGate
}

// SetHeartbeatHandler implements hraft.Transport. Raft handles a heartbeat
// on the transport's connection goroutine, outside its own, and its
// Shutdown does not wait for one under way: a heartbeat that passed Raft's
// shutdown check could then write the term to a log store already closed,
// and Raft panics on that ("failed to save current term: closed"; CI met
// it once). Each heartbeat goes through the gate, which the store closes,
// waiting for those under way, before it closes the log.
func (t pipelineTransport) SetHeartbeatHandler(cb func(hraft.RPC)) {
	if cb == nil || t.beats == nil {
		t.NetworkTransport.SetHeartbeatHandler(cb)
		return
	}
	t.NetworkTransport.SetHeartbeatHandler(func(rpc hraft.RPC) {
		if !t.beats.enter() {
			rpc.Respond(nil, hraft.ErrRaftShutdown)
			return
		}
		defer t.beats.leave()
		cb(rpc)
	})
}

// heartbeatGate counts the heartbeats being handled; once closed it lets
// none in.
type heartbeatGate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (g *heartbeatGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *heartbeatGate) leave() { g.wg.Done() }

// close lets no more heartbeats in and waits for those under way.
func (g *heartbeatGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// AppendEntriesPipeline implements hraft.Transport.
func (t pipelineTransport) AppendEntriesPipeline(id hraft.ServerID, target hraft.ServerAddress) (hraft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return newDrainedPipeline(p), nil
}

// drainedPipeline holds the answers of its pipeline that the consumer has
// not taken yet. They are at most the requests sent, and the sender stops
// soon after its consumer has.
type drainedPipeline struct {
	hraft.AppendPipeline
	out    chan hraft.AppendFuture
	closed chan struct{}
	once   sync.Once
}

func newDrainedPipeline(p hraft.AppendPipeline) *drainedPipeline {
	d := &drainedPipeline{AppendPipeline: p, out: make(chan hraft.AppendFuture), closed: make(chan struct{})}
	go d.drain()
	return d
}

func (d *drainedPipeline) drain() {
	in := d.AppendPipeline.Consumer()
	var held []hraft.AppendFuture
	for {
		var out chan hraft.AppendFuture
		var next hraft.AppendFuture
		if len(held) > 0 {
			out, next = d.out, held[0]
		}
		select {
		case f := <-in:
			held = append(held, f)
		case out <- next:
			held[0] = nil
			held = held[1:]
		case <-d.closed:
			return
		}
	}
}

// Consumer implements hraft.AppendPipeline.
func (d *drainedPipeline) Consumer() <-chan hraft.AppendFuture { return d.out }

// Close implements hraft.AppendPipeline.
func (d *drainedPipeline) Close() error {
	d.once.Do(func() { close(d.closed) })
	return d.AppendPipeline.Close()
}
