package raft

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"
)

// A snapshot this node takes is a reference to Badger, not a copy of it.
// Badger is already the applied state on disk, and Raft needs a snapshot
// for two things only: to know up to where it may drop the log, and to
// send a follower the entries it can no longer send one by one. The
// first needs Badger to be on disk up to the snapshot (Persist syncs it);
// the second needs a stream of the state, which Open makes from Badger
// when a follower asks for one, a rare event. A copy of the whole state
// at every snapshot cost writes in proportion to the data every few
// thousand entries, and the two copies kept were four times the size of
// Badger's own (compressed) tables.
//
// The stream a follower gets holds the state as it is when it is sent,
// which may be past the snapshot's index; the follower's FSM then skips
// the entries at or below the applied index the stream carries, as it
// skips any replay (fsm.go). Snapshots received from a leader, and those
// written by earlier versions, are whole and stay as they were.
const refHeader = "HERALD-SNAPSHOT-REF 1\n"

// snapshotStore is Raft's FileSnapshotStore whose Open turns a reference
// into a stream of Badger's state.
type snapshotStore struct {
	*hraft.FileSnapshotStore
	db *badger.DB
}

// Open returns a whole snapshot as stored, and a reference as a stream of
// what Badger holds now, with its exact size (a follower counts the bytes
// it receives against it).
func (s *snapshotStore) Open(id string) (*hraft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.FileSnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(rc)
	if head, _ := br.Peek(len(refHeader)); string(head) != refHeader {
		return meta, readCloser{br, rc}, nil
	}
	rc.Close()
	txn := s.db.NewTransaction(false)
	size := countingWriter{w: io.Discard}
	if err := writeSnapshot(txn, &size); err != nil {
		txn.Discard()
		return nil, nil, fmt.Errorf("snapshot %s: read the state: %w", id, err)
	}
	// The same read transaction, read again, gives the same bytes: no
	// key has a Badger TTL (expiry is the FSM's), so none can lapse
	// between the two passes. The count is checked all the same.
	pr, pw := io.Pipe()
	go func() {
		defer txn.Discard()
		out := countingWriter{w: pw}
		err := writeSnapshot(txn, &out)
		if err == nil && out.n != size.n {
			err = fmt.Errorf("snapshot %s: the state streamed %d bytes, counted %d", id, out.n, size.n)
		}
		pw.CloseWithError(err)
	}()
	m := *meta
	m.Size = size.n
	return &m, pr, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeRef writes a reference to Badger's state through applied.
func writeRef(w io.Writer, applied uint64) error {
	_, err := w.Write(append([]byte(refHeader), putUint64(applied)...))
	return err
}

// readSnapshotHead reads the applied index at the head of a snapshot and
// whether the snapshot is a reference.
func readSnapshotHead(r io.Reader) (applied uint64, ref bool, err error) {
	head := make([]byte, len(snapshotHeader)+8)
	if _, err := io.ReadFull(r, head); err != nil {
		return 0, false, ErrBadSnapshot
	}
	if string(head[:len(snapshotHeader)]) == snapshotHeader {
		return getUint64(head[len(snapshotHeader):]), false, nil
	}
	// The reference header is longer than the whole one.
	rest := make([]byte, len(refHeader)+8-len(head))
	if _, err := io.ReadFull(r, rest); err != nil {
		return 0, false, ErrBadSnapshot
	}
	head = append(head, rest...)
	if string(head[:len(refHeader)]) != refHeader {
		return 0, false, ErrBadSnapshot
	}
	return getUint64(head[len(refHeader):]), true, nil
}

// ErrStorageBehind means Badger lost writes that the newest snapshot, a
// reference to Badger, counts as kept, and the log no longer holds them.
var ErrStorageBehind = errors.New("storage is behind its newest snapshot and the log no longer holds what it lacks")

// replayLog applies the log's entries after Badger's applied index up to
// through, before Raft starts: Raft starts applying after its newest
// snapshot, and a reference snapshot cannot give back what Badger lost
// (an unsynced memtable after a power loss). The log Raft keeps behind a
// snapshot (TrailingLogs) usually still holds it.
func (s *Store) replayLog(through uint64) error {
	from := s.fsm.Applied() + 1
	first, err := s.logStore.FirstIndex()
	if err != nil {
		return err
	}
	if first == 0 || first > from {
		return fmt.Errorf("%w: applied through %d, snapshot through %d, log from %d; restore a backup (herald restore), or empty this node's data directory and join it to the cluster again",
			ErrStorageBehind, from-1, through, first)
	}
	const batch = 256
	logs := make([]*hraft.Log, 0, batch)
	for i := from; i <= through; i++ {
		l := new(hraft.Log)
		if err := s.logStore.GetLog(i, l); err != nil {
			return fmt.Errorf("replay entry %d: %w", i, err)
		}
		logs = append(logs, l)
		if len(logs) == batch || i == through {
			s.fsm.ApplyBatch(logs)
			logs = logs[:0]
		}
	}
	return nil
}
