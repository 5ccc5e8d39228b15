package node_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/loadgen"
	"github.com/herald-notify/herald/node"
)

// BenchmarkClusterIngest measures durable writes (POST /v1.0/me/notifications
// to 201, committed by a majority of three local nodes) with 64 concurrent
// clients, sent to the leader and sent to a follower, which forwards them to
// the leader in batches; and with one client, where ns/op is the latency of
// one write. The nodes run the default Raft timers.
//
//	go test -run xxx -bench 'ClusterIngest/.*/clients=64' -benchtime 10000x ./node
//	go test -run xxx -bench 'ClusterIngest/.*/clients=1' -benchtime 1000x ./node
func BenchmarkClusterIngest(b *testing.B) {
	const clients = 64
	cfgs := make([]node.Config, 3)
	for i := range cfgs {
		cfg := testnode.Config(b, b.TempDir())
		cfg.NodeID = []string{"b1", "b2", "b3"}[i]
		cfg.HTTPAddr = testnode.FreeAddr(b)
		cfg.ClusterKey = clusterKey
		for _, prev := range cfgs[:i] {
			cfg.Join = append(cfg.Join, prev.HTTPAddr)
		}
		cfg.Limits.AppRate, cfg.Limits.UserRate, cfg.Limits.MaxNotificationsPerUser = 0, 0, 0
		def := node.DefaultConfig().Raft
		cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout = def.HeartbeatTimeout, def.ElectionTimeout
		cfgs[i] = cfg
	}
	nodes := make([]*testnode.Node, 3)
	for i := range cfgs {
		nodes[i] = testnode.Start(b, &cfgs[i])
	}
	var leader, follower *testnode.Node
	deadline := time.Now().Add(20 * time.Second)
	for leader == nil || follower == nil {
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		leader, follower = nil, nil
		for _, n := range nodes {
			if n.Store().IsLeader() {
				leader = n
			} else {
				follower = n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx := context.Background()
	target, err := loadgen.Setup(ctx, leader.URL, "admin", testnode.AdminPassword)
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	for _, via := range []struct {
		name string
		n    *testnode.Node
	}{{"via=leader", leader}, {"via=follower", follower}} {
		t := *target
		t.URL = via.n.URL
		// The follower knows the token and subscription once it has
		// applied them.
		for {
			if status, err := t.Post(ctx, seq.Add(1)); err == nil && status == http.StatusCreated {
				break
			}
			if time.Now().After(deadline.Add(10 * time.Second)) {
				b.Fatalf("%s never took a write", via.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, clients := range []int{clients, 1} {
			b.Run(fmt.Sprintf("%s/clients=%d", via.name, clients), func(b *testing.B) {
				var done atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for done.Add(1) <= int64(b.N) {
							status, err := t.Post(ctx, seq.Add(1))
							if err != nil || status != http.StatusCreated {
								b.Errorf("post: %d %v", status, err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifications/s")
			})
		}
	}
}
