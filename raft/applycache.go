package raft

import (
	"bytes"

	"github.com/herald-notify/herald/resource"
)

// applyCache keeps, from one batch to the next, what the FSM reads for
// every send: the user's subscriptions (a prefix scan, which in a write
// transaction sorts its pending writes, and a decode of each record),
// whether the user exists, and the user's counters. With 2,000 users the
// scan alone was a tenth of the node's CPU and a sixth of what it
// allocated under the latency load, and the user's key, written long
// before, is looked up in the tables rather than the memtable.
//
// Only the FSM's goroutine uses it, and only the FSM writes these keys:
// every write goes through tx.setEntry or tx.del, which call forget with
// the key before Badger takes the write. A batch never rolls back (a
// write that fails stops the node), so what the cache holds is what the
// next batch's transaction would read. Restore resets it.
type applyCache struct {
	subs     map[string][]resource.SubscriptionRecord // user id → its subscriptions
	users    map[string]bool                          // user id → the user exists
	counters map[string]counters                      // user id → its counters
	// seq is the change log's last sequence number as the last commit
	// (tx.commit) wrote it, when seqKnown: every batch starts from it.
	seq      uint64
	seqKnown bool
}

func newApplyCache() *applyCache {
	return &applyCache{subs: map[string][]resource.SubscriptionRecord{},
		users: map[string]bool{}, counters: map[string]counters{}}
}

func (c *applyCache) reset() {
	clear(c.subs)
	clear(c.users)
	clear(c.counters)
	c.seq, c.seqKnown = 0, false
}

// forget drops what a write of key may change (key layout: keys.go).
func (c *applyCache) forget(key []byte) {
	switch {
	case len(key) > 2 && key[1] == '/' && key[0] == 's':
		// "s/<subscription id>" does not name the user: such writes are
		// rare (a subscription created, changed, deleted, or starting or
		// ending a failing streak).
		clear(c.subs)
	case bytes.HasPrefix(key, []byte("us/")):
		delete(c.subs, userOf(key[len("us/"):]))
	case len(key) > 2 && key[1] == '/' && key[0] == 'u':
		delete(c.users, string(key[2:]))
	case bytes.HasPrefix(key, []byte("cnt/")):
		delete(c.counters, string(key[len("cnt/"):]))
	}
}

// userOf returns the user id that starts rest ("<user id>/...").
func userOf(rest []byte) string {
	if i := bytes.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	return string(rest)
}

// bounded empties m when it holds cacheLimit entries: a miss costs only a
// Badger read, and this keeps memory bounded without an LRU's bookkeeping.
// Both caches (cache.go, and this one) fill their maps through it.
func bounded[V any](m map[string]V) map[string]V {
	if len(m) >= cacheLimit {
		clear(m)
	}
	return m
}
