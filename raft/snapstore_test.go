package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/internal/syncbuf"
)

// sends proposes n notifications to the user, one command each.
func sends(t *testing.T, s *Store, uid string, n int) {
	t.Helper()
	ctx := context.Background()
	for range n {
		now := time.Now()
		if _, err := s.Propose(ctx, sendCmd(uid, "app", "", now, now.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
}

// snapshotFile is the stored body of the store's newest snapshot.
func snapshotFile(t *testing.T, s *Store) []byte {
	t.Helper()
	list, err := s.snaps.List()
	if err != nil || len(list) == 0 {
		t.Fatalf("no snapshot: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(s.opts.Dir, "snapshots", "snapshots", list[0].ID, "state.bin"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keepNoLog makes the next snapshot drop the whole log behind it.
func keepNoLog(t *testing.T, s *Store) {
	t.Helper()
	rc := s.raft.ReloadableConfig()
	rc.TrailingLogs = 0
	if err := s.raft.ReloadConfig(rc); err != nil {
		t.Fatal(err)
	}
}

// A snapshot costs the same whatever the state holds: it refers to Badger
// instead of copying it. Whole copies were written every few thousand
// entries and the two kept came to 1,650 bytes per notification, four
// times Badger's own tables (BENCHMARKS.md).
func TestASnapshotDoesNotCopyTheState(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	u := newUser("olga")
	if _, err := s.Propose(context.Background(), &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: u}); err != nil {
		t.Fatal(err)
	}
	sends(t, s, u.ID, 200)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	b := snapshotFile(t, s)
	if len(b) > 64 {
		t.Fatalf("a snapshot of 200 notifications stored %d bytes; want a reference of a few dozen", len(b))
	}
	applied, ref, err := readSnapshotHead(bytes.NewReader(b))
	if err != nil || !ref || applied != s.Applied() {
		t.Fatalf("snapshot head: applied %d ref %v err %v; want a reference through %d", applied, ref, err, s.Applied())
	}
}

// A node that joins once the leader has dropped its log gets the state
// from a stream of the leader's Badger, taken when it is sent and so past
// the snapshot's index; the entries after that index then reach it too,
// and it must skip those the stream already holds. Applying them again
// would count notifications twice and give changes new seqs, which the
// byte-for-byte comparison of the two states shows.
func TestAJoinerGetsTheStateFromAReferenceSnapshot(t *testing.T) {
	ctx := context.Background()
	// Two voters: the leader keeps its lease only while the joiner answers,
	// and the joiner is busy taking the snapshot. With the 100 ms timers of
	// the one-node tests a loaded machine under -race lost the leadership
	// in the middle of the sends.
	const beat = time.Second
	s1, err := Open(Options{Dir: t.TempDir(), NodeID: "n1", RaftAddr: freeAddr(t), Bootstrap: true,
		HeartbeatTimeout: beat, ElectionTimeout: beat, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s1.WaitLeader(wctx); err != nil {
		t.Fatal(err)
	}
	u := newUser("petra")
	if _, err := s1.Propose(ctx, &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: u}); err != nil {
		t.Fatal(err)
	}
	sends(t, s1, u.ID, 150)
	keepNoLog(t, s1)
	if err := s1.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	snapIndex := s1.LogStats().SnapshotIndex
	sends(t, s1, u.ID, 50) // after the snapshot: in the log and in the stream

	addr2 := freeAddr(t)
	s2, err := Open(Options{Dir: t.TempDir(), NodeID: "n2", RaftAddr: addr2,
		HeartbeatTimeout: beat, ElectionTimeout: beat, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s1.raft.AddVoter("n2", hraft.ServerAddress(addr2), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	sends(t, s1, u.ID, 10) // after the join: through the log alone
	want := s1.Applied()
	pollUntil(t, "the joiner catches up", func() error {
		if have := s2.Applied(); have < want {
			return fmt.Errorf("applied %d of %d", have, want)
		}
		return nil
	})
	if st := s2.LogStats(); st.SnapshotIndex != snapIndex {
		t.Fatalf("the joiner's snapshot index is %d; want the leader's %d (it got the state without a snapshot, and the test proves nothing)",
			st.SnapshotIndex, snapIndex)
	}
	// What the joiner stored is the stream, whole: it can repair itself
	// from it, and send it on.
	if _, ref, err := readSnapshotHead(bytes.NewReader(snapshotFile(t, s2))); err != nil || ref {
		t.Fatalf("the joiner stored a reference (%v, %v); want the stream it received", ref, err)
	}
	var b1, b2 bytes.Buffer
	if err := s1.Backup(context.Background(), &b1); err != nil {
		t.Fatal(err)
	}
	if err := s2.Backup(context.Background(), &b2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
		t.Fatalf("the joiner's state (%d bytes) differs from the leader's (%d bytes)", b2.Len(), b1.Len())
	}
	page, err := s2.ListNotifications(u.ID, "", 500, nil)
	if err != nil || len(page.Items) != 210 {
		t.Fatalf("the joiner lists %d notifications (%v); want 210", len(page.Items), err)
	}
}

// Badger behind its newest snapshot (a memtable it never synced, lost
// with the power) gets what it lacks from the log Raft keeps behind the
// snapshot; when that log is gone too, the node refuses to start rather
// than run with a hole in its state.
func TestStorageBehindAReferenceSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		noLog bool
	}{{"catches up from the log", false}, {"refuses to start without the log", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir, addr := t.TempDir(), freeAddr(t)
			s := openTestStoreAt(t, dir, addr, nil)
			u := newUser("quinn")
			if _, err := s.Propose(context.Background(), &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: u}); err != nil {
				t.Fatal(err)
			}
			sends(t, s, u.ID, 40)
			s.Close()
			old := filepath.Join(t.TempDir(), "badger")
			if err := os.CopyFS(old, os.DirFS(filepath.Join(dir, "badger"))); err != nil {
				t.Fatal(err)
			}

			s = openTestStoreAt(t, dir, addr, nil)
			sends(t, s, u.ID, 60)
			if tc.noLog {
				keepNoLog(t, s)
			}
			if err := s.raft.Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if err := os.RemoveAll(filepath.Join(dir, "badger")); err != nil {
				t.Fatal(err)
			}
			if err := os.CopyFS(filepath.Join(dir, "badger"), os.DirFS(old)); err != nil {
				t.Fatal(err)
			}

			logs := &syncbuf.Buffer{}
			s, err := Open(Options{Dir: dir, NodeID: "n1", RaftAddr: addr, Bootstrap: true,
				HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if tc.noLog {
				if !errors.Is(err, ErrStorageBehind) {
					if err == nil {
						s.Close()
					}
					t.Fatalf("open with storage behind a snapshot and no log: %v; want ErrStorageBehind", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !strings.Contains(logs.String(), "catching up") {
				t.Fatalf("no catch-up logged; the storage was not behind, and the test proves nothing:\n%s", logs.String())
			}
			page, err := s.ListNotifications(u.ID, "", 500, nil)
			if err != nil || len(page.Items) != 100 {
				t.Fatalf("after the catch-up the user has %d notifications (%v); want 100", len(page.Items), err)
			}
		})
	}
}

// A snapshot's load cut short (a node killed while it caught up from the
// leader's stream) must not leave the snapshot's applied index over part of
// its state: the next start compares that index with the snapshot's
// (catchUpFromSnapshot), and would run with the rest missing for good. The
// applied index is written after everything else, so a cut load reads as
// applied through 0, and the next start loads the snapshot again; until
// then no entry is applied on what is left.
func TestASnapshotLoadCutShortDoesNotClaimItsAppliedIndex(t *testing.T) {
	src := openTestStore(t, t.TempDir(), nil)
	u := newUser("rowan")
	if _, err := src.Propose(context.Background(), &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: u}); err != nil {
		t.Fatal(err)
	}
	sends(t, src, u.ID, 40)
	var snap bytes.Buffer
	if err := src.Backup(context.Background(), &snap); err != nil {
		t.Fatal(err)
	}
	want := src.Applied()
	src.Close()

	dir, addr := t.TempDir(), freeAddr(t)
	s := openTestStoreAt(t, dir, addr, nil)
	// A member of a cluster that began with a restore: read from what a
	// failed load left, its identity would refuse the leader's next send
	// of the snapshot (cluster/identity.go).
	if err := s.db.Update(func(txn *badger.Txn) error {
		return errors.Join(txn.Set([]byte(keyCluster), []byte("c1")), txn.Set([]byte(keyRestored), []byte("c1")))
	}); err != nil {
		t.Fatal(err)
	}
	before, err := s.Identity()
	if err != nil || before.ID != "c1" || !before.Restored {
		t.Fatalf("identity before the load: %+v, %v", before, err)
	}
	var cut []byte
	restoreCut = func(k []byte) bool {
		if cut == nil && bytes.HasPrefix(k, []byte("n/")) {
			cut = k
		}
		return cut != nil
	}
	err = s.fsm.Restore(io.NopCloser(bytes.NewReader(snap.Bytes())))
	restoreCut = nil
	if !errors.Is(err, errRestoreCut) {
		t.Fatalf("the load was not cut (%v): the snapshot holds no notification after the applied index, and the test proves nothing", err)
	}
	if after, err := s.Identity(); err != nil || after != before {
		t.Errorf("identity after the failed load: %+v, %v; want %+v as before it", after, err, before)
	}
	// A load that fails in the process, not by a kill, must not have
	// entries applied on what is left either: each would write the
	// applied index.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("an entry was applied on a state dropped for a snapshot that did not load")
			}
		}()
		s.fsm.ApplyBatch([]*hraft.Log{entry(t, s.fsm.Applied()+1, &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: newUser("late")})})
	}()
	s.Close()

	s = openTestStoreAt(t, dir, addr, nil)
	defer s.Close()
	if got := s.fsm.Applied(); got >= want {
		t.Fatalf("after a load cut at %q the state reads as applied through %d, the snapshot's %d: the next start would keep it as it is", cut, got, want)
	}
}
