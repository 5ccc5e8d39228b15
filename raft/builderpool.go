package raft

import (
	"reflect"
	"sync/atomic"
	"unsafe"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/ristretto/v2/z"
)

// Badger builds every table it flushes or compacts in an allocator that
// it takes from a pool of eight and gives back when the table is written.
// An allocator keeps every buffer it grew to (a 512 KiB table's builder
// mostly used 10-13 MiB, its raw blocks and their compressed copies, in
// buffers that double up to 15), and the pool keeps eight of them whatever
// their size, giving one back to the collector only after two seconds in
// which no table was built: under a write load, never. That was 50-80 MiB
// of a node's resident memory at its peak during ingest, a quarter to a
// third of it (BENCHMARKS.md, 4 December 2026, evening). Neither the
// pool's size nor the allocators' growth is an option of badger v4.
//
// So the store empties the pool as it fills: a goroutine waits on the
// pool's channel, and every allocator Badger gives back is handed to it
// and released instead of kept, so each builder grows its own buffers from
// Go's heap and the collector takes them back once the table is written.
// That costs CPU: fresh buffers are zeroed and, once the runtime has given
// their pages back to the OS, faulted in again, which on the development
// machine costs 11-15 µs a page. Over 60 s of ingest a node spent 6-9 %
// more CPU a write and wrote 6 % fewer a second, for 50-65 MiB less at its
// peak. A budget of poolBudget or more (--memory) affords the pool's up to
// 120 MiB, and keeps it.
//
// The channel is an unexported field of Badger's DB and of the pool, found
// by name and type; Badger is pinned in go.mod, and
// TestBuilderPoolIsKeptEmpty fails if a version changes either. Should
// they not be found, the pool is left as Badger made it: only memory is at
// stake.

// poolBudget is the smallest Badger budget (--memory) that keeps Badger's
// pool of table builders: eight allocators of up to 15 MiB each.
const poolBudget = 512 << 20

// drainsBuilders reports whether a store with Badger budget budget
// releases its table builders' allocators rather than pool them.
func drainsBuilders(budget uint64) bool {
	if budget == 0 {
		budget = DefaultMemory
	}
	return budget < poolBudget
}

// builderPool is Badger's pool of table-builder allocators: its channel,
// or nil when this version of Badger does not have it where it is looked
// for.
func builderPool(db *badger.DB) chan *z.Allocator {
	pool := reflect.ValueOf(db).Elem().FieldByName("allocPool")
	if !pool.IsValid() || pool.Type() != reflect.TypeFor[*z.AllocatorPool]() || pool.IsNil() {
		return nil
	}
	ch := pool.Elem().FieldByName("allocCh")
	if !ch.IsValid() || ch.Type() != reflect.TypeFor[chan *z.Allocator]() {
		return nil
	}
	// Reading the field is safe: Badger sets it once, before Open returns.
	return *(*chan *z.Allocator)(unsafe.Pointer(ch.UnsafeAddr()))
}

// drainBuilderPool releases every allocator given back to Badger's pool
// until the pool closes with the DB, counting them in released. It reports
// whether the pool was found.
func drainBuilderPool(db *badger.DB, released *atomic.Int64) bool {
	ch := builderPool(db)
	if ch == nil {
		return false
	}
	go func() {
		// Badger closes the channel when the DB closes.
		for a := range ch {
			a.Release()
			released.Add(1)
		}
	}()
	return true
}
