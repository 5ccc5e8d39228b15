package raft

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// A follower refuses an append while hundreds are in flight, and the
// leader's decoder stops there, as hashicorp/raft's does: the sender must
// still get through its sends (and then see that the decoder stopped),
// where the bare NetworkTransport's pipeline blocked it for good after two
// (hashicorp/raft#612; with raw in place of newDrainedPipeline(raw) this
// test fails so).
func TestAPipelineSenderIsNotStuckAfterItsDecoderStops(t *testing.T) {
	follower, err := hraft.NewTCPTransport("127.0.0.1:0", nil, 1, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	go func() {
		for rpc := range follower.Consumer() {
			rpc.Respond(&hraft.AppendEntriesResponse{Term: 1, Success: false}, nil)
		}
	}()
	leaderTr, err := hraft.NewTCPTransport("127.0.0.1:0", nil, 1, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer leaderTr.Close()
	raw, err := leaderTr.AppendEntriesPipeline("f", follower.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	p := newDrainedPipeline(raw)
	defer p.Close()

	// The decoder takes one answer, finds it refused, and stops.
	first := make(chan bool, 1)
	go func() {
		f := <-p.Consumer()
		first <- f.Response().Success
	}()
	const sends = 600
	var sent atomic.Int64
	go func() {
		for i := range sends {
			req := &hraft.AppendEntriesRequest{RPCHeader: hraft.RPCHeader{ID: []byte("l"), Addr: []byte(leaderTr.LocalAddr())},
				Term: 1, PrevLogEntry: uint64(i), PrevLogTerm: 1}
			if _, err := p.AppendEntries(req, new(hraft.AppendEntriesResponse)); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	if ok := <-first; ok {
		t.Fatal("the follower's answer says success, want refused")
	}
	pollUntil(t, "every send through the pipeline", func() error {
		if n := sent.Load(); n < sends {
			return fmt.Errorf("%d of %d sent", n, sends)
		}
		return nil
	})
}

// The heartbeat gate lets none in once closed, and its close returns only
// when the heartbeats under way have left, so the store closes its log
// after them (Raft writes the term from a heartbeat).
func TestHeartbeatGateWaitsForHeartbeatsUnderWay(t *testing.T) {
	var g heartbeatGate
	if !g.enter() {
		t.Fatal("an open gate refused a heartbeat")
	}
	done := make(chan struct{})
	go func() {
		g.close()
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		closed := g.closed
		g.mu.Unlock()
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("close did not begin")
		}
		runtime.Gosched()
	}
	if g.enter() {
		t.Fatal("a closing gate let a heartbeat in")
	}
	select {
	case <-done:
		t.Fatal("close returned while a heartbeat was under way")
	default:
	}
	g.leave()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return after the heartbeat left")
	}
}
