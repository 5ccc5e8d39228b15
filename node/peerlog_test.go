package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/node"
)

// A follower that stops is heartbeated by the leader many times a second;
// the leader's log names it, says it is unreachable, once, however many
// heartbeats fail, and says once that it answers again when it is back.
func TestDownPeerIsLoggedOnceAndItsReturnOnce(t *testing.T) {
	cfgs := []node.Config{clusterConfig(t, "p1")}
	cfgs = append(cfgs, clusterConfig(t, "p2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "p3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	logs := make([]*syncbuf.Buffer, 3)
	start := func(i int) *node.Node {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := node.Start(ctx, cfgs[i], slog.New(slog.NewTextHandler(logs[i], nil)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	nodes := make([]*node.Node, 3)
	for i := range cfgs {
		logs[i] = &syncbuf.Buffer{}
		nodes[i] = start(i)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			n.Close(ctx)
			cancel()
			<-n.Stopped()
		}
	})
	var li, vi int
	pollUntil(t, "a leader with two peers", func() error {
		for i, n := range nodes {
			if n.Store().IsLeader() && n.Store().Raft().Stats()["num_peers"] == "2" {
				li = i
				return nil
			}
		}
		return fmt.Errorf("no leader with two peers")
	})
	vi = (li + 1) % 3
	victim := cfgs[vi].NodeID
	survivors := []int{li, 3 - li - vi}

	// Failed heartbeats to the victim, by whichever survivor leads (on a
	// busy machine leadership may move during the test).
	var failed atomic.Int32
	for _, i := range survivors {
		r := nodes[i].Store().Raft()
		obs := hraft.NewObserver(make(chan hraft.Observation, 1), false, func(o *hraft.Observation) bool {
			if f, ok := o.Data.(hraft.FailedHeartbeatObservation); ok && string(f.PeerID) == victim {
				failed.Add(1)
			}
			return false
		})
		r.RegisterObserver(obs)
		defer r.DeregisterObserver(obs)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := nodes[vi].Close(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	// Raft backs off between failed heartbeats up to half the heartbeat
	// timeout (250 ms here): ten failures take a few seconds.
	pollUntil(t, "ten failed heartbeats to the stopped peer", func() error {
		if n := failed.Load(); n < 10 {
			return fmt.Errorf("%d failed heartbeats", n)
		}
		return nil
	})
	about := func(i int) []string {
		var out []string
		for _, l := range strings.Split(logs[i].String(), "\n") {
			if strings.Contains(l, "peer="+victim) && (strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR")) {
				out = append(out, l)
			}
		}
		return out
	}
	reported := 0
	for _, i := range survivors {
		got := about(i)
		if len(got) > 1 {
			t.Errorf("%s logged %d warnings or errors about %s (%d failed heartbeats in all), want at most 1:\n%s",
				cfgs[i].NodeID, len(got), victim, failed.Load(), strings.Join(got, "\n"))
		}
		if len(got) == 1 {
			reported++
			if !strings.Contains(got[0], "peer "+victim+" unreachable") {
				t.Errorf("line %q: want it to say the peer is unreachable", got[0])
			}
		}
	}
	if reported == 0 {
		t.Fatalf("no survivor reported %s down", victim)
	}

	nodes[vi] = start(vi)
	pollUntil(t, "a line saying the peer answers again", func() error {
		for _, i := range survivors {
			if strings.Contains(logs[i].String(), "peer "+victim+" answering again") {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
}
