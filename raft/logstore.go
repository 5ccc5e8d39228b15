package raft

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/migrate"
)

// The Raft log (and Raft's term and vote) live in a segmented write-ahead
// log: an append is one write and one fsync of a preallocated file.
// BoltDB, the log of earlier versions, commits with two fsyncs and writes
// its B+tree pages all over a growing file; its commit was most of the
// leader loop's time under load (2.9 ms an entry against 0.35 ms for an
// append and fsync on the same disk), and the leader loop writes the log
// one entry at a time, so it set both the rate and the acknowledgement
// latency of every write.
const (
	walDirName  = "raft-wal"
	boltLogName = "raft.db" // the log before raft-wal; moved on the first start
	// walSegmentSize is how much each log segment preallocates. Smaller
	// than raft-wal's 64 MiB so that a small node's disk holds less log
	// beyond what compaction keeps, and a new segment's preallocation
	// asks less of a nearly full disk.
	walSegmentSize = 16 << 20
)

// openWAL opens the write-ahead log in dir. Its Close also closes the
// BoltDB file beside the segments (wal-meta.db) that holds the segment list
// and Raft's term and vote; raft-wal before v0.4.2 left that file locked.
func openWAL(dir string, log hclog.Logger) (*raftwal.WAL, error) {
	return raftwal.Open(dir, raftwal.WithLogger(log.Named("wal")), raftwal.WithSegmentSize(walSegmentSize))
}

// hasLog reports whether dir holds a node's Raft log, in either form.
func hasLog(dir string) bool {
	for _, name := range []string{walDirName, boltLogName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// openLogStore opens the node's Raft log in dir, moving a BoltDB log of an
// earlier version into a new write-ahead log first.
func openLogStore(dir string, log hclog.Logger) (*raftwal.WAL, error) {
	wal := filepath.Join(dir, walDirName)
	bolt := filepath.Join(dir, boltLogName)
	_, err := os.Stat(wal)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, err := os.Stat(bolt); err == nil {
			if err := migrateBoltLog(dir, log); err != nil {
				return nil, fmt.Errorf("move the raft log from %s to %s/: %w", boltLogName, walDirName, err)
			}
		} else if err := os.Mkdir(wal, 0o700); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	}
	w, err := openWAL(wal, log)
	if err != nil {
		return nil, err
	}
	// A move that stopped after the new log was in place but before the
	// old one was removed: the new one is complete, so finish the move.
	if err := os.Remove(bolt); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.Close()
		return nil, err
	}
	return w, nil
}

// migrateBoltLog copies raft.db into a write-ahead log built beside it and
// renames that into place, so that a crash at any point leaves either the
// old log alone (a half-built copy is started over) or the new one whole.
func migrateBoltLog(dir string, log hclog.Logger) error {
	tmp := filepath.Join(dir, walDirName+".new")
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	src, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, boltLogName)})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openWAL(tmp, log)
	if err != nil {
		return err
	}
	first, _ := src.FirstIndex()
	last, _ := src.LastIndex()
	log.Info("moving the raft log to a write-ahead log", "first_index", first, "last_index", last)
	ctx := context.Background()
	err = migrate.CopyLogs(ctx, dst, src, 1<<20, nil)
	if err == nil {
		err = migrate.CopyStable(ctx, dst, src, nil, nil, nil)
	}
	if err = errors.Join(err, dst.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, walDirName)); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// GetLog answers "not found" below the log's first index. raft-wal drops
// entries from the head lazily: after DeleteRange(1, k) it still returns the
// entries up to k from a segment that also holds later ones. Raft asks for
// the entries a lagging follower lacks and sends a snapshot only when they
// are gone, so a node that joined a restored node was sent the entries from
// before the restored node's snapshot instead of the snapshot, and never got
// the restored state (TestNodesJoiningARestoredNodeGetTheBackup failed about
// one run in three with -count).
func (g *writeGate) GetLog(index uint64, l *hraft.Log) error {
	g.recentMu.RLock()
	r := g.recent[index%recentLogs]
	g.recentMu.RUnlock()
	if r != nil && r.Index == index {
		*l = *r
		return nil
	}
	first, err := g.WAL.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return hraft.ErrLogNotFound
	}
	return g.WAL.GetLog(index, l)
}
