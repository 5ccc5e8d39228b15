package raft

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/resource"
)

// keysWith returns every key in db that contains s, with its value.
func keysWith(t *testing.T, db *badger.DB, s string) map[string]string {
	t.Helper()
	return keysWhere(t, db, func(k []byte) bool { return bytes.Contains(k, []byte(s)) })
}

// keysUnder returns every key in db that starts with prefix, with its
// value. An index's prefix may also turn up inside another key: a
// notification id is random letters.
func keysUnder(t *testing.T, db *badger.DB, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := db.View(func(txn *badger.Txn) error {
		return scanTxn(txn, []byte(prefix), "", false, func(k, v []byte) (bool, error) {
			out[string(k)] = string(v)
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keysWhere(t *testing.T, db *badger.DB, match func(k []byte) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if match(it.Item().Key()) {
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				out[string(it.Item().KeyCopy(nil))] = string(v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDeletingAUserWithManyNotificationsRemovesEveryRecord: the deletion
// reads the user's keys a page at a time (eachKey, with small pages
// here); every notification,
// its delivery records and indexes, every change-log record and the
// subscription go, across many pages, and another user's records stay.
func TestDeletingAUserWithManyNotificationsRemovesEveryRecord(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	big, other := newUser("big"), newUser("other")
	app := &resource.ApplicationRecord{ID: "app", AppID: "appid", TargetHostName: "a.example"}
	sub := func(id string, u *resource.UserRecord) *Command {
		return &Command{Op: OpCreateSub, Now: now.UnixNano(), Sub: &resource.SubscriptionRecord{Subscription: resource.Subscription{
			ID: id, UserID: u.ID, TargetHostName: "a.example", PlatformType: resource.PlatformWeb, Status: resource.SubActive,
			Channel: resource.Channel{Type: resource.ChannelLive}, ExpirationDateTime: resource.At(now.Add(time.Hour))}, AppID: app.ID}}
	}
	index := uint64(1)
	apply := func(cmds ...*Command) {
		t.Helper()
		for i, r := range f.ApplyBatch([]*hraft.Log{entry(t, index, cmds...)}) {
			if res, ok := r.(Result); ok && res.Err != nil {
				t.Fatalf("entry %d, command %d: %v", index, i, res.Err)
			}
		}
		index++
	}
	apply(&Command{Op: OpCreateUser, Now: now.UnixNano(), User: big}, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: other},
		&Command{Op: OpCreateApp, Now: now.UnixNano(), App: app})
	hook := sub("big-hook", big)
	hook.Sub.Channel = resource.Channel{Type: resource.ChannelWebhook, URL: "https://hooks.example/h"}
	apply(sub("big-sub", big), hook, sub("other-sub", other))
	defer func(k int) { keysPage = k }(keysPage)
	keysPage = 512
	many := 5 * keysPage
	for i := 0; i < many; i += 100 {
		var cmds []*Command
		for j := i; j < min(i+100, many); j++ {
			cmds = append(cmds, sendCmd(big.ID, app.ID, fmt.Sprintf("big-%d", j), now.Add(time.Duration(j)), now.Add(time.Hour)))
		}
		apply(cmds...)
	}
	apply(sendCmd(other.ID, app.ID, "other-1", now, now.Add(time.Hour)), sendCmd(other.ID, app.ID, "other-2", now, now.Add(time.Hour)))

	bigKeys, otherKeys := keysWith(t, db, big.ID), keysWith(t, db, other.ID)
	// A notification, its webhook delivery's record and pending index,
	// its appNotificationId index, its change record (the live delivery
	// is kept in the notification's record, and the change's time index
	// and the expiry index under their entry's keys).
	if len(bigKeys) < 5*many {
		t.Fatalf("the user to delete has %d records, want at least %d", len(bigKeys), 5*many)
	}

	apply(&Command{Op: OpDeleteUser, Now: now.UnixNano(), UserID: big.ID})
	left := keysWith(t, db, big.ID)
	for k := range left {
		// The change log's time index and the expiry index are left
		// for the purge, which drops them when they fall due and passes
		// over what is gone (purge, expire).
		if strings.HasPrefix(k, "ce/") || strings.HasPrefix(k, "ne/") {
			delete(left, k)
		}
	}
	if len(left) != 0 {
		some := make([]string, 0, 3)
		for k := range left {
			if len(some) < 3 {
				some = append(some, k)
			}
		}
		t.Fatalf("%d of the deleted user's %d records remain, such as %q", len(left), len(bigKeys), some)
	}
	// The other user's keys hold random notification ids, which may
	// spell "big".
	if left := keysWhere(t, db, func(k []byte) bool {
		return bytes.Contains(k, []byte("big")) && !bytes.Contains(k, []byte(other.ID))
	}); len(left) != 0 {
		t.Fatalf("records naming the deleted user remain: %v", left)
	}
	after := keysWith(t, db, other.ID)
	if len(after) != len(otherKeys) {
		t.Fatalf("the other user had %d records, now %d", len(otherKeys), len(after))
	}
	for k, v := range otherKeys {
		if after[k] != v {
			t.Fatalf("the other user's %q changed", k)
		}
	}
	s := &Store{db: db}
	if _, found, err := s.User(big.ID); err != nil || found {
		t.Fatalf("the deleted user still reads: %v %v", found, err)
	}
}

// BenchmarkDeleteUser deletes a user with 20,000 notifications (each with
// an appNotificationId and a change record) in one entry, as DELETE
// /v1.0/users/{id} does: every write on the node waits behind that entry.
// One op is one deleted notification.
func BenchmarkDeleteUser(b *testing.B) {
	const many = 20000
	f, db := openFSM(b, b.TempDir())
	defer db.Close()
	now := time.Now()
	app := &resource.ApplicationRecord{ID: "app", AppID: "appid", TargetHostName: "a.example"}
	index := uint64(1)
	apply := func(cmds ...*Command) {
		for i, r := range f.ApplyBatch([]*hraft.Log{entry(b, index, cmds...)}) {
			if res, ok := r.(Result); ok && res.Err != nil {
				b.Fatalf("entry %d, command %d: %v", index, i, res.Err)
			}
		}
		index++
	}
	apply(&Command{Op: OpCreateApp, Now: now.UnixNano(), App: app})
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += many {
		b.StopTimer()
		u := newUser(fmt.Sprintf("big%d", n))
		apply(&Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})
		for i := 0; i < many; i += 128 {
			cmds := make([]*Command, 0, 128)
			for j := i; j < min(i+128, many); j++ {
				cmds = append(cmds, sendCmd(u.ID, app.ID, fmt.Sprintf("n-%d", j), now.Add(time.Duration(j)), now.Add(time.Hour)))
			}
			apply(cmds...)
		}
		b.StartTimer()
		apply(&Command{Op: OpDeleteUser, Now: now.UnixNano(), UserID: u.ID})
	}
}
