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
}

// A node whose clock is two hours behind cannot sign anyone in: the access
// token it made expired, by every other node's clock, an hour before it was
// issued, so the user got 401 from every node but that one. It answers 503
// in the contract's shape, and another node signs the user in.
func TestANodeBehindIssuesNoTokens(t *testing.T) {
	nodes, offsets, adminToken := skewedCluster(t, 100*time.Millisecond)
	leader, followers := leaderAndFollowers(t, nodes)
	ctx := context.Background()
	admin := clientFor(t, leader, adminToken)
	if _, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "dave", Password: "dave-password-1"}); err != nil {
		t.Fatal(err)
	}
	skewed := followers[0]
	offsetOf(nodes, offsets, skewed).Store(int64(-2 * time.Hour))

	// Not retried on 503 (clientFor's client is): the refusal is what is
	// looked for.
	plain, err := client.New(skewed.URL)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := plain.PasswordToken(ctx, "dave", "dave-password-1")
	if err == nil {
		_, err := clientFor(t, leader, tok.AccessToken).Me(ctx)
		t.Fatalf("a node two hours behind issued a token; the leader answers it with %v", err)
	}
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 503 || ce.Code != "serviceNotAvailable" || !strings.Contains(ce.Message, "clock") {
		t.Fatalf("sign-in through the node behind: %v, want 503 serviceNotAvailable naming the clock", err)
	}
	// The operator sees it in the cluster's status, on any node.
	pollUntil(t, "the offset of the node behind in the status", func() error {
		st, err := clientFor(t, followers[1], adminToken).Cluster(ctx)
		if err != nil {
			return err
		}
		for _, m := range st.Nodes {
			if m.ClockOffsetMs == nil {
				return fmt.Errorf("%s: no clockOffsetMs", m.ID)
			}
			want := time.Duration(0)
			if m.ID == skewed.Config.NodeID {
				want = -2 * time.Hour
			}
			if got := time.Duration(*m.ClockOffsetMs) * time.Millisecond; (got - want).Abs() > time.Second {
				return fmt.Errorf("%s: clockOffsetMs %d, want about %d", m.ID, *m.ClockOffsetMs, want.Milliseconds())
			}
		}
		return nil
	})
	tok, err = clientFor(t, leader, "").PasswordToken(ctx, "dave", "dave-password-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clientFor(t, followers[1], tok.AccessToken).Me(ctx); err != nil {
		t.Fatalf("a token the leader issued, on the other follower: %v", err)
	}
}
