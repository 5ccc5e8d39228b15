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
	hraft "github.com/hashicorp/raft"
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

// A follower whose leader changed drops the tail of its log that the new
// leader never had (Raft's DeleteRange of the last entries). raft-wal up to
// v0.4.0 then recorded the tail segment as sealed without writing its index,
// and the next start panicked on "sealed segment has no index block" (a
// chaos run hit it: kill -9 of a node that had done so). The log must read
// whole after such a truncation and a restart.
func TestLogReadsAfterATailTruncationAndARestart(t *testing.T) {
	dir := t.TempDir()
	log := hclog.NewNullLogger()
	w, err := openWAL(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*hraft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &hraft.Log{Index: i, Term: 1, Data: []byte(fmt.Sprint(i))})
	}
	if err := w.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := w.DeleteRange(8, 10); err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs([]*hraft.Log{{Index: 8, Term: 2, Data: []byte("8'")}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w, err = openWAL(dir, log); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := uint64(1); i <= 8; i++ {
		var l hraft.Log
		if err := w.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d after the restart: %v", i, err)
		}
	}
	if last, err := w.LastIndex(); err != nil || last != 8 {
		t.Fatalf("last index %d, %v; want 8", last, err)
	}
}
