package raft

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"
)

// stopsWith runs f and returns what it panicked with, or "" if it did not.
func stopsWith(f func()) (said string) {
	defer func() {
		if r := recover(); r != nil {
			said = fmt.Sprint(r)
		}
	}()
	f()
	return ""
}

// A node whose binary is older than the level its cluster raised to (its
// binary replaced by an older one after every member had said it knew the
// level, or a member rebuilt from an older image) must not apply the
// entries after the raise under its own, older rules: its state would part
// from the others' for good, and it would serve that state (found with a
// node of the level 2 release on an empty directory under a member's id: a
// renewal the others refused under level 3 renewed a subscription on it
// alone). It stops at the raise, which it commits as every replica does,
// so that its next start refuses the state and says why (node.Start); the
// entries after the raise are not applied.
func TestAnOlderBinaryStopsAtARaiseItDoesNotKnow(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("ulla")
	said := stopsWith(func() {
		f.ApplyBatch([]*hraft.Log{
			entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u}),
			entry(t, 2, &Command{Op: OpSetRules, Now: now.UnixNano(), Level: RulesLevel + 1}),
			entry(t, 3, sendCmd(u.ID, "app", "after", now, now.Add(time.Hour))),
		})
	})
	if !strings.Contains(said, "rules level") || !strings.Contains(said, "release the other nodes run") {
		t.Fatalf("applying a raise to level %d stopped with %q; want a stop that says why", RulesLevel+1, said)
	}
	if got := f.Applied(); got != 2 {
		t.Errorf("applied through %d, want 2: the raise committed, and nothing after it", got)
	}
	if level, err := (&Store{db: db}).Rules(); err != nil || level != RulesLevel+1 {
		t.Errorf("the state holds rules level %d (%v), want %d, which the next start refuses", level, err, RulesLevel+1)
	}
	s := &Store{db: db}
	if page, err := s.ListNotifications(u.ID, "", 10, nil); err != nil || len(page.Items) != 0 {
		t.Errorf("the send after the raise was applied under the older rules: %d notifications (%v)", len(page.Items), err)
	}
}

// The same for a snapshot a leader of a newer release sends (a member
// rebuilt on an empty directory from an older image is sent one): loaded,
// the node stops rather than apply what follows under older rules.
func TestAnOlderBinaryStopsAtASnapshotOfNewerRules(t *testing.T) {
	src, srcDB := openFSM(t, t.TempDir())
	defer srcDB.Close()
	now := time.Now()
	u := newUser("vera")
	src.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})})
	// What a newer release's FSM holds after its raise.
	if err := srcDB.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(keyRules), putUint64(RulesLevel+1))
	}); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := WriteBackup(context.Background(), srcDB, &snap); err != nil {
		t.Fatal(err)
	}

	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	said := stopsWith(func() {
		if err := f.Restore(io.NopCloser(bytes.NewReader(snap.Bytes()))); err != nil {
			t.Errorf("restore: %v", err)
		}
	})
	if !strings.Contains(said, "rules level") {
		t.Fatalf("loading a snapshot under rules level %d stopped with %q; want a stop that says why", RulesLevel+1, said)
	}
	if level, err := (&Store{db: db}).Rules(); err != nil || level != RulesLevel+1 {
		t.Errorf("the state holds rules level %d (%v), want %d, which the next start refuses", level, err, RulesLevel+1)
	}

	// Under rules this binary knows, a snapshot loads as before.
	if err := srcDB.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(keyRules), putUint64(RulesLevel))
	}); err != nil {
		t.Fatal(err)
	}
	snap.Reset()
	if err := WriteBackup(context.Background(), srcDB, &snap); err != nil {
		t.Fatal(err)
	}
	f2, db2 := openFSM(t, t.TempDir())
	defer db2.Close()
	if said := stopsWith(func() {
		if err := f2.Restore(io.NopCloser(bytes.NewReader(snap.Bytes()))); err != nil {
			t.Errorf("restore: %v", err)
		}
	}); said != "" {
		t.Fatalf("a snapshot under this binary's rules stopped the node: %s", said)
	}
}
