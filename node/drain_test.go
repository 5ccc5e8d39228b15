package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/node"
)

// A node that is stopped while it holds a forwarded write for a leader it
// cannot reach (the last node of a whole cluster being stopped, or one cut
// off) answers the write as a stopping node, 503 "shutting down", once a
// short grace is over, instead of keeping its drain open for the write's
// whole hold time. Before, the drain waited out the hold and the client got
// the "no leader" answer at its end.
func TestAStoppingNodeDoesNotHoldWritesForALeader(t *testing.T) {
	ctx := context.Background()
	c := []node.Config{clusterConfig(t, "d1")}
	c = append(c, clusterConfig(t, "d2", c[0].HTTPAddr))
	c = append(c, clusterConfig(t, "d3", c[0].HTTPAddr, c[1].HTTPAddr))
	m := newMesh(t, c)
	nodes, adminToken := startSignedIn(t, c)
	pollThreeVoters(t, nodes[0], adminToken)
	_, followers := leaderAndFollowers(t, nodes)
	last := followers[0]
	_, appToken, unsid := liveSender(t, last, adminToken, "drain", "ops.drain.test")

	m.of(slices.Index(nodes, last)).Cut()
	pollUntil(t, "the cut-off node without a leader", func() error {
		if _, id := last.Store().Raft().LeaderWithID(); id != "" {
			return fmt.Errorf("it follows %s", id)
		}
		return nil
	})
	inFlight := func() float64 {
		v, err := metricValue(t, last, adminToken, "herald_http_requests_in_flight")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := inFlight()

	sender, err := client.New(last.URL, client.WithToken(appToken))
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := sender.Send(sctx, unsid, &client.Notification{AppNotificationID: "held",
			Payload: &client.Payload{RawContent: "held"}})
		answered <- err
	}()
	pollUntil(t, "the write held by the node", func() error {
		if v := inFlight(); v <= before {
			return fmt.Errorf("%v requests in flight, %v before the write", v, before)
		}
		return nil
	})

	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = last.Close(cctx)
	cancel()
	if err != nil {
		t.Fatalf("close: %v", err)
	}
	t.Logf("the node stopped in %v", time.Since(start).Round(time.Millisecond))
	err = <-answered
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 503 || !strings.Contains(ce.Message, "shutting down") {
		t.Fatalf("the held write was answered %v; want 503 saying that the node is shutting down", err)
	}
	if ce.RetryAfter <= 0 {
		t.Errorf("503 without Retry-After: %+v", ce)
	}
}
