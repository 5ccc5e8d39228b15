package raft

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/hashicorp/raft-wal/migrate"
)

// oldDataDir makes dir what an earlier version left: the Raft log in
// BoltDB (raft.db) and no state but that log, so that a node opened on it
// holds only what the log it moved carried.
func oldDataDir(t *testing.T, users int) (dir, addr string) {
	t.Helper()
	dir, addr = t.TempDir(), freeAddr(t)
	s, err := Open(Options{Dir: dir, NodeID: "n1", RaftAddr: addr, Bootstrap: true, Logger: quiet,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		SnapshotInterval: time.Hour, SnapshotThreshold: 1 << 20, noShutdownSnapshot: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range users {
		if _, err := s.Propose(ctx, &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: newUser(fmt.Sprintf("old%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wal, err := openWAL(filepath.Join(dir, walDirName), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, boltLogName)})
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate.CopyLogs(ctx, bolt, wal, 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	if err := migrate.CopyStable(ctx, bolt, wal, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(wal.Close(), bolt.Close()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{walDirName, "badger", "snapshots"} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, addr
}

// A node of an earlier version keeps everything its BoltDB log held when
// it starts on the write-ahead log, including when the first move was cut
// short: a half-built copy is started over, and a copy already in place
// is kept and the old log removed.
func TestBoltLogMovesToTheWriteAheadLog(t *testing.T) {
	const users = 25
	for _, tc := range []struct {
		name  string
		crash func(t *testing.T, dir string)
	}{
		{"first start", func(*testing.T, string) {}},
		{"crash while copying", func(t *testing.T, dir string) {
			// A copy that stopped part way: a WAL holding none of it.
			tmp := filepath.Join(dir, walDirName+".new")
			if err := os.Mkdir(tmp, 0o700); err != nil {
				t.Fatal(err)
			}
			w, err := openWAL(tmp, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tmp, "junk"), []byte("half a segment"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"crash after the rename", func(t *testing.T, dir string) {
			if err := migrateBoltLog(dir, hclog.NewNullLogger()); err != nil {
				t.Fatal(err)
			}
			// Put back what the move removes last.
			if err := os.WriteFile(filepath.Join(dir, boltLogName), []byte("not a bolt file"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, addr := oldDataDir(t, users)
			tc.crash(t, dir)
			s := openTestStoreAt(t, dir, addr, nil)
			page, err := s.ListUsers("", 100)
			if err != nil || len(page.Items) != users {
				t.Fatalf("users after the move = %d, %v; want %d", len(page.Items), err, users)
			}
			// The log goes on where the old one stopped, and a restart
			// finds the new one alone.
			if _, err := s.Propose(context.Background(), &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: newUser("new")}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{boltLogName, walDirName + ".new"} {
				if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("%s after the move: %v; want it gone", name, err)
				}
			}
			s = openTestStoreAt(t, dir, addr, nil)
			defer s.Close()
			page, err = s.ListUsers("", 100)
			if err != nil || len(page.Items) != users+1 {
				t.Fatalf("users after a restart = %d, %v; want %d", len(page.Items), err, users+1)
			}
		})
	}
}
