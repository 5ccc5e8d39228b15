package main

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

func TestServeMemoryLimitFollowsMemoryUnlessGOMEMLIMITIsSet(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	for _, c := range []struct {
		memory string
		env    map[string]string
		want   int64
		set    bool
	}{
		{"", nil, 152 << 20, true},
		{"64MiB", nil, 152 << 20, true},
		{"256MiB", map[string]string{"GOMEMLIMIT": ""}, 536 << 20, true},
		{"256MiB", map[string]string{"GOMEMLIMIT": "1GiB"}, 0, false},
	} {
		got, set, err := memoryLimit(c.memory, env(c.env))
		if err != nil || got != c.want || set != c.set {
			t.Errorf("memoryLimit(%q, %v) = %d MiB, %v, %v; want %d MiB, %v", c.memory, c.env, got>>20, set, err, c.want>>20, c.set)
		}
	}
	if _, _, err := memoryLimit("8MiB", env(nil)); err == nil {
		t.Error("--memory 8MiB gave a limit; it is below the floor")
	}
}

func TestMemoryLimitFollowsALiveHeapAboveItsBudgetAndComesBack(t *testing.T) {
	const mib = 1 << 20
	floor := int64(152 * mib)
	tick := make(chan time.Time)
	live := make(chan int64)
	set := make(chan int64, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tuneMemoryLimit(ctx, floor, tick, func() int64 { return <-live }, func(n int64) int64 { set <- n; return 0 },
			slog.New(slog.DiscardHandler))
	}()
	for _, c := range []struct {
		live, want int64 // want 0: the limit stays
	}{
		{40 * mib, 0},          // far under the budget
		{100 * mib, 0},         // half again is 150 MiB: still the floor
		{140 * mib, 210 * mib}, // the heap outgrew the budget
		{150 * mib, 0},         // 225 MiB is within an eighth of 210
		{200 * mib, 300 * mib},
		{60 * mib, 152 * mib}, // the load is over: back to the budget
		{50 * mib, 0},
	} {
		tick <- time.Now() // taken once the tick before is handled
		select {
		case got := <-set:
			t.Fatalf("the same heap again: limit set to %d MiB; want it unchanged", got/mib)
		default:
		}
		live <- c.live
		tick <- time.Now()
		var got int64
		select {
		case got = <-set:
		default:
		}
		if got != c.want {
			t.Fatalf("live %d MiB: limit set to %d MiB; want %d MiB (0: unchanged)", c.live/mib, got/mib, c.want/mib)
		}
		live <- c.live // the same heap on the next tick changes nothing
	}
	tick <- time.Now()
	select {
	case got := <-set:
		t.Fatalf("the same heap again: limit set to %d MiB; want it unchanged", got/mib)
	default:
	}
	cancel()
	live <- 0
	<-done
}
