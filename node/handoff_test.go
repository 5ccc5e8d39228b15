package node_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/node"
)

// A leader stopped the way an operator stops it (SIGTERM, a rolling
// restart) hands its leadership to another node first: the others have a
// leader at once instead of after their heartbeat timeout, and writes sent
// through a follower meanwhile are all answered 201. The heartbeat timeout
// here is 3 s, so without the hand-off no node could lead within the 1.5 s
// the test allows after the old leader stopped (a follower waits at least
// its timeout since the last heartbeat before it stands).
func TestAStoppedLeaderHandsOffItsLeadership(t *testing.T) {
	ctx := context.Background()
	cfgs := []node.Config{clusterConfig(t, "h1")}
	cfgs = append(cfgs, clusterConfig(t, "h2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "h3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	for i := range cfgs {
		cfgs[i].Raft.HeartbeatTimeout, cfgs[i].Raft.ElectionTimeout = 3*time.Second, 3*time.Second
	}
	nodes, adminToken := startSignedIn(t, cfgs)
	pollThreeVoters(t, nodes[0], adminToken)
	leader, survivors := leaderAndFollowers(t, nodes)
	via := survivors[0]

	userToken, appToken, unsid := liveSender(t, via, adminToken, "rolling", "ops.handoff.test")

	// Writes through a follower for the whole stop, with a client that
	// retries nothing: a 503 is a failure here.
	sender, err := client.New(via.URL, client.WithToken(appToken))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		acked   []string
		failed  []error
		stopped = make(chan struct{})
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stopped:
				return
			default:
			}
			id := fmt.Sprintf("w%d", i)
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := sender.Send(sctx, unsid, &client.Notification{AppNotificationID: id,
				Payload: &client.Payload{RawContent: id}})
			cancel()
			mu.Lock()
			if err != nil {
				failed = append(failed, fmt.Errorf("send %s: %w", id, err))
			} else {
				acked = append(acked, id)
			}
			mu.Unlock()
		}
	}()
	pollUntil(t, "writes under way", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 5 {
			return fmt.Errorf("%d acknowledged", len(acked))
		}
		return nil
	})

	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = leader.Close(cctx)
	cancel()
	if err != nil {
		t.Fatalf("close the leader: %v", err)
	}
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	pollFor(t, 1500*time.Millisecond, "a new leader that both survivors follow", func() error {
		var leaders []string
		for _, n := range survivors {
			_, id := n.Store().Raft().LeaderWithID()
			leaders = append(leaders, string(id))
		}
		if leaders[0] == "" || leaders[0] != leaders[1] || leaders[0] == leader.Config.NodeID {
			return fmt.Errorf("the survivors follow %q", leaders)
		}
		return nil
	})
	pollUntil(t, "writes acknowledged after the stop", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < before+5 {
			return fmt.Errorf("%d acknowledged, %d before", len(acked), before)
		}
		return nil
	})
	close(stopped)
	<-done
	if len(failed) > 0 {
		t.Fatalf("%d of %d writes through a follower failed during the leader's stop; the first: %v",
			len(failed), len(failed)+len(acked), failed[0])
	}
	want := slices.Clone(acked)
	slices.Sort(want)
	for _, n := range survivors {
		pollUntil(t, "every acknowledged write on "+n.Config.NodeID, func() error {
			feed, err := clientFor(t, n, userToken).Notifications(ctx)
			if err != nil {
				return err
			}
			var got []string
			for _, x := range feed {
				got = append(got, x.AppNotificationID)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("%d in the feed, %d acknowledged", len(got), len(want))
			}
			return nil
		})
	}
}
