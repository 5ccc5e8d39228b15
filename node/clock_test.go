package node_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// skewedCluster is a three-node cluster whose nodes read their wall clocks
// through offsets the test moves (node.Config.Clock), purging every
// purgeEvery.
func skewedCluster(t *testing.T, purgeEvery time.Duration) (nodes []*testnode.Node, offsets []*atomic.Int64, adminToken string) {
	t.Helper()
	cfgs := []node.Config{clusterConfig(t, "k1")}
	cfgs = append(cfgs, clusterConfig(t, "k2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "k3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	offsets = make([]*atomic.Int64, len(cfgs))
	for i := range cfgs {
		off := new(atomic.Int64)
		offsets[i] = off
		cfgs[i].Clock = func() time.Time { return time.Now().Add(time.Duration(off.Load())) }
		cfgs[i].PurgeInterval = purgeEvery
	}
	nodes, adminToken = startSignedIn(t, cfgs)
	for _, n := range nodes {
		pollUntil(t, "three members on "+n.Config.NodeID, func() error {
			st, err := clientFor(t, n, adminToken).Cluster(context.Background())
			if err != nil {
				return err
			}
			for _, m := range st.Nodes {
				if m.State != "leader" && m.State != "follower" {
					return fmt.Errorf("member %+v", m)
				}
			}
			if len(st.Nodes) != 3 {
				return fmt.Errorf("%d members", len(st.Nodes))
			}
			return nil
		})
	}
	return nodes, offsets, adminToken
}

// offsetOf is the clock offset of n among nodes.
func offsetOf(nodes []*testnode.Node, offsets []*atomic.Int64, n *testnode.Node) *atomic.Int64 {
	for i := range nodes {
		if nodes[i] == n {
			return offsets[i]
		}
	}
	panic("not a node of the cluster")
}

// A leader whose clock runs an hour ahead purges by the cluster's clock,
// not its own: a notification with half an hour to live stays, while one
// due in seconds goes when it is due. The leader purged both at once, and
// with them every token with less than an hour left.
func TestALeaderAheadDoesNotPurgeEarly(t *testing.T) {
	nodes, offsets, adminToken := skewedCluster(t, 100*time.Millisecond)
	leader, _ := leaderAndFollowers(t, nodes)
	ctx := context.Background()
	userToken, appToken, unsid := liveSender(t, leader, adminToken, "carol", "clock.example.com")
	me, err := clientFor(t, leader, userToken).Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	app := clientFor(t, leader, appToken)
	send := func(ttl time.Duration) string {
		n, err := app.Send(ctx, unsid, &client.Notification{Payload: &client.Payload{RawContent: "x"},
			ExpirationDateTime: time.Now().Add(ttl)})
		if err != nil {
			t.Fatal(err)
		}
		return n.ID
	}
	later, soon := send(30*time.Minute), send(2*time.Second)

	offsetOf(nodes, offsets, leader).Store(int64(time.Hour))
	pollUntil(t, "the notification due in seconds purged", func() error {
		if _, ok, err := leader.Store().Notification(me.ID, soon); err != nil || ok {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	if !leader.Store().IsLeader() {
		t.Skip("the leadership moved during the test; the purge may have run elsewhere")
	}
	if _, ok, err := leader.Store().Notification(me.ID, later); err != nil || !ok {
		t.Fatalf("the notification with half an hour to live was purged by the leader's clock, an hour ahead (%v)", err)
	}
	if _, err := clientFor(t, leader, userToken).Me(ctx); err != nil {
		t.Fatalf("the user's token, with an hour to live, was purged: %v", errors.Unwrap(err))
	}

	// Its own clients' writes would carry its clock (the test's seam moves
	// the token clock, so a sign-in shows it): refused, while the
	// followers' go through it.
	plain, err := client.New(leader.URL)
	if err != nil {
		t.Fatal(err)
	}
	var last time.Time
	pollUntil(t, "a sign-in through the leader an hour ahead refused", func() error {
		// Spaced, to stay under the sign-in throttle.
		if time.Since(last) < 500*time.Millisecond {
			return errors.New("waiting")
		}
		last = time.Now()
		_, err := plain.PasswordToken(ctx, "carol", "carol-password-1")
		var ce *client.Error
		if errors.As(err, &ce) && ce.Status == 503 && strings.Contains(ce.Message, "clock") {
			return nil
		}
		return fmt.Errorf("answered %v", err)
	})
	_, followers := leaderAndFollowers(t, nodes)
	if _, err := clientFor(t, followers[0], appToken).Send(ctx, unsid,
		&client.Notification{Payload: &client.Payload{RawContent: "x"}}); err != nil {
		t.Fatalf("a send through a follower whose clock is right: %v", err)
	}
}

// The leader exports each voter's clock offset from the cluster's clock,
// so that an operator's alert fires long before the node's writes are
// refused: a follower 20 s ahead shows as 20 s ahead, the others near 0,
// and a follower exports none (only the leader reads the clocks).
func TestTheLeaderExportsEachVotersClockOffset(t *testing.T) {
	nodes, offsets, adminToken := skewedCluster(t, time.Hour)
	leader, followers := leaderAndFollowers(t, nodes)
	ahead := followers[0]
	offsetOf(nodes, offsets, ahead).Store(int64(20 * time.Second))
	series := func(n *testnode.Node) string {
		return fmt.Sprintf("herald_cluster_clock_offset_seconds{node=%q}", n.Config.NodeID)
	}
	pollUntil(t, "the leader's metric shows the follower 20 s ahead", func() error {
		if !leader.Store().IsLeader() {
			leader, followers = leaderAndFollowers(t, nodes)
		}
		for _, n := range nodes {
			v, err := metricValue(t, leader, adminToken, series(n))
			if err != nil {
				return err
			}
			want := 0.0
			if n == ahead {
				want = 20
			}
			if v < want-1 || v > want+1 {
				return fmt.Errorf("%s: %v s, want %v", n.Config.NodeID, v, want)
			}
		}
		return nil
	})
	for _, f := range followers {
		if _, err := metricValue(t, f, adminToken, series(ahead)); err == nil && !f.Store().IsLeader() {
			t.Errorf("follower %s exports the clock offsets", f.Config.NodeID)
		}
	}
}
