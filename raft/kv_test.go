package raft

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func kvGet(t *testing.T, txn *badger.Txn, key string) string {
	t.Helper()
	v, found, err := getValue(txn, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return "(none)"
	}
	return string(v)
}

func kvSet(t *testing.T, k *kv, key, val string) {
	t.Helper()
	if err := k.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), []byte(val)) }); err != nil {
		t.Fatal(err)
	}
}

// A read sees every commit made before it started and none made after,
// and while it is open the versions it sees are kept from compactions.
func TestReadsSeeTheLastCommitAndHoldTheDiscardMark(t *testing.T) {
	k, err := openKV(badgerOptions(t.TempDir(), minMemory))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	kvSet(t, k, "x", "1")
	first := k.ts
	txn, done := k.read()
	kvSet(t, k, "x", "2")
	kvSet(t, k, "y", "2")
	if got := kvGet(t, txn, "x"); got != "1" {
		t.Errorf("a read opened before two commits reads x = %s, want 1", got)
	}
	if got := kvGet(t, txn, "y"); got != "(none)" {
		t.Errorf("a read opened before y was written reads y = %s", got)
	}
	if k.discard != first {
		t.Errorf("discard mark %d with a read open at %d", k.discard, first)
	}
	err = k.View(func(txn *badger.Txn) error {
		if got := kvGet(t, txn, "x"); got != "2" {
			t.Errorf("a read opened after the commits reads x = %s, want 2", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	done()
	kvSet(t, k, "x", "3")
	if k.discard != k.ts {
		t.Errorf("discard mark %d with no read open, last commit %d", k.discard, k.ts)
	}
}

// Versions that no read can see are dropped by compactions: without a
// discard mark, managed Badger keeps every version of every key.
func TestCompactionsDropOldVersions(t *testing.T) {
	dir := t.TempDir()
	k, err := openKV(badgerOptions(dir, minMemory))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		for j := range 20 {
			kvSet(t, k, fmt.Sprintf("key-%02d", j), fmt.Sprintf("value %d", i))
		}
	}
	last := k.ts
	if err := k.Close(); err != nil { // flushes the memtable to a table
		t.Fatal(err)
	}
	k, err = openKV(badgerOptions(dir, minMemory))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if k.ts != last {
		t.Fatalf("reopened at version %d, last commit was %d", k.ts, last)
	}
	if err := k.Flatten(1); err != nil {
		t.Fatal(err)
	}
	versions := 0
	err = k.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.AllVersions = true
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if it.Item().Version() <= last {
				versions++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if versions != 20 {
		t.Errorf("%d versions of 20 keys written 40 times each after a compaction, want 20", versions)
	}
	// Writes go on from the last version.
	kvSet(t, k, "key-00", "after")
	err = k.View(func(txn *badger.Txn) error {
		if got := kvGet(t, txn, "key-00"); got != "after" {
			return errors.New("key-00 reads " + got + " after a write past the reopen")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// A data directory written by Badger's own numbering (Herald before
// managed mode) opens in managed mode, and the other way round: an
// upgrade and a downgrade each read what the other wrote.
func TestManagedModeReadsAndLeavesBadgersOwnVersions(t *testing.T) {
	dir := t.TempDir()
	opts := badgerOptions(dir, minMemory)
	old, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := old.Update(func(txn *badger.Txn) error { return txn.Set([]byte("x"), fmt.Appendf(nil, "old %d", i)) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	k, err := openKV(opts)
	if err != nil {
		t.Fatal(err)
	}
	err = k.View(func(txn *badger.Txn) error {
		if got := kvGet(t, txn, "x"); got != "old 4" {
			t.Errorf("managed mode reads x = %s, want old 4", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	kvSet(t, k, "x", "new")
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	old, err = badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	err = old.View(func(txn *badger.Txn) error {
		if got := kvGet(t, txn, "x"); got != "new" {
			t.Errorf("Badger's own numbering reads x = %s after managed mode wrote new", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
