package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/herald-notify/herald/raft"
)

// memoryLimit is the Go memory limit `herald serve` sets for a node whose
// --memory is memory (raft.GoMemoryLimit), and false when the operator set
// GOMEMLIMIT: the runtime has applied that already, and it wins.
func memoryLimit(memory string, getenv func(string) string) (int64, bool, error) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, false, nil
	}
	budget, err := raft.ParseMemory(memory)
	if err != nil {
		return 0, false, err
	}
	return raft.GoMemoryLimit(budget), true, nil
}

// nextMemoryLimit is the soft limit for a heap of live bytes under a
// budgeted limit of floor: the floor while the live heap leaves room under
// it, and otherwise half again the live heap. A soft limit at or below
// what is live makes the collector run back to back (capped at half the
// CPU), which under a long write load halved the node's throughput:
// Badger's table builders keep whole tables in the heap, several at once,
// so its live heap outgrows --memory once compactions reach a few tables
// at a time (BENCHMARKS.md, "a memory limit that yields").
func nextMemoryLimit(floor, live int64) int64 {
	return max(floor, live+live/2)
}

// liveHeap reads the heap the last collection marked live.
func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// tuneMemoryLimit keeps the soft limit at nextMemoryLimit(floor, live) on
// every tick until ctx ends. It moves the limit only when it would change
// by more than an eighth: setting it stops the world.
func tuneMemoryLimit(ctx context.Context, floor int64, tick <-chan time.Time, live func() int64, set func(int64) int64, log *slog.Logger) {
	cur := floor
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		next := nextMemoryLimit(floor, live())
		if d := next - cur; d > cur/8 || -d > cur/8 || (next == floor && cur != floor) {
			log.Debug("go memory limit follows the live heap", "go_memory_limit_mib", next>>20, "budget_limit_mib", floor>>20)
			set(next)
			cur = next
		}
	}
}

// startMemoryTuner runs tuneMemoryLimit on the runtime's limit, checked
// twice a second, until ctx ends.
func startMemoryTuner(ctx context.Context, floor int64, log *slog.Logger) {
	t := time.NewTicker(500 * time.Millisecond)
	go func() {
		defer t.Stop()
		tuneMemoryLimit(ctx, floor, t.C, liveHeap, debug.SetMemoryLimit, log)
	}()
}
