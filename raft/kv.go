package raft

import (
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// kv is Badger opened in managed mode: Herald numbers the versions itself.
//
// Badger's own numbering hands the start and the end of every transaction
// to two watermark goroutines, and a new transaction waits until the one
// that follows commits has caught up with the last commit. Under load that
// goroutine waits for a core behind the request path and the compactions:
// opening the FSM's next transaction took 4-25 ms in a thousand applies of
// a 20 s latency run, every read of the API waited the same way, and each
// such wait held every write queued behind it (BENCHMARKS.md, 5 December
// 2026). Only the FSM writes, one transaction at a time, so the numbering
// needs no more than a counter and the set of versions being read.
//
// A read sees the state as of the last commit, as Badger's own transactions
// did: an acknowledged write is visible to every read that starts after it.
type kv struct {
	*badger.DB

	mu sync.Mutex
	// ts is the version of the last commit, at which reads start.
	ts uint64
	// readers counts the read transactions open at each version.
	// Compactions may drop a version only once no reader can see it
	// (Badger keeps every version above the discard mark).
	readers map[uint64]int
	discard uint64 // the last mark handed to SetDiscardTs
}

// openKV opens Badger in managed mode; it reads a data directory that
// Badger's own numbering wrote, and Badger's own numbering reads one that
// this wrote (it starts after the highest version it finds).
func openKV(opts badger.Options) (*kv, error) {
	db, err := badger.OpenManaged(opts)
	if err != nil {
		return nil, err
	}
	k := &kv{DB: db, ts: db.MaxVersion(), readers: map[uint64]int{}}
	k.discard = k.ts
	db.SetDiscardTs(k.ts)
	return k, nil
}

// read opens a read transaction at the last commit. done must be called
// once the transaction is no longer read.
func (k *kv) read() (txn *badger.Txn, done func()) {
	k.mu.Lock()
	ts := k.ts
	k.readers[ts]++
	k.mu.Unlock()
	txn = k.NewTransactionAt(ts, false)
	return txn, func() {
		txn.Discard()
		k.mu.Lock()
		if k.readers[ts]--; k.readers[ts] == 0 {
			delete(k.readers, ts)
		}
		k.mu.Unlock()
	}
}

// View runs fn in a read transaction at the last commit. It stands in for
// Badger's, which in managed mode reads whatever is newest as it goes.
func (k *kv) View(fn func(txn *badger.Txn) error) error {
	txn, done := k.read()
	defer done()
	return fn(txn)
}

// Update runs fn in a write transaction and commits it. Only the FSM's
// goroutine and code that runs before Raft starts may write.
func (k *kv) Update(fn func(txn *badger.Txn) error) error {
	txn := k.write()
	defer txn.Discard()
	if err := fn(txn); err != nil {
		return err
	}
	return k.commit(txn)
}

// write opens a write transaction that reads at the last commit. Its
// version needs no reader's count: it is the newest, and only commit moves
// the discard mark, on the same goroutine.
func (k *kv) write() *badger.Txn {
	k.mu.Lock()
	ts := k.ts
	k.mu.Unlock()
	return k.NewTransactionAt(ts, true)
}

// commit commits txn as the next version and shows it to the reads that
// start from then on.
func (k *kv) commit(txn *badger.Txn) error {
	k.mu.Lock()
	next := k.ts + 1
	k.mu.Unlock()
	if err := txn.CommitAt(next, nil); err != nil {
		return err
	}
	k.committed(next)
	return nil
}

// writeBatch is a batch whose entries all get the next version; once its
// Flush has succeeded, committed(ts) shows them.
func (k *kv) writeBatch() (wb *badger.WriteBatch, ts uint64) {
	k.mu.Lock()
	ts = k.ts + 1
	k.mu.Unlock()
	return k.NewWriteBatchAt(ts), ts
}

// committed makes version ts the one reads start at, and lets compactions
// drop what only versions below the oldest open read could see.
func (k *kv) committed(ts uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ts = ts
	oldest := ts
	for r := range k.readers {
		oldest = min(oldest, r)
	}
	if oldest > k.discard {
		k.discard = oldest
		k.SetDiscardTs(oldest)
	}
}
