package loadgen_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/loadgen"
)

// A small run proves what `herald bench` reports: every post is counted,
// every stream gets every notification, and what Setup made is cleaned up.
func TestRunCountsPostsAndStreamDeliveries(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	cfg.Limits.AppRate = 0
	n := testnode.Start(t, &cfg)
	ctx := context.Background()
	target, err := loadgen.Setup(ctx, n.URL, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := loadgen.Run(ctx, target, loadgen.Options{Notifications: 25, Concurrency: 4, Streams: 3, Wait: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created != 25 || rep.Failed != 0 || rep.Delivered != 75 {
		t.Fatalf("report: created %d, failed %d, delivered %d; want 25, 0, 75", rep.Created, rep.Failed, rep.Delivered)
	}
	if rep.PostLatency.P50 <= 0 || rep.DeliveryLatency.Max <= 0 || !strings.Contains(rep.String(), "75 of 75 events delivered") {
		t.Fatalf("report lacks its measurements:\n%s", rep)
	}
	if err := target.Cleanup(ctx); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	if _, err := loadgen.Setup(ctx, n.URL, "admin", "wrong-password"); err == nil {
		t.Fatal("Setup signed in with a wrong password")
	}
}
