package raft

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// A node restarted more often than its snapshot interval (here an hour)
// still snapshots, at shutdown or else once start-up has replayed the log,
// so the log a restart replays stays short however many restarts there
// were, instead of growing by every write in between.
func TestRestartsKeepTheLogShort(t *testing.T) {
	for _, tc := range []struct {
		name         string
		noAtShutdown bool
	}{{"snapshot at shutdown", false}, {"snapshot after the start-up replay", true}} {
		t.Run(tc.name, func(t *testing.T) {
			const (
				threshold = 40
				writes    = 60 // each its own entry, more than a quarter of the threshold
				restarts  = 4
			)
			dir, addr := t.TempDir(), freeAddr(t)
			open := func() *Store {
				s, err := Open(Options{Dir: dir, NodeID: "n1", RaftAddr: addr, Bootstrap: true, Logger: quiet,
					HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
					SnapshotInterval: time.Hour, SnapshotThreshold: threshold, noShutdownSnapshot: tc.noAtShutdown})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := s.WaitLeader(ctx); err != nil {
					t.Fatal(err)
				}
				return s
			}
			u := newUser("restarts")
			ctx := context.Background()
			for i := range restarts + 1 {
				s := open()
				if i > 0 {
					// A few entries (the new term's no-op) may follow the
					// snapshot; never the writes of the run before.
					pollUntil(t, fmt.Sprintf("restart %d: a short log", i), func() error {
						if st := s.LogStats(); st.SinceSnapshot > threshold/4 {
							return fmt.Errorf("%+v", st)
						}
						return nil
					})
				}
				if i == 0 {
					if _, err := s.Propose(ctx, &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: u}); err != nil {
						t.Fatal(err)
					}
				}
				before := s.LogStats().LastIndex
				for range writes {
					now := time.Now()
					if _, err := s.Propose(ctx, sendCmd(u.ID, "app", "", now, now.Add(time.Hour))); err != nil {
						t.Fatal(err)
					}
				}
				if st := s.LogStats(); st.LastIndex < before+writes {
					t.Fatalf("run %d: %+v after %d writes from index %d; the test expects an entry each", i, st, writes, before)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			// Nothing written was lost on the way.
			s := open()
			defer s.Close()
			page, err := s.ListUsers("", 10)
			if err != nil || len(page.Items) != 1 {
				t.Fatalf("users after restarts: %v, %v", page, err)
			}
		})
	}
}

func pollUntil(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storeWithAUser opens a store on a new directory and commits one user.
func storeWithAUser(t *testing.T) (dir, addr string, s *Store, u *resource.UserRecord) {
	t.Helper()
	dir, addr = t.TempDir(), freeAddr(t)
	s = openTestStoreAt(t, dir, addr, nil)
	u = newUser("kept")
	if _, err := s.Propose(context.Background(), &Command{Op: OpCreateUser, User: u}); err != nil {
		t.Fatal(err)
	}
	return dir, addr, s, u
}

// A kill between Badger's creating a memtable or value log and sizing it
// leaves an empty *.mem or *.vlog file, which Badger refuses to open
// ("Create a new file"): the store removes it and opens, with everything
// committed before.
func TestEmptyLogsLeftByACrashAreDropped(t *testing.T) {
	for _, name := range []string{"99999.mem", "000099.vlog"} {
		t.Run(name, func(t *testing.T) {
			dir, addr, s, u := storeWithAUser(t)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			empty := filepath.Join(dir, "badger", name)
			if err := os.WriteFile(empty, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			s = openTestStoreAt(t, dir, addr, nil)
			defer s.Close()
			if _, found, err := s.User(u.ID); err != nil || !found {
				t.Fatalf("the user committed before: %v, %v", found, err)
			}
			if fi, err := os.Stat(empty); err == nil && fi.Size() == 0 {
				t.Errorf("the empty log %s is still there", name)
			}
		})
	}
}

// A kill while a snapshot was loaded or received leaves a temporary copy as
// large as the state, which no start read or removed (hashicorp/raft warns
// of its own at every start and keeps it): the next start removes both
// kinds, and keeps the snapshots that count.
func TestWhatAnInterruptedSnapshotLeftIsRemoved(t *testing.T) {
	dir, addr, s, u := storeWithAUser(t)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	snaps := filepath.Join(dir, "snapshots", "snapshots")
	kept, err := filepath.Glob(filepath.Join(snaps, "*"))
	if err != nil || len(kept) == 0 {
		t.Fatalf("no snapshot to keep (%v): the test proves nothing", err)
	}
	load := filepath.Join(dir, "restore-123.tmp")
	received := filepath.Join(snaps, "2-40-1765000000000.tmp")
	if err := os.WriteFile(load, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(received, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(received, "state.bin"), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}

	s = openTestStoreAt(t, dir, addr, nil)
	defer s.Close()
	for _, p := range []string{load, received} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the snapshot %s went: %v", p, err)
		}
	}
	if _, found, err := s.User(u.ID); err != nil || !found {
		t.Fatalf("the user committed before: %v, %v", found, err)
	}
}
