package cluster

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/raft"
)

// A lone node leads and delivers for everyone, but only once it has applied
// what earlier terms committed: its fence is up until its own barrier of the
// term, which the fence's monitor issues without waiting for the node's
// housekeeping to rebalance.
func TestLoneLeaderDeliversOnlyAfterItsBarrier(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := raft.Open(raft.Options{Dir: t.TempDir(), NodeID: "solo", RaftAddr: addr, Bootstrap: true,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := New(Options{Store: st, ID: "solo", PeerDownAfter: time.Second, Logger: quiet})
	if !c.Fenced() || c.Owns("someone") {
		t.Fatal("a node that has heard from no one is not fenced")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// Even with the flag down, what keeps a new leader from delivering is
	// the missing barrier of its term.
	c.fence.fenced.Store(false)
	if ok, why := c.inLease(time.Now()); ok || c.Owns("someone") || !strings.Contains(why, "new leader") {
		t.Fatalf("a new leader before its barrier: in lease %v (%s)", ok, why)
	}
	c.fence.fenced.Store(true)
	c.Start()
	defer c.Close()
	for c.Fenced() {
		if ctx.Err() != nil {
			t.Fatal("the lone leader's fence never lifted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !c.Owns("someone") {
		t.Fatal("a lone leader without a slot table owns no one")
	}
	if got, want := c.barrierTerm.Load(), st.Raft().CurrentTerm(); got != want {
		t.Fatalf("lifted with the barrier of term %d in term %d", got, want)
	}
}

// The lease leaves the leader's own lease and the heartbeat timeout room
// before the grace period after which slots move (DESIGN.md, Fencing).
func TestFenceLeaseIsHalfThePeerDownGrace(t *testing.T) {
	for _, p := range []time.Duration{time.Second, 3 * time.Second, 10 * time.Second} {
		if l := fenceLease(p); l != p/2 {
			t.Errorf("lease for %v: %v", p, l)
		}
		if tick := fenceTick(fenceLease(p)); tick > fenceLease(p)/4 {
			t.Errorf("tick %v for a lease of %v: a lapse could go unseen for too long", tick, fenceLease(p))
		}
	}
	if f := newFence(0); f.lease != defaultPeerDownAfter/2 || !f.fenced.Load() {
		t.Errorf("an unset grace period: lease %v, fenced %v", f.lease, f.fenced.Load())
	}
}
