package raft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/herald-notify/herald/resource"
)

// storageFailure is a Badger error inside Apply. A replica that cannot write
// must stop rather than diverge, so Apply panics with it.
type storageFailure struct{ err error }

func (s storageFailure) Error() string { return "herald: storage failure in apply: " + s.err.Error() }

// tx is the write transaction of one ApplyBatch. It commits and reopens the
// Badger transaction when it grows too big, which keeps huge cascades (a
// user with thousands of notifications) in one command.
type tx struct {
	db         *badger.DB
	txn        *badger.Txn
	seq        uint64                 // last change sequence number handed out
	changes    []resource.Change      // to publish once committed
	deliveries []resource.DeliveryRef // likewise, for the delivery engine
	revoked    []string               // principals whose tokens were deleted, for their live streams
	// ac holds the records every send reads, across batches when the
	// FSM owns it (applycache.go).
	ac *applyCache
	// touched are the keys of records the Store caches written since the
	// last commit; cache is told of them around the commit (cache.go).
	touched []string
	cache   *recordCache
	// written counts the bytes of keys and values set since the last
	// commit (fsm.go, commitBytes).
	written int
	// group holds the changes recorded since the entry being applied
	// began, for their one time-index key (endGroup); expiry likewise the
	// notifications it created, for their expiry index, and requests the
	// forwarded writes it remembered.
	group    changeGroup
	expiry   expiryGroup
	requests requestGroup // dedup.go
	// entry is the index of the Raft entry being applied and cmd the
	// command of it under way; done is the last entry wholly applied
	// before it, which a part stores as the applied index (parts.go).
	entry  uint64
	cmd    int
	done   uint64
	limits txnLimits
	marked bool // a part of the entry stored its mark
	// purgeAt is where the purge under way is, while it may be cut;
	// purgeFrom where a replay resumes the purge it applies again.
	purgeAt, purgeFrom purgeProgress
	// keysWritten counts the keys set or deleted since the last commit, as
	// written counts their bytes.
	keysWritten int
}

// indexGroup is one key of a time-ordered index as an entry fills it: its
// members' references, and the latest of their times, which orders the key.
type indexGroup struct {
	refs []byte
	n    int
	ms   int64
}

// indexGroupMax bounds a group, so that an entry that changes a great many
// notifications (deleting a group of them) writes keys of tens of KiB, not
// one that outgrows a Badger transaction.
const indexGroupMax = 512

// add takes a member at time ms, whose reference refs now ends with, and
// reports whether the group is full.
func (g *indexGroup) add(ms int64, refs []byte) (full bool) {
	if g.n == 0 || ms > g.ms {
		g.ms = ms
	}
	g.refs = refs
	g.n++
	return g.n == indexGroupMax
}

// expiryGroup is the expiry index of an entry's new notifications as it
// fills: those whose expiry lies within expiryGroupSpan of the first's,
// each referred to by user and id (appendRef).
type expiryGroup struct {
	indexGroup
	firstMs  int64  // the first's expiry
	firstSeq uint64 // the first's change, which names the key
	uid, nid string // the first's, for a group of one
}

// expiryGroupSpan is how far a notification's expiry may lie from the
// first of its group's: a group is purged once its latest is due, so an
// earlier one waits at most twice this past its expiry, against the purge's
// 30 s interval. A send without expirationDateTime expires a fixed time
// after it was made, so an entry's sends fall into one group.
const expiryGroupSpan = 1000

// groupExpiry indexes a new notification by its expiry: in the entry's
// group when the expiry lies close enough to the group's first, under a key
// of its own otherwise.
func (t *tx) groupExpiry(ms int64, uid, nid string) {
	g := &t.expiry
	if g.n > 0 && (ms < g.firstMs-expiryGroupSpan || ms > g.firstMs+expiryGroupSpan) {
		t.set(expiryKey(ms, uid, nid), nil)
		return
	}
	if g.n == 0 {
		// The change that records the notification comes next: its seq
		// names no other group.
		g.firstMs, g.firstSeq, g.uid, g.nid = ms, t.seq+1, uid, nid
	}
	if g.add(ms, appendRef(g.refs, uid, nid)) {
		t.endExpiryGroup()
	}
}

// endExpiryGroup writes the expiry index of the notifications grouped so
// far: a lone one's key as every notification had before, with no value.
func (t *tx) endExpiryGroup() {
	g := &t.expiry
	switch g.n {
	case 0:
		return
	case 1:
		t.set(expiryKey(g.ms, g.uid, g.nid), nil)
	default:
		t.set(expiryGroupKey(g.ms, g.firstSeq), g.refs) // kept by the transaction: not reused
	}
	*g = expiryGroup{}
}

// changeGroup is the time index of an entry's changes as it fills, each
// referred to by user and seq (appendChangeRef).
type changeGroup struct {
	indexGroup
	firstSeq uint64 // names the key
}

// groupChange adds a change to the entry's time index.
func (t *tx) groupChange(ms int64, uid string, seq uint64) {
	g := &t.group
	if g.n == 0 {
		g.firstSeq = seq
	}
	if g.add(ms, appendChangeRef(g.refs, uid, seq)) {
		t.endChangeGroup()
	}
}

// endGroup writes the time and expiry indexes of the changes,
// notifications and remembered requests grouped so far. The FSM calls it
// at the end of every entry, so that the groups, and when each is trimmed
// or purged, depend only on the entries: every replica purges alike,
// however Raft hands it the entries.
func (t *tx) endGroup() {
	t.endExpiryGroup()
	t.endChangeGroup()
	t.endRequestGroup()
	t.requests.k = 0
}

func (t *tx) endChangeGroup() {
	g := &t.group
	if g.n == 0 {
		return
	}
	t.set(changeGroupKey(g.ms, g.firstSeq), g.refs) // kept by the transaction: not reused
	*g = changeGroup{}
}

func newTx(db *badger.DB, ac *applyCache) *tx {
	t := &tx{db: db, txn: db.NewTransaction(true), ac: ac}
	if ac.seqKnown {
		t.seq = ac.seq
	} else if v, ok := t.get([]byte(keySeq)); ok {
		t.seq = getUint64(v)
	}
	return t
}

func (t *tx) must(err error) {
	if err != nil {
		panic(storageFailure{err})
	}
}

func (t *tx) get(key []byte) ([]byte, bool) {
	v, ok, err := getValue(t.txn, key)
	t.must(err)
	return v, ok
}

func (t *tx) exists(key []byte) bool {
	_, err := t.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false
	}
	t.must(err)
	return true
}

func (t *tx) getJSON(key []byte, v any) bool {
	b, ok := t.get(key)
	if !ok {
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		panic(storageFailure{fmt.Errorf("decode %q: %w", key, err)})
	}
	return true
}

func (t *tx) setEntry(e *badger.Entry) {
	t.ac.forget(e.Key)
	if cachedKey(e.Key) {
		t.touched = append(t.touched, string(e.Key))
	}
	t.wrote(len(e.Key) + len(e.Value))
	err := t.txn.SetEntry(e)
	if errors.Is(err, badger.ErrTxnTooBig) {
		t.flush()
		err = t.txn.SetEntry(e)
	}
	t.must(err)
}

func (t *tx) set(key, val []byte) { t.setEntry(badger.NewEntry(key, val)) }

func (t *tx) wrote(n int) {
	t.written += n
	t.keysWritten++
}

func (t *tx) setJSON(key []byte, v any) {
	b, err := json.Marshal(v)
	t.must(err)
	t.set(key, b)
}

func (t *tx) del(key []byte) {
	t.ac.forget(key)
	if cachedKey(key) {
		t.touched = append(t.touched, string(key))
	}
	t.wrote(len(key))
	err := t.txn.Delete(key)
	if errors.Is(err, badger.ErrTxnTooBig) {
		t.flush()
		err = t.txn.Delete(key)
	}
	t.must(err)
}

// keys returns the keys under prefix (copied), at most limit if limit > 0.
func (t *tx) keys(prefix []byte, limit int) [][]byte {
	return scanKeys(t.txn, prefix, limit)
}

// due returns, in order, the keys of the time-ordered index under prefix
// (prefix, hex milliseconds, '/', the rest) whose time is at or before
// cutoffMs, at most limit if limit > 0 (copied).
func (t *tx) due(prefix []byte, cutoffMs int64, limit int) [][]byte {
	return t.keysWhile(prefix, limit, func(k []byte) bool {
		ms, _, _ := bytes.Cut(k[len(prefix):], []byte("/"))
		return hexMs(ms) <= cutoffMs
	})
}

// keysWhile returns the keys under prefix (copied), in order, up to the
// first for which ok is false, at most limit if limit > 0. A purge's
// indexes are ordered by time and mostly not due: the dedup records' one
// is read every fourth entry of forwarded writes and holds minutes of
// them, none due under a steady load, and copying a page of them each
// time was a sixth of what a forwarded send cost the FSM
// (BenchmarkFSMApplyForwardedSends).
func (t *tx) keysWhile(prefix []byte, limit int, ok func(k []byte) bool) [][]byte {
	return scanKeysWhile(t.txn, prefix, prefix, limit, ok)
}

// userSubs returns a user's subscriptions, from the cache when it has
// them. The slice is shared: callers must not change it.
func (t *tx) userSubs(uid string) []resource.SubscriptionRecord {
	if subs, ok := t.ac.subs[uid]; ok {
		return subs
	}
	prefix := "us/" + uid + "/"
	var subs []resource.SubscriptionRecord
	for _, k := range t.keys([]byte(prefix), 0) {
		var s resource.SubscriptionRecord
		if t.getJSON(subKey(string(k[len(prefix):])), &s) {
			subs = append(subs, s)
		}
	}
	bounded(t.ac.subs)[uid] = subs
	return subs
}

// userExists reports whether the user exists, from the cache when it
// knows.
func (t *tx) userExists(uid string) bool {
	if ok, known := t.ac.users[uid]; known {
		return ok
	}
	ok := t.exists(userKey(uid))
	bounded(t.ac.users)[uid] = ok
	return ok
}

// putSub stores a subscription (which drops the cached lists).
func (t *tx) putSub(s *resource.SubscriptionRecord) {
	t.setJSON(subKey(s.ID), s)
}

// flush commits what is written so far and continues in a new
// transaction: the last resort when a write does not fit, which the parts
// (parts.go) should leave no occasion for. Unlike a part it marks no place
// to resume.
func (t *tx) flush() {
	t.txn.Set([]byte(keySeq), putUint64(t.seq))
	if t.done != 0 {
		t.txn.Set([]byte(keyApplied), putUint64(t.done))
	}
	t.commitTxn()
}

// commitTxn commits the Badger transaction and opens the next one.
func (t *tx) commitTxn() {
	t.cache.begin(t.touched)
	err := t.txn.Commit()
	t.cache.end(t.touched)
	t.touched = t.touched[:0]
	t.written, t.keysWritten = 0, 0
	t.must(err)
	t.txn = t.db.NewTransaction(true)
}

// commit writes the applied index with the data, in the same transaction,
// and opens the next one.
func (t *tx) commit(applied uint64) {
	t.set([]byte(keySeq), putUint64(t.seq))
	t.set([]byte(keyApplied), putUint64(applied))
	t.commitTxn()
	t.ac.seq, t.ac.seqKnown = t.seq, true
}

func getValue(txn *badger.Txn, key []byte) ([]byte, bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := item.ValueCopy(nil)
	return v, err == nil, err
}

func scanKeys(txn *badger.Txn, prefix []byte, limit int) [][]byte {
	return scanKeysFrom(txn, prefix, prefix, limit)
}

// scanKeysFrom is scanKeys starting at from (at or after prefix). Each key
// is a fresh copy: the transaction keeps the slices given to Delete and Set
// until it commits, so they must not be reused.
func scanKeysFrom(txn *badger.Txn, prefix, from []byte, limit int) [][]byte {
	return scanKeysWhile(txn, prefix, from, limit, nil)
}

// scanKeysWhile is scanKeysFrom that stops before the first key for which
// ok, if given, is false.
func scanKeysWhile(txn *badger.Txn, prefix, from []byte, limit int, ok func(k []byte) bool) [][]byte {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	var out [][]byte
	for it.Seek(from); it.ValidForPrefix(prefix); it.Next() {
		if ok != nil && !ok(it.Item().Key()) {
			break
		}
		out = append(out, it.Item().KeyCopy(nil))
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out
}

// keysPage is how many keys eachKey holds at once. Each page is a new
// iterator, and an iterator of a write transaction sorts the writes the
// transaction holds (up to Badger's batch limit, thousands while a user is
// deleted): with pages of 512 that sorting was a quarter of what deleting
// a user cost (BenchmarkDeleteUser). Variables only so that a test can
// cross many pages with few records.
var keysPage = 4096

// eachKey calls fn with every key under prefix in order, as keys would
// list them, but reads them a page at a time: deleting a user with 100,000
// notifications held every key of them at once (19 MB) before. fn may
// delete or overwrite the key it is given and write elsewhere, the
// transaction may be committed and renewed under it (flush), and each page
// is read afresh from just after the last key of the page before; fn must
// not add keys under prefix, which a later page would then see. The calls
// are the same as over keys' list, so the writes, and Apply, stay
// deterministic.
func (t *tx) eachKey(prefix []byte, fn func(k []byte)) {
	for from := prefix; ; {
		page := scanKeysFrom(t.txn, prefix, from, keysPage)
		for _, k := range page {
			t.stepDone()
			fn(k)
		}
		if len(page) < keysPage {
			return
		}
		// The smallest key after the page's last one.
		from = append(append([]byte(nil), page[len(page)-1]...), 0)
	}
}
