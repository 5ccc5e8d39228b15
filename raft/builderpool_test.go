package raft

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/ristretto/v2/z"
)

// TestBuilderPoolIsKeptEmpty: the tables Badger flushes give their
// builders' allocators back, and the store releases them rather than let
// Badger's pool keep them (builderpool.go). It also fails when a Badger
// version moves the pool, which would silently bring the pooled memory
// back.
func TestBuilderPoolIsKeptEmpty(t *testing.T) {
	db, err := badger.Open(badgerOptions(t.TempDir(), minMemory))
	if err != nil {
		t.Fatal(err)
	}
	ch := builderPool(db)
	if ch == nil {
		db.Close()
		t.Fatal("Badger's pool of table-builder allocators is not where builderpool.go looks for it")
	}
	var released atomic.Int64
	if !drainBuilderPool(db, &released) {
		db.Close()
		t.Fatal("drainBuilderPool did not find the pool")
	}
	// A few memtables' worth (4 MiB each under this budget), so that
	// Badger flushes tables while it runs.
	for i := 0; i < 60000; i += 5000 {
		writeRecords(t, db, i, i+5000)
	}
	deadline := time.Now().Add(20 * time.Second)
	for released.Load() == 0 || len(ch) != 0 {
		if time.Now().After(deadline) {
			db.Close()
			t.Fatalf("after the flushes: %d allocators released, %d kept in the pool; want some released and none kept",
				released.Load(), len(ch))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkClosedDrain(t, ch)
}

// checkClosedDrain: closing the DB closes the pool's channel, which ends
// the drain's goroutine.
func checkClosedDrain(t *testing.T, ch chan *z.Allocator) {
	t.Helper()
	select {
	case _, open := <-ch:
		if open {
			t.Fatal("the pool handed out an allocator after the DB closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pool's channel is still open after the DB closed")
	}
}

// A budget that affords Badger's pool keeps it: the drain costs CPU.
func TestOnlyASmallBudgetDrainsTheBuilderPool(t *testing.T) {
	for _, c := range []struct {
		budget uint64
		drain  bool
	}{
		{0, true},
		{DefaultMemory, true},
		{minMemory, true},
		{poolBudget - 1, true},
		{poolBudget, false},
		{2 << 30, false},
	} {
		if got := drainsBuilders(c.budget); got != c.drain {
			t.Errorf("drainsBuilders(%d MiB) = %v, want %v", c.budget>>20, got, c.drain)
		}
	}
}
