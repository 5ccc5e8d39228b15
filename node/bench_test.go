package node_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/loadgen"
)

// benchTarget starts a node without rate limits or quotas in the way and
// registers an application, a user and a live subscription on it.
func benchTarget(b *testing.B) *loadgen.Target {
	cfg := testnode.Config(b, b.TempDir())
	cfg.Limits.AppRate, cfg.Limits.UserRate = 0, 0
	cfg.Limits.MaxNotificationsPerUser = 0
	cfg.Limits.MaxStreamsPerUser = 0
	cfg.Limits.MaxConnsPerIP = 0 // every stream comes from 127.0.0.1
	n := testnode.Start(b, &cfg)
	t, err := loadgen.Setup(context.Background(), n.URL, "admin", testnode.AdminPassword)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// BenchmarkIngest measures POST /v1.0/me/notifications to 201 over real
// HTTP, every write committed through Raft and applied to Badger, with
// 16 × GOMAXPROCS concurrent senders.
func BenchmarkIngest(b *testing.B) {
	t := benchTarget(b)
	var seq atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			status, err := t.Post(context.Background(), seq.Add(1))
			if err != nil || status != http.StatusCreated {
				b.Errorf("post: %d %v", status, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifications/s")
}

// BenchmarkStreamFanout measures how long one notification takes to reach
// every one of a user's open SSE streams; one op is one notification
// delivered to all of them.
func BenchmarkStreamFanout(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			t := benchTarget(b)
			streams, err := t.OpenStreams(context.Background(), n)
			if err != nil {
				b.Fatal(err)
			}
			defer streams.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if status, err := t.Post(context.Background(), int64(i)); err != nil || status != http.StatusCreated {
					b.Fatalf("post: %d %v", status, err)
				}
				want := int64(i+1) * int64(n)
				deadline := time.Now().Add(30 * time.Second)
				for streams.Received() < want {
					if time.Now().After(deadline) {
						b.Fatalf("only %d of %d events arrived", streams.Received(), want)
					}
					time.Sleep(20 * time.Microsecond)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
