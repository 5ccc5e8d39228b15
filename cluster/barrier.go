package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-notify/herald/raft"
)

// Read-index barriers (DESIGN.md, "Reads that see the leader's commit").
//
// A node answers reads from its own replica, which may trail the leader by
// the entries in flight. Before it says "not here" (401, 403, 404, 410), the
// API runs a Barrier: it learns the leader's commit index as of a moment
// after it asked, and waits until its own state holds everything up to it.
// Anything a client got from any node was committed before the client could
// show it here, so after the barrier it is here too.

// BarrierTimeout bounds a barrier. Past it the caller answers from what it
// has, as it would have without one.
const BarrierTimeout = 500 * time.Millisecond

// ReadyLag is the lag /readyz allows: a node is ready when a barrier, the
// leader's commit index included, completes within it.
const ReadyLag = 200 * time.Millisecond

const readIndexPath = "/internal/cluster/readindex"

// readIndexAnswer is the leader's answer to readIndexPath.
type readIndexAnswer struct {
	Index uint64 `json:"index"`
}

// readRounds shares the leader round trips of concurrent barriers. A
// barrier joins the next round that starts after it asked, never one in
// flight (that round may have read an older commit index), so a flood of
// barriers costs one read-index request per round, and rounds run one after
// another.
type readRounds struct {
	mu      sync.Mutex
	next    *readRound // collects the barriers asked since the last round started
	running bool

	asked    atomic.Uint64 // barriers asked on this node
	failed   atomic.Uint64 // barriers that gave up
	rounds   atomic.Uint64 // rounds this node ran
	answered atomic.Uint64 // read-index requests this node answered for others
}

type readRound struct {
	done  chan struct{}
	index uint64
	err   error
}

// Barrier returns once this node has applied everything the leader had
// committed when the barrier was asked for, or with an error after at most
// BarrierTimeout (or when ctx ends first). A lone node's barrier is a local
// leadership check and costs next to nothing.
func (c *Cluster) Barrier(ctx context.Context) error {
	c.reads.asked.Add(1)
	err := c.barrier(ctx)
	if err != nil {
		c.reads.failed.Add(1)
	}
	return err
}

func (c *Cluster) barrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, BarrierTimeout)
	defer cancel()
	index, err := c.readIndex(ctx)
	if err != nil {
		return err
	}
	if err := c.store.WaitThrough(ctx, index); err != nil {
		return &behindError{applied: c.store.Applied(), index: index, err: err}
	}
	return nil
}

// behindError is a barrier that learned the leader's commit index but did
// not apply up to it in time.
type behindError struct {
	applied, index uint64
	err            error
}

func (e *behindError) Error() string {
	return fmt.Sprintf("applied %d of the leader's commit index %d: %v", e.applied, e.index, e.err)
}

func (e *behindError) Unwrap() error { return e.err }

// readIndex joins the next round and returns the commit index it learned.
func (c *Cluster) readIndex(ctx context.Context) (uint64, error) {
	rr := &c.reads
	rr.mu.Lock()
	if rr.next == nil {
		rr.next = &readRound{done: make(chan struct{})}
	}
	round := rr.next
	if !rr.running {
		// Close waits for the rounds, so none reads the store after it
		// is closed.
		if !c.track() {
			rr.mu.Unlock()
			return 0, raft.ErrClosed
		}
		rr.running = true
		go c.runRounds()
	}
	rr.mu.Unlock()
	select {
	case <-round.done:
		return round.index, round.err
	case <-ctx.Done():
		return 0, fmt.Errorf("no answer from the leader: %w", ctx.Err())
	case <-c.stop:
		return 0, raft.ErrClosed
	}
}

// runRounds runs rounds while barriers wait for one.
func (c *Cluster) runRounds() {
	defer c.wg.Done()
	rr := &c.reads
	for {
		rr.mu.Lock()
		round := rr.next
		rr.next = nil
		if round == nil {
			rr.running = false
			rr.mu.Unlock()
			return
		}
		rr.mu.Unlock()
		rr.rounds.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), BarrierTimeout)
		// A round in flight when the cluster closes ends at once.
		go func() {
			select {
			case <-c.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		round.index, round.err = c.fetchReadIndex(ctx)
		cancel()
		close(round.done)
	}
}

// fetchReadIndex is one round: the leader's commit index, from the leader
// itself or asked of it, retried across an election while ctx allows.
func (c *Cluster) fetchReadIndex(ctx context.Context) (uint64, error) {
	for {
		var err error
		if c.store.IsLeader() {
			var index uint64
			if index, err = c.leaderReadIndex(ctx); err == nil {
				return index, nil
			}
		} else {
			var out readIndexAnswer
			if err = c.callLeader(ctx, readIndexPath, struct{}{}, &out); err == nil {
				return out.Index, nil
			}
		}
		if !errors.Is(err, raft.ErrNotLeader) {
			return 0, err
		}
		if c.waitLeaderChange(ctx) != nil {
			return 0, fmt.Errorf("no leader to ask: %w", err)
		}
	}
}

// leaderReadIndex is the leader's side (Raft §6.4): once per term it commits
// a barrier entry, since until an entry of its own term commits its commit
// index may trail what the previous leader committed; then it reads its
// commit index and confirms with a quorum's heartbeats that it still leads,
// so no newer leader can have committed more.
func (c *Cluster) leaderReadIndex(ctx context.Context) (uint64, error) {
	r := c.store.Raft()
	term := r.CurrentTerm()
	if c.barrierTerm.Load() != term {
		if err := waitFuture(ctx, r.Barrier(BarrierTimeout)); err != nil {
			return 0, leaderError(err)
		}
		c.barrierTerm.Store(term)
	}
	index := c.store.CommitIndex()
	if err := waitFuture(ctx, r.VerifyLeader()); err != nil {
		return 0, leaderError(err)
	}
	if err := c.confirmLeadership(ctx, term); err != nil {
		return 0, err
	}
	return index, nil
}

const leaderCheckPath = "/internal/cluster/leadercheck"

// leaderCheckAnswer is a node's answer to leaderCheckPath: its term and
// the leader it follows ("" when it knows none).
type leaderCheckAnswer struct {
	Term   uint64 `json:"term"`
	Leader string `json:"leader"`
}

func (c *Cluster) serveLeaderCheck(context.Context, *http.Request, []byte) (any, error) {
	r := c.store.Raft()
	_, id := r.LeaderWithID()
	return leaderCheckAnswer{Term: r.CurrentTerm(), Leader: string(id)}, nil
}

// confirmLeadership asks every other voter, in requests sent now, for its
// term and its leader, and returns nil once a quorum (this node included)
// is in term and follows this node. None of them had then voted in a later
// term, so no later leader can have committed anything before the read
// began: the commit index read before asking covers every acknowledged
// write.
//
// VerifyLeader alone does not prove that. hashicorp/raft counts for it any
// answer that arrives while it waits, also one to a heartbeat or an append
// sent before it was asked. A leader paused (SIGSTOP, a stalled VM) while
// those were in flight finds their answers waiting when it resumes, from
// followers that have since elected another leader; it then confirmed its
// leadership and answered a strong read without a delete the new leader had
// committed and acknowledged (the fault harness, seed 1796480708445478276).
func (c *Cluster) confirmLeadership(ctx context.Context, term uint64) error {
	f := c.store.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return leaderError(err)
	}
	var others []hraft.Server
	voters := 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage != hraft.Voter {
			continue
		}
		voters++
		if string(srv.ID) != c.id {
			others = append(others, srv)
		}
	}
	return quorumFollows(ctx, voters/2, others, func(ctx context.Context, srv hraft.Server) bool {
		var a leaderCheckAnswer
		err := c.callNode(ctx, string(srv.ID), string(srv.Address), http.MethodPost, leaderCheckPath, struct{}{}, &a, false)
		var pe *peerError
		if errors.As(err, &pe) && pe.status == http.StatusNotFound {
			// A node of an earlier version, during a rolling upgrade: it
			// has no such check, and VerifyLeader's answer stands.
			return true
		}
		return err == nil && a.Term == term && a.Leader == c.id
	})
}

// quorumFollows returns nil once need of others answer yes to ask, and
// raft.ErrNotLeader once so many answered no (or could not be asked) that
// need cannot be reached.
func quorumFollows(ctx context.Context, need int, others []hraft.Server, ask func(context.Context, hraft.Server) bool) error {
	if need <= 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(chan bool, len(others))
	for _, srv := range others {
		go func() { answers <- ask(ctx, srv) }()
	}
	yes, no := 0, 0
	for range others {
		select {
		case ok := <-answers:
			if ok {
				yes++
			} else {
				no++
			}
		case <-ctx.Done():
			return fmt.Errorf("leadership not confirmed: %w", ctx.Err())
		}
		switch {
		case yes >= need:
			return nil
		case len(others)-no < need:
			return raft.ErrNotLeader
		}
	}
	return raft.ErrNotLeader
}

// serveReadIndex answers a follower's round. Only a leader answers; a node
// that lost leadership says so (503) and the follower asks the new one.
func (c *Cluster) serveReadIndex(ctx context.Context, _ *http.Request, _ []byte) (any, error) {
	if !c.store.IsLeader() {
		return nil, raft.ErrNotLeader
	}
	c.reads.answered.Add(1)
	index, err := c.leaderReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return readIndexAnswer{Index: index}, nil
}

// waitFuture waits for a Raft future while ctx allows; Raft answers every
// future eventually (at the latest with ErrRaftShutdown), so the goroutine
// left behind on a timeout ends.
func waitFuture(ctx context.Context, f hraft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func leaderError(err error) error {
	switch {
	case errors.Is(err, hraft.ErrNotLeader), errors.Is(err, hraft.ErrLeadershipLost),
		errors.Is(err, hraft.ErrLeadershipTransferInProgress):
		return raft.ErrNotLeader
	case errors.Is(err, hraft.ErrRaftShutdown):
		return raft.ErrClosed
	}
	return err
}

// BarrierMetrics are the read-barrier counters, for the node's registry:
// how many barriers were asked and how many gave up (their answers came
// from this node's replica as it was), how many rounds served them (each
// one read-index request to the leader, or a local check on the leader),
// and how many read-index requests this node answered as leader. Rounds
// far below barriers is the sharing at work.
func (c *Cluster) BarrierMetrics() []prometheus.Collector {
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
		counter("herald_read_barriers_total", "Read barriers asked on this node.", &c.reads.asked),
		counter("herald_read_barriers_failed_total", "Read barriers that gave up: the leader's commit index was not reached in time.", &c.reads.failed),
		counter("herald_read_barrier_rounds_total", "Rounds that served this node's read barriers.", &c.reads.rounds),
		counter("herald_read_index_requests_total", "Read-index requests this node answered as leader.", &c.reads.answered),
	}
}

// Barrier makes the API's State wait for the leader's commit index.
func (f forwarder) Barrier(ctx context.Context) error { return f.c.Barrier(ctx) }
