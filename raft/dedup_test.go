package raft

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/resource"
)

// A forwarded command resent with its RequestID (the follower could not
// tell whether the first send committed) is applied once: the resend, in a
// later entry or in the same one, answers the first result, whether that was
// a value or a rule error, and writes nothing.
func TestResentCommandIsAppliedOnce(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("erin")
	create := &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u, RequestID: "req-1"}
	send := sendCmd(u.ID, "app", "", now, now.Add(time.Hour))
	send.RequestID = "req-2"
	res := f.ApplyBatch([]*hraft.Log{entry(t, 1, create, send, send), entry(t, 2, create, send)})
	first, again := res[0].([]Result), res[1].([]Result)
	for i, r := range append(first, again...) {
		if r.Err != nil {
			t.Fatalf("result %d: %v", i, r.Err)
		}
	}
	if got, ok := again[0].Value.(resource.User); !ok || got.ID != u.ID {
		t.Fatalf("resent create answered %#v, want the user", again[0].Value)
	}
	sent, ok := first[1].Value.(SendResult)
	for i, r := range []Result{first[2], again[1]} {
		if got, isSend := r.Value.(SendResult); !ok || !isSend || got.Notification.ID != sent.Notification.ID || !got.Created {
			t.Fatalf("resend %d answered %#v, want the first %#v", i, r.Value, first[1].Value)
		}
	}
	s := &Store{db: db}
	if ch, _ := s.Changes(u.ID, 0, 10); len(ch) != 1 {
		t.Fatalf("%d changes, want 1: the send was applied more than once", len(ch))
	}

	// A new command (a new id) with the same name breaks the rule; its
	// resend answers the same error even once the rule would pass.
	clash := &Command{Op: OpCreateUser, Now: now.UnixNano(), User: newUser("erin"), RequestID: "req-3"}
	del := &Command{Op: OpDeleteUser, Now: now.UnixNano(), UserID: u.ID, RequestID: "req-4"}
	res = f.ApplyBatch([]*hraft.Log{entry(t, 3, clash, del), entry(t, 4, clash)})
	var re *resource.Error
	for i, r := range []Result{res[0].([]Result)[0], res[1].([]Result)[0]} {
		if !errors.As(r.Err, &re) || re.Code != resource.CodeNameExists {
			t.Fatalf("clash %d: %v, want nameAlreadyExists", i, r.Err)
		}
	}
	if _, found, _ := s.UserByName("erin"); found {
		t.Fatal("the resent clash created the user after it was deleted")
	}
}

// Remembered results expire by the Now of later commands, never by the
// wall clock, so every replica (and a replay days later) forgets a request
// at the same entry.
func TestRequestRecordsExpireByCommandTime(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // long past
	u := newUser("fay")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: t0.UnixNano(), User: u, RequestID: "old"})})
	has := func(id string) bool {
		var found bool
		db.View(func(txn *badger.Txn) error {
			_, err := txn.Get(requestKey(id))
			found = err == nil
			return nil
		})
		return found
	}
	if !has("old") {
		t.Fatal("no record of the first request")
	}
	// Just inside the window: kept.
	inside := sendCmd(u.ID, "app", "", t0.Add(RequestWindow-time.Second), t0.Add(RequestWindow+time.Hour))
	inside.RequestID = "inside"
	f.ApplyBatch([]*hraft.Log{entry(t, 2, inside)})
	if !has("old") {
		t.Fatal("the record was dropped within its window")
	}
	later := sendCmd(u.ID, "app", "", t0.Add(RequestWindow+time.Second), t0.Add(RequestWindow+time.Hour))
	later.RequestID = "later"
	// Entry 4: every fourth entry looks for expired records.
	f.ApplyBatch([]*hraft.Log{entry(t, 4, later)})
	if has("old") || !has("inside") || !has("later") {
		t.Fatalf("after the window: old %v inside %v later %v, want only old gone", has("old"), has("inside"), has("later"))
	}
	// The leader's purge sweeps what no forwarded write came to remove.
	f.ApplyBatch([]*hraft.Log{entry(t, 5, &Command{Op: OpPurge, Now: t0.Add(time.Hour).UnixNano(), MaxItems: 100})})
	if has("inside") || has("later") {
		t.Fatal("the purge left expired request records")
	}
}

// The records an entry stores share one key of their expiry index, named by
// the entry, and expire together by their latest expiry; a lone record keeps
// the key of its own that every record had before groups, and both kinds
// are forgotten once due.
func TestRequestRecordsAreIndexedOncePerEntry(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	u := newUser("gil")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: t0.UnixNano(), User: u})})
	send := func(id string, at time.Time) *Command {
		c := sendCmd(u.ID, "app", "", at, at.Add(time.Hour))
		c.RequestID = id
		return c
	}
	f.ApplyBatch([]*hraft.Log{entry(t, 2, send("f.1", t0), send("f.2", t0.Add(time.Second)), send("f.3", t0)),
		entry(t, 3, send("f.4", t0))})
	keys := slices.Sorted(maps.Keys(keysUnder(t, db, "rqe/")))
	group, lone := string(requestGroupKey(t0.Add(time.Second+RequestWindow).UnixMilli(), 2, 0)),
		string(requestExpiryKey(t0.Add(RequestWindow).UnixMilli(), "f.4"))
	if !slices.Equal(keys, []string{lone, group}) {
		t.Fatalf("expiry index after an entry of three forwarded sends and one of one: %q, want %q and %q", keys, lone, group)
	}
	var ids []string
	id := make([]string, 1)
	for b, ok := nextRef([]byte(keysUnder(t, db, group)[group]), id); ok; b, ok = nextRef(b, id) {
		ids = append(ids, id[0])
	}
	if !slices.Equal(ids, []string{"f.1", "f.2", "f.3"}) {
		t.Fatalf("the group lists %q", ids)
	}
	// A resend answers the first result and writes nothing.
	res := f.ApplyBatch([]*hraft.Log{entry(t, 5, send("f.2", t0.Add(time.Second)))})[0].([]Result)
	if r, ok := res[0].Value.(SendResult); !ok || !r.Created {
		t.Fatalf("the resend answered %#v", res[0])
	}
	if ch, _ := (&Store{db: db}).Changes(u.ID, 0, 10); len(ch) != 4 {
		t.Fatalf("%d changes, want 4: a resend was applied again", len(ch))
	}
	// Past the lone record's expiry, before the group's latest.
	f.ApplyBatch([]*hraft.Log{entry(t, 6, &Command{Op: OpPurge, Now: t0.Add(RequestWindow + 500*time.Millisecond).UnixNano(), MaxItems: 100})})
	if left := keysUnder(t, db, "rq/"); len(left) != 3 {
		t.Fatalf("records after the lone one expired: %q, want the group's three", slices.Sorted(maps.Keys(left)))
	}
	f.ApplyBatch([]*hraft.Log{entry(t, 7, &Command{Op: OpPurge, Now: t0.Add(RequestWindow + time.Second).UnixNano(), MaxItems: 100})})
	if left := keysUnder(t, db, "rq"); len(left) != 0 {
		t.Fatalf("records and index left once all expired: %q", slices.Sorted(maps.Keys(left)))
	}
}

// due lists a time-ordered index up to its cutoff and no further: the
// keys due, oldest first, at most limit of them, including this write
// transaction's own.
func TestDueStopsAtTheFirstKeyNotDue(t *testing.T) {
	_, db := openFSM(t, t.TempDir())
	defer db.Close()
	tx := newTx(db, newApplyCache())
	defer tx.txn.Discard()
	for _, ms := range []int64{300, 100, 200, 400, 500} {
		tx.set(requestExpiryKey(ms, fmt.Sprintf("id%d", ms)), nil)
	}
	tx.set([]byte("rqx/not-the-index"), nil)
	keys := func(ks [][]byte) []string {
		var out []string
		for _, k := range ks {
			out = append(out, string(k))
		}
		return out
	}
	for _, c := range []struct {
		cutoff int64
		limit  int
		want   []int64
	}{
		{99, 0, nil},
		{100, 0, []int64{100}},
		{350, 0, []int64{100, 200, 300}},
		{350, 2, []int64{100, 200}},
		{1000, 0, []int64{100, 200, 300, 400, 500}},
	} {
		var want []string
		for _, ms := range c.want {
			want = append(want, string(requestExpiryKey(ms, fmt.Sprintf("id%d", ms))))
		}
		if got := keys(tx.due([]byte("rqe/"), c.cutoff, c.limit)); !slices.Equal(got, want) {
			t.Errorf("due by %d, limit %d: %q, want %q", c.cutoff, c.limit, got, want)
		}
	}
}
