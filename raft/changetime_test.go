package raft

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/resource"
)

// ceKeys returns the change log's time index, in order.
func ceKeys(t *testing.T, db *badger.DB) []string {
	t.Helper()
	return slices.Sorted(maps.Keys(keysUnder(t, db, "ce/")))
}

// The changes of one entry share one key of the time index, however many
// users they touch, and a purge past the retention trims every one of them
// and raises each user's trim floor; a key of an earlier version (one per
// change) is trimmed beside them. An entry of more changes than a group
// holds writes several keys.
func TestChangeTimeIndexIsOneKeyPerEntry(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	s := &Store{db: db}
	now := time.Now()
	ann, bob := newUser("ann"), newUser("bob")
	index := uint64(0)
	apply := func(cmds ...*Command) {
		t.Helper()
		index++
		for _, r := range f.ApplyBatch([]*hraft.Log{entry(t, index, cmds...)})[0].([]Result) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	apply(&Command{Op: OpCreateUser, Now: now.UnixNano(), User: ann}, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: bob},
		&Command{Op: OpCreateApp, Now: now.UnixNano(), App: &resource.ApplicationRecord{ID: "app", AppID: "appid", TargetHostName: "a.example"}})
	apply(sendCmd(ann.ID, "app", "", now, now.Add(48*time.Hour)), sendCmd(bob.ID, "app", "", now.Add(time.Millisecond), now.Add(48*time.Hour)),
		sendCmd(ann.ID, "app", "", now, now.Add(48*time.Hour)))
	keys := ceKeys(t, db)
	if len(keys) != 1 || strings.Count(keys[0], "/") != 2 {
		t.Fatalf("time index after an entry of three sends: %q, want one group key", keys)
	}
	if want := string(changeGroupKey(now.Add(time.Millisecond).UnixMilli(), 1)); keys[0] != want {
		t.Errorf("group key %q, want %q (the latest change's time, the first change's seq)", keys[0], want)
	}
	// A change indexed as an earlier version did.
	apply(sendCmd(bob.ID, "app", "", now, now.Add(48*time.Hour)))
	err := db.Update(func(txn *badger.Txn) error {
		for _, k := range ceKeys(t, db) {
			if k != keys[0] {
				if err := txn.Delete([]byte(k)); err != nil {
					return err
				}
			}
		}
		return txn.Set(changeTimeKey(now.UnixMilli(), bob.ID, 4), nil)
	})
	if err != nil {
		t.Fatal(err)
	}

	apply(&Command{Op: OpPurge, Now: now.Add(2 * time.Hour).UnixNano(), MaxItems: 100, Retention: int64(time.Hour)})
	if left := ceKeys(t, db); len(left) != 0 {
		t.Errorf("time index after the purge: %q", left)
	}
	for _, c := range []struct {
		u     *resource.UserRecord
		floor uint64
	}{{ann, 3}, {bob, 4}} {
		if got, err := s.ChangeFloor(c.u.ID); err != nil || got != c.floor {
			t.Errorf("%s's trim floor %d (%v), want %d", c.u.UserPrincipalName, got, err, c.floor)
		}
		if ch, err := s.Changes(c.u.ID, 0, 10); err != nil || len(ch) != 0 {
			t.Errorf("%s's changes after the purge: %d (%v), want none", c.u.UserPrincipalName, len(ch), err)
		}
	}

	many := make([]*Command, indexGroupMax+10)
	for i := range many {
		many[i] = sendCmd(ann.ID, "app", fmt.Sprint(i), now.Add(3*time.Hour), now.Add(48*time.Hour))
	}
	apply(many...)
	if keys := ceKeys(t, db); len(keys) != 2 {
		t.Errorf("an entry of %d changes wrote %d keys of the time index, want 2", len(many), len(keys))
	}
}

// A purge trims about MaxItems changes, however many each key of the time
// index lists: it stops taking keys once it has trimmed that many, and the
// next purge goes on from there.
func TestChangeTrimStopsAtMaxItems(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("hal")
	apply := entries(t, f)
	apply(&Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})
	for e := range 3 {
		cmds := make([]*Command, 100)
		for i := range cmds {
			cmds[i] = sendCmd(u.ID, "app", fmt.Sprint(e, "-", i), now.Add(time.Duration(e)*time.Millisecond), now.Add(48*time.Hour))
		}
		apply(cmds...)
	}
	purge := func() PurgeResult {
		return apply(&Command{Op: OpPurge, Now: now.Add(2 * time.Hour).UnixNano(), MaxItems: 150, Retention: int64(time.Hour)})[0].Value.(PurgeResult)
	}
	if got := purge().Changes; got != 200 {
		t.Fatalf("the first purge trimmed %d changes, want 200 (two keys of 100: it stops once past 150)", got)
	}
	if keys := ceKeys(t, db); len(keys) != 1 {
		t.Fatalf("time index after the first purge: %q, want one key left", keys)
	}
	if got := purge().Changes; got != 100 {
		t.Fatalf("the second purge trimmed %d changes, want the last 100", got)
	}
}

// A group's value is read back as written, and what it is not ends the
// reading without a panic.
func TestChangeRefsReadBackAndStopAtGarbage(t *testing.T) {
	var b []byte
	want := []struct {
		uid string
		seq uint64
	}{{"u1", 1}, {"", 0}, {strings.Repeat("x", 300), 1 << 62}}
	for _, w := range want {
		b = appendChangeRef(b, w.uid, w.seq)
	}
	for i, w := range want {
		uid, seq, rest, ok := nextChangeRef(b)
		if !ok || uid != w.uid || seq != w.seq {
			t.Fatalf("ref %d: %q %d %v, want %q %d", i, uid, seq, ok, w.uid, w.seq)
		}
		b = rest
	}
	if _, _, _, ok := nextChangeRef(b); ok {
		t.Error("a ref read past the end")
	}
	for _, bad := range [][]byte{{0x05, 'a'}, {0x80}, {0x02, 'a', 'b'}, {0x01, 'a', 0x80}} {
		if _, _, _, ok := nextChangeRef(bad); ok {
			t.Errorf("%x read as a ref", bad)
		}
	}
}
