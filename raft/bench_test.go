package raft

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// BenchmarkProposeSend measures the replicated write path alone: sends
// committed through Raft (fsynced) and applied to Badger, from 64
// concurrent proposers, as the HTTP handlers would.
func BenchmarkProposeSend(b *testing.B) {
	var cmds, entries atomic.Int64
	s, err := Open(Options{Dir: b.TempDir(), NodeID: "n1", RaftAddr: freeAddr(b), Bootstrap: true, Logger: quiet,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		ObserveBatch: func(n int, _ time.Duration) { cmds.Add(int64(n)); entries.Add(1) }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.WaitLeader(ctx); err != nil {
		b.Fatal(err)
	}
	u := newUser("bench")
	if _, err := s.Propose(ctx, &Command{Op: OpCreateUser, User: u}); err != nil {
		b.Fatal(err)
	}
	cmds.Store(0)
	entries.Store(0)
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := time.Now()
			if _, err := s.Propose(ctx, sendCmd(u.ID, "app", "", now, now.Add(time.Hour))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
	if e := entries.Load(); e > 0 {
		b.ReportMetric(float64(cmds.Load())/float64(e), "commands/entry")
	}
}

// BenchmarkSendToLiveEvent measures what a live stream waits for: from a
// send's proposal to its change reaching the node's streams (OnChange),
// one send at a time, so that nothing queues behind another.
func BenchmarkSendToLiveEvent(b *testing.B) {
	got := make(chan time.Time, 1)
	s := openTestStore(b, b.TempDir(), func(chs []resource.Change) {
		if len(chs) > 0 {
			got <- time.Now()
		}
	})
	defer s.Close()
	ctx := context.Background()
	u := newUser("bench")
	if _, err := s.Propose(ctx, &Command{Op: OpCreateUser, User: u}); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		now := time.Now()
		if _, err := s.Propose(ctx, sendCmd(u.ID, "app", "", now, now.Add(time.Hour))); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-got).Sub(now))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
