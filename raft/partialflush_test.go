package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/resource"
)

// bigSendCmd is sendCmd with a body of about size bytes.
func bigSendCmd(uid, appNotifID string, now time.Time, size int) *Command {
	c := sendCmd(uid, "app", appNotifID, now, now.Add(time.Hour))
	raw := strings.Repeat("x", size)
	c.Notif.Payload.RawContent = &raw
	return c
}

// crashAfterFlushes makes the FSM stop, as a crash would, right after its
// n-th commit inside an entry: what that commit wrote stays in Badger, and
// the rest of the entry, and the applied index, do not.
func crashAfterFlushes(t *testing.T, n int) {
	t.Helper()
	left := n
	testAfterPart = func() {
		if left--; left == 0 {
			panic(errCrash)
		}
	}
	t.Cleanup(func() { testAfterPart = nil })
}

var errCrash = fmt.Errorf("simulated crash")

// crashAndReplay applies logs in f until the FSM stops after its n-th
// part, as a crash would, then opens the store at dir again and replays
// logs, as the next start does. The caller closes the store it returns.
func crashAndReplay(t *testing.T, f *FSM, db *badger.DB, dir string, logs []*hraft.Log, n int) (*FSM, *badger.DB) {
	t.Helper()
	crashAfterFlushes(t, n)
	applyUntilCrash(t, f, logs)
	testAfterPart = nil
	db.Close()
	f, db = openFSM(t, dir)
	f.ApplyBatch(logs)
	return f, db
}

func applyUntilCrash(t *testing.T, f *FSM, logs []*hraft.Log) {
	t.Helper()
	defer func() {
		if r := recover(); r != errCrash {
			t.Fatalf("the apply ended with %v, want the simulated crash", r)
		}
	}()
	f.ApplyBatch(logs)
}

// bigSends of 48 KiB each make an entry of 2.5 times Badger's transaction
// limit (with the default --memory).
const bigSends = 64

// crashInParts applies, in a store at dir, an entry of bigSends sends to a
// new user and stops the FSM, as a crash would, after the entry's first
// part. It returns the store, still open, the user and the logs to replay.
func crashInParts(t *testing.T, dir string) (*badger.DB, string, []*hraft.Log) {
	t.Helper()
	f, db := openFSM(t, dir)
	now := time.Now()
	u := newUser("gail")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})})
	var cmds []*Command
	for i := range bigSends {
		cmds = append(cmds, bigSendCmd(u.ID, fmt.Sprintf("n%d", i), now, 48<<10))
	}
	logs := []*hraft.Log{entry(t, 2, cmds...)}
	crashAfterFlushes(t, 1)
	applyUntilCrash(t, f, logs)
	testAfterPart = nil
	return db, u.ID, logs
}

// An entry whose writes outgrow one Badger transaction is committed in
// parts. A crash between two parts leaves Badger holding some of the
// entry's commands but not its index, so the entry is applied again at the
// next start, on top of them. That must come to what one application
// writes: every notification counted once and in the change log once.
func TestAnEntryCommittedInPartsIsReplayedExactly(t *testing.T) {
	dir := t.TempDir()
	db, uid, logs := crashInParts(t, dir)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	f, db := openFSM(t, dir)
	defer db.Close()
	if f.Applied() != 1 {
		t.Fatalf("applied = %d after the crash, want 1", f.Applied())
	}
	f.ApplyBatch(logs) // the replay at start
	if f.Applied() != 2 {
		t.Fatalf("applied = %d, want 2", f.Applied())
	}
	checkCountedOnce(t, db, uid, bigSends)
}

// The entries that share a transaction with the one cut in parts are in
// its first part too: a replay must not apply them again either.
func TestEntriesBeforeAPartAreNotAppliedAgain(t *testing.T) {
	dir := t.TempDir()
	f, db := openFSM(t, dir)
	now := time.Now()
	u := newUser("hal")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})})
	small := entry(t, 2, sendCmd(u.ID, "app", "s0", now, now.Add(time.Hour)), sendCmd(u.ID, "app", "s1", now, now.Add(time.Hour)))
	var cmds []*Command
	for i := range 60 { // three parts
		cmds = append(cmds, bigSendCmd(u.ID, fmt.Sprintf("b%d", i), now, 32<<10))
	}
	logs := []*hraft.Log{small, entry(t, 3, cmds...)}
	crashAfterFlushes(t, 2) // in the middle of entry 3
	applyUntilCrash(t, f, logs)
	testAfterPart = nil
	db.Close()

	f, db = openFSM(t, dir)
	defer db.Close()
	if f.Applied() != 2 {
		t.Fatalf("applied = %d after the crash, want 2: entry 2 is whole in the first part", f.Applied())
	}
	f.ApplyBatch(logs)
	s := &Store{db: db}
	ch, err := s.Changes(u.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) != 62 {
		t.Fatalf("%d changes, want 62", len(ch))
	}
	if n := len(keysUnder(t, db, keyResume)); n != 0 {
		t.Errorf("the resume mark is still stored after the entry's end")
	}
}

// Where an entry's parts end decides what is stored (its index groups, the
// resume mark), so it must not depend on how Raft hands the entries to the
// FSM: replicas that applied the same entries in different batches hold the
// same keys and values.
func TestPartsLeaveTheSameStateHoweverEntriesAreBatched(t *testing.T) {
	now := time.Now()
	u := newUser("ida")
	var logs []*hraft.Log
	logs = append(logs, entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u}))
	for e := range 6 {
		var cmds []*Command
		n := 3 + 100*(e%2) // small entries, and ones cut in parts
		for i := range n {
			size := 200
			if e%2 == 1 {
				size = 12 << 10
			}
			cmds = append(cmds, bigSendCmd(u.ID, fmt.Sprintf("e%d-%d", e, i), now.Add(time.Duration(e*100+i)*time.Millisecond), size))
		}
		logs = append(logs, entry(t, uint64(e+2), cmds...))
	}
	state := func(batches [][]*hraft.Log) map[string]string {
		f, db := openFSM(t, t.TempDir())
		defer db.Close()
		for _, b := range batches {
			f.ApplyBatch(b)
		}
		all := keysUnder(t, db, "")
		delete(all, keyApplied)
		return all
	}
	one := state([][]*hraft.Log{logs})
	var each [][]*hraft.Log
	for _, l := range logs {
		each = append(each, []*hraft.Log{l})
	}
	alone := state(each)
	if len(one) != len(alone) {
		t.Errorf("%d keys applied in one batch, %d applied one entry at a time", len(one), len(alone))
	}
	for k, v := range one {
		if w, ok := alone[k]; !ok {
			t.Errorf("key %q only when applied in one batch", k)
		} else if w != v {
			t.Errorf("key %q differs between the batchings", k)
		}
	}
}

// Deleting a user with many notifications writes more than a transaction
// takes, so it is cut in parts within the command; after a crash between
// them, the deletion applied again over its first parts removes the rest,
// and the send before it in the same entry stays counted once.
func TestADeletionCutInPartsIsAppliedAgainToTheEnd(t *testing.T) {
	dir := t.TempDir()
	f, db := openFSM(t, dir)
	now := time.Now()
	big, other := newUser("jo"), newUser("kim")
	index := usersWithSends(t, f, now, 4000, big, other)
	logs := []*hraft.Log{entry(t, index, sendCmd(other.ID, "app", "o1", now, now.Add(time.Hour)),
		&Command{Op: OpDeleteUser, Now: now.UnixNano(), UserID: big.ID})}
	f, db = crashAndReplay(t, f, db, dir, logs, 1)
	defer db.Close()
	if f.Applied() != index {
		t.Fatalf("applied = %d, want %d", f.Applied(), index)
	}
	if n := len(keysUnder(t, db, keyResume)); n != 0 {
		t.Errorf("the resume mark is still stored after the entry's end")
	}
	left := 0
	for k := range keysWith(t, db, big.ID) {
		if !strings.HasPrefix(k, "ce/") && !strings.HasPrefix(k, "ne/") { // left to the purge
			left++
		}
	}
	if left != 0 {
		t.Errorf("%d of the deleted user's records remain", left)
	}
	v, ok, err := getValue(db.NewTransaction(false), countersKey(other.ID))
	if err != nil || !ok || !strings.Contains(string(v), `"n":1`) {
		t.Errorf("the other user's counters %s (%v %v), want one notification", v, ok, err)
	}
	s := &Store{db: db}
	if ch, err := s.Changes(other.ID, 0, 10); err != nil || len(ch) != 1 {
		t.Errorf("the other user's changes: %d (%v), want 1", len(ch), err)
	}
}

// checkCountedOnce fails unless uid's sends notifications are each in the
// change log once, in an unbroken run of seqs, and counted once.
func checkCountedOnce(t *testing.T, db *badger.DB, uid string, sends int) {
	t.Helper()
	s := &Store{db: db}
	ch, err := s.Changes(uid, 0, 4*sends)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, c := range ch {
		if c.Type != resource.ChangeCreated {
			t.Errorf("change %d is %s, want only created ones", c.Seq, c.Type)
		}
		seen[c.NotificationID]++
	}
	if len(ch) != sends || len(seen) != sends {
		t.Errorf("%d changes for %d notifications, want %d of each", len(ch), len(seen), sends)
	}
	for i, c := range ch {
		if c.Seq != ch[0].Seq+uint64(i) {
			t.Errorf("change %d has seq %d, want %d: a gap where a part was applied twice", i, c.Seq, ch[0].Seq+uint64(i))
			break
		}
	}
	v, ok, err := getValue(db.NewTransaction(false), countersKey(uid))
	if err != nil || !ok {
		t.Fatalf("counters: %v %v", ok, err)
	}
	if want := fmt.Sprintf(`"n":%d`, sends); !strings.Contains(string(v), want) {
		t.Errorf("counters %s, want %s", v, want)
	}
}

// A snapshot streamed while an entry is between parts (Persist streams a
// view as entries go on applying) holds its first parts and their mark; a
// node that installs it resumes the entry from the same log. A backup
// restored into a new cluster starts a new log, so the mark goes.
func TestASnapshotBetweenPartsResumesTheEntry(t *testing.T) {
	db, uid, logs := crashInParts(t, t.TempDir())
	var snap bytes.Buffer
	txn := db.NewTransaction(false)
	if err := writeSnapshot(txn, &snap); err != nil { // as snapshotStore.Open streams it
		t.Fatal(err)
	}
	txn.Discard()
	db.Close()

	g, gdb := openFSM(t, t.TempDir())
	defer gdb.Close()
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap.Bytes()))); err != nil {
		t.Fatal(err)
	}
	g.ApplyBatch(logs)
	checkCountedOnce(t, gdb, uid, bigSends)

	restored := t.TempDir()
	if _, err := Restore(restored, bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	h, hdb := openFSM(t, restored)
	defer hdb.Close()
	if h.resume.Entry != 0 || len(keysUnder(t, hdb, keyResume)) != 0 {
		t.Errorf("a restored backup keeps the mark of entry %d of the old log", h.resume.Entry)
	}
}

// A backup taken while an entry is between parts waits for its end: a
// restore starts a new log, so half an entry in a backup would stay half
// applied for good.
func TestABackupHoldsNoEntryHalfApplied(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("ida")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})})
	var cmds []*Command
	for i := range bigSends {
		cmds = append(cmds, bigSendCmd(u.ID, fmt.Sprintf("n%d", i), now, 48<<10))
	}

	waiting := make(chan struct{})
	var once sync.Once
	testBackupWaits = func() { once.Do(func() { close(waiting) }) }
	var backup bytes.Buffer
	done := make(chan error, 1)
	started := false
	testAfterPart = func() {
		if started {
			return
		}
		started = true
		go func() { done <- WriteBackup(context.Background(), db, &backup) }()
		// The FSM goes on once the backup has seen the entry under way,
		// or has ended without seeing it (and holds half of it).
		select {
		case <-waiting:
		case err := <-done:
			done <- err
		case <-time.After(time.Minute):
			t.Error("the backup neither waited nor ended")
		}
	}
	defer func() { testAfterPart, testBackupWaits = nil, nil }()
	f.ApplyBatch([]*hraft.Log{entry(t, 2, cmds...)})
	if !started {
		t.Fatal("the entry was committed whole: no part to take a backup between")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if applied, err := snapshotApplied(bytes.NewReader(backup.Bytes())); err != nil || applied != 2 {
		t.Errorf("the backup holds the state after entry %d (%v), want 2", applied, err)
	}
	dir := t.TempDir()
	if _, err := Restore(dir, bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	_, rdb := openFSM(t, dir)
	defer rdb.Close()
	checkCountedOnce(t, rdb, u.ID, bigSends)
}

// A backup does not wait without end for an entry that stays between
// parts (a node that stopped mid-entry, read before its replay).
func TestABackupGivesUpOnAnEntryThatDoesNotEnd(t *testing.T) {
	db, _, _ := crashInParts(t, t.TempDir())
	defer db.Close()
	if _, err := wholeEntries(context.Background(), db, 20*time.Millisecond); !errors.Is(err, ErrEntryUnderWay) {
		t.Fatalf("err = %v, want ErrEntryUnderWay", err)
	}
}

// Deleting a group of notifications is cut between notifications; the
// replay deletes the rest, passing over those deleted already, so each
// notification has one deleted change and none is counted twice.
func TestAGroupDeletionCutInPartsIsAppliedAgainToTheEnd(t *testing.T) {
	dir := t.TempDir()
	f, db := openFSM(t, dir)
	now := time.Now()
	u := newUser("max")
	const many = 2400
	index := usersWithSends(t, f, now, many, u)
	logs := []*hraft.Log{entry(t, index, &Command{Op: OpDeleteNotifsBy, Now: now.UnixNano(), UserID: u.ID, AppID: "app"})}
	f, db = crashAndReplay(t, f, db, dir, logs, 2) // of three
	defer db.Close()
	s := &Store{db: db}
	ch, err := s.Changes(u.ID, 0, 4*many)
	if err != nil {
		t.Fatal(err)
	}
	deleted := map[string]int{}
	for _, c := range ch {
		if c.Type == resource.ChangeDeleted {
			deleted[c.NotificationID]++
		}
	}
	if len(deleted) != many {
		t.Errorf("%d notifications have a deleted change, want %d", len(deleted), many)
	}
	for id, n := range deleted {
		if n != 1 {
			t.Errorf("notification %s has %d deleted changes", id, n)
			break
		}
	}
	v, ok, err := getValue(db.NewTransaction(false), countersKey(u.ID))
	if err != nil || !ok || !strings.Contains(string(v), `"n":0`) {
		t.Errorf("counters %s (%v %v), want no active notification", v, ok, err)
	}
}

// A purge of a large backlog is cut between its index keys; the replay
// resumes it at the phase and counts of the cut, so the node that crashed
// holds exactly what a node that did not holds: begun again, the purge
// would have taken another full run.
func TestAPurgeCutInPartsEndsWhereItWouldHave(t *testing.T) {
	const many, maxItems = 2200, 1900 // the last group taken crosses maxItems
	now := time.Now()
	u := newUser("ned")
	var logs []*hraft.Log
	logs = append(logs, entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u}))
	for i := 0; i < many; i += 250 {
		var cmds []*Command
		for j := i; j < i+250; j++ {
			cmds = append(cmds, sendCmd(u.ID, "app", fmt.Sprintf("n%d", j), now, now.Add(time.Duration(j)*time.Millisecond+time.Second)))
		}
		logs = append(logs, entry(t, uint64(len(logs)+1), cmds...))
	}
	purge := entry(t, uint64(len(logs)+1), &Command{Op: OpPurge, Now: now.Add(time.Hour).UnixNano(),
		MaxItems: maxItems, Retention: int64(time.Minute)})
	state := func(db *badger.DB) map[string]string {
		all := keysUnder(t, db, "")
		delete(all, keyApplied)
		return all
	}
	f, db := openFSM(t, t.TempDir())
	f.ApplyBatch(logs)
	parts := 0
	testAfterPart = func() { parts++ }
	f.ApplyBatch([]*hraft.Log{purge})
	testAfterPart = nil
	want := state(db)
	db.Close()
	t.Logf("the purge was committed in %d parts and a last commit", parts)

	for _, crashAt := range []int{1, 2, 3} {
		dir := t.TempDir()
		f, db := openFSM(t, dir)
		f.ApplyBatch(logs)
		crashAfterFlushes(t, crashAt)
		applyUntilCrash(t, f, []*hraft.Log{purge})
		testAfterPart = nil
		db.Close()
		f, db = openFSM(t, dir)
		if f.resume.Purge.Phase == 0 {
			t.Errorf("crash after part %d: the mark holds no purge progress", crashAt)
		}
		f.ApplyBatch([]*hraft.Log{purge})
		got := state(db)
		db.Close()
		if len(got) != len(want) {
			t.Errorf("crash after part %d: %d keys after the replay, %d without the crash", crashAt, len(got), len(want))
		}
		diff := 0
		for k, v := range want {
			if w, ok := got[k]; !ok || w != v {
				if diff++; diff <= 3 {
					t.Errorf("crash after part %d: key %q differs from the node that did not crash", crashAt, k)
				}
			}
		}
	}
}

// A batch of delivery outcomes cannot be cut within (an outcome applied
// twice would add its attempt twice), so it starts a transaction of its own
// when it follows other commands in an entry.
func TestABatchOfOutcomesStartsAPartOfItsOwn(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("ola")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})})
	outcomes := make([]DeliveryOutcome, 65)
	for i := range outcomes {
		outcomes[i] = DeliveryOutcome{UserID: u.ID, NotificationID: fmt.Sprint("gone", i), SubscriptionID: "s",
			Seq: 1, Outcome: OutcomeDelivered, At: now.UnixNano()}
	}
	parts := 0
	testAfterPart = func() { parts++ }
	t.Cleanup(func() { testAfterPart = nil })
	f.ApplyBatch([]*hraft.Log{entry(t, 2, sendCmd(u.ID, "app", "a", now, now.Add(time.Hour)),
		&Command{Op: OpDeliveryOutcomes, Now: now.UnixNano(), Outcomes: outcomes})})
	if parts != 1 {
		t.Errorf("%d parts before the batch of outcomes, want 1", parts)
	}
	parts = 0
	f.ApplyBatch([]*hraft.Log{entry(t, 3, sendCmd(u.ID, "app", "b", now, now.Add(time.Hour)),
		&Command{Op: OpDeliveryOutcomes, Now: now.UnixNano(), Outcomes: outcomes[:64]})})
	if parts != 0 {
		t.Errorf("%d parts before a batch of 64 outcomes, want none", parts)
	}
	if f.Applied() != 3 {
		t.Fatalf("applied = %d, want 3", f.Applied())
	}
}

// usersWithSends creates users in entry 1 and gives the first of them many
// notifications, 200 an entry; it returns the next entry's index.
func usersWithSends(t *testing.T, f *FSM, now time.Time, many int, users ...*resource.UserRecord) uint64 {
	t.Helper()
	var create []*Command
	for _, u := range users {
		create = append(create, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})
	}
	f.ApplyBatch([]*hraft.Log{entry(t, 1, create...)})
	index := uint64(2)
	for i := 0; i < many; i += 200 {
		var cmds []*Command
		for j := i; j < min(i+200, many); j++ {
			cmds = append(cmds, sendCmd(users[0].ID, "app", fmt.Sprintf("n%d", j), now, now.Add(time.Hour)))
		}
		f.ApplyBatch([]*hraft.Log{entry(t, index, cmds...)})
		index++
	}
	return index
}
