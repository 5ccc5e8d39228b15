package raft

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/resource"
)

// neKeys returns the expiry index, in order, with each key's value.
func neKeys(t *testing.T, db *badger.DB) (keys []string, vals map[string]string) {
	t.Helper()
	vals = keysUnder(t, db, "ne/")
	return slices.Sorted(maps.Keys(vals)), vals
}

// entries returns a function that applies its commands to f as the next
// entry, fails t on any command's error, and returns the results.
func entries(t *testing.T, f *FSM) func(cmds ...*Command) []Result {
	index := uint64(0)
	return func(cmds ...*Command) []Result {
		t.Helper()
		index++
		res := f.ApplyBatch([]*hraft.Log{entry(t, index, cmds...)})[0].([]Result)
		for _, r := range res {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		return res
	}
}

// The notifications one entry creates share one key of the expiry index
// when their expiries lie within a second of the first's; one further off
// gets a key of its own, as every notification had before. A purge once
// the group's latest expiry has passed removes all of them; a notification
// that a later send replaced with a later expiry stays until that one.
func TestExpiryIndexIsOneKeyPerEntry(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	s := &Store{db: db}
	now := time.Now().Truncate(time.Millisecond)
	ann, bob := newUser("ann"), newUser("bob")
	apply := entries(t, f)
	apply(&Command{Op: OpCreateUser, Now: now.UnixNano(), User: ann}, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: bob},
		&Command{Op: OpCreateApp, Now: now.UnixNano(), App: &resource.ApplicationRecord{ID: "app", AppID: "appid", TargetHostName: "a.example"}})
	exp := now.Add(time.Hour)
	res := apply(sendCmd(ann.ID, "app", "keep", now, exp), sendCmd(bob.ID, "app", "", now, exp.Add(700*time.Millisecond)),
		sendCmd(ann.ID, "app", "", now, exp.Add(5*time.Hour)), sendCmd(bob.ID, "app", "", now, exp.Add(-200*time.Millisecond)))
	id := func(i int) string { return res[i].Value.(SendResult).Notification.ID }
	keys, vals := neKeys(t, db)
	// The entry's first send records change 1.
	group, lone := string(expiryGroupKey(exp.Add(700*time.Millisecond).UnixMilli(), 1)),
		string(expiryKey(exp.Add(5*time.Hour).UnixMilli(), ann.ID, id(2)))
	if !slices.Equal(keys, []string{group, lone}) {
		t.Fatalf("expiry index after an entry of four sends: %q, want the group's key %q and the far one's %q", keys, group, lone)
	}
	if vals[lone] != "" {
		t.Errorf("a lone notification's key holds %q, want nothing, as before groups", vals[lone])
	}
	var refs []string
	ref := make([]string, 2)
	for b, ok := nextRef([]byte(vals[group]), ref); ok; b, ok = nextRef(b, ref) {
		refs = append(refs, ref[0]+"/"+ref[1])
	}
	if want := []string{ann.ID + "/" + id(0), bob.ID + "/" + id(1), bob.ID + "/" + id(3)}; !slices.Equal(refs, want) {
		t.Fatalf("the group lists %q, want %q", refs, want)
	}

	// Ann's first notification is replaced with a later expiry.
	apply(sendCmd(ann.ID, "app", "keep", now, exp.Add(3*time.Hour)))
	purge := func(at time.Time) PurgeResult {
		t.Helper()
		return apply(&Command{Op: OpPurge, Now: at.UnixNano(), MaxItems: 100, Retention: int64(1000 * time.Hour)})[0].Value.(PurgeResult)
	}
	if got := purge(exp.Add(500 * time.Millisecond)); got.Notifications != 0 {
		t.Fatalf("a purge before the group's latest expiry removed %d notifications", got.Notifications)
	}
	if got := purge(exp.Add(time.Second)); got.Notifications != 2 {
		t.Fatalf("the group's purge removed %d notifications, want bob's two (ann's was replaced with a later expiry)", got.Notifications)
	}
	for i, want := range map[int]bool{0: true, 1: false, 2: true, 3: false} {
		uid := map[int]string{0: ann.ID, 1: bob.ID, 2: ann.ID, 3: bob.ID}[i]
		if _, found, err := s.Notification(uid, id(i)); err != nil || found != want {
			t.Errorf("notification %d after the group's purge: found %v (%v), want %v", i, found, err, want)
		}
	}
	var c counters
	if v, ok := keysWith(t, db, string(countersKey(bob.ID)))[string(countersKey(bob.ID))]; !ok {
		t.Error("bob's counters are gone")
	} else if err := json.Unmarshal([]byte(v), &c); err != nil || c.Notifications != 0 {
		t.Errorf("bob counts %d active notifications after both expired (%v)", c.Notifications, err)
	}
	if got := purge(exp.Add(6 * time.Hour)); got.Notifications != 2 {
		t.Fatalf("the last purge removed %d notifications, want ann's two", got.Notifications)
	}
	if keys, _ := neKeys(t, db); len(keys) != 0 {
		t.Fatalf("expiry index left after every notification expired: %q", keys)
	}
}

// A deleted user's notifications leave their expiry index to the purge,
// which passes over them when it falls due and counts none.
func TestPurgePassesOverADeletedUsersExpiryIndex(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("gone")
	apply := entries(t, f)
	apply(&Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})
	apply(sendCmd(u.ID, "app", "a", now, now.Add(time.Hour)), sendCmd(u.ID, "app", "b", now, now.Add(time.Hour)))
	apply(sendCmd(u.ID, "app", "c", now, now.Add(time.Hour)))
	apply(&Command{Op: OpDeleteUser, Now: now.UnixNano(), UserID: u.ID})
	if keys, _ := neKeys(t, db); len(keys) != 2 {
		t.Fatalf("expiry index after the deletion: %q, want the group's key and the lone one's", keys)
	}
	got := apply(&Command{Op: OpPurge, Now: now.Add(2 * time.Hour).UnixNano(), MaxItems: 100})[0].Value.(PurgeResult)
	if got.Notifications != 0 {
		t.Errorf("the purge counted %d notifications of a deleted user", got.Notifications)
	}
	if keys, _ := neKeys(t, db); len(keys) != 0 {
		t.Fatalf("expiry index left after its purge: %q", keys)
	}
}
