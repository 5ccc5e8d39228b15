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
// grows to 7 or 15 MiB: the raw blocks and their compressed copies, in
// buffers that double), and the pool keeps eight of them whatever their
// size, giving one back to the collector only after two seconds in which
// no table was built: under a write load, never. That held 70-80 MiB of
// a node's resident memory at its peak during ingest, about a third of
// it (BENCHMARKS.md, 4 December 2026, evening). Neither the pool's size
// nor the allocators' growth is an option of badger v4.
//
// So the store empties the pool as it fills: a goroutine waits on the
// pool's channel, and every allocator Badger gives back is handed to it
// and released instead of kept, so each builder grows its own buffers from
// Go's heap and the collector takes them back once the table is written.
// The rate did not change: the heap's free spans serve the next builder
// about as well as the pool did.
//
// The channel is an unexported field of Badger's DB and of the pool, found
// by name and type; Badger is pinned in go.mod, and
// TestBuilderPoolIsKeptEmpty fails if a version changes either. Should
// they not be found, the pool is left as Badger made it: only memory is at
// stake.

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
