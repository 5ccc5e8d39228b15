package raft

import (
	"context"
	"errors"
	"time"

	hraft "github.com/hashicorp/raft"
)

// CommitIndex is the highest log index this node knows to be committed. On
// the leader, after it has committed an entry of its own term and confirmed
// it still leads, it bounds everything any client can have seen (a read
// index, Raft §6.4).
func (s *Store) CommitIndex() uint64 { return s.raft.CommitIndex() }

// WaitThrough blocks until this node's state holds every committed entry up
// to index. Raft's indexes count entries that never reach the FSM (a new
// leader's no-op, barriers), so FSM.Applied alone may never reach index;
// and Raft's own applied index moves when an entry is handed to the FSM,
// not when the FSM has applied it. So: wait until Raft has handed out
// everything up to index, then until the FSM has applied the last of those
// entries that it gets.
func (s *Store) WaitThrough(ctx context.Context, index uint64) error {
	if s.Applied() >= index {
		return nil
	}
	if s.raft.AppliedIndex() < index {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for s.raft.AppliedIndex() < index {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.closing:
				return ErrClosed
			case <-tick.C:
			}
		}
	}
	return s.WaitApplied(ctx, s.lastFSMEntry(index))
}

// maxSkippedEntries bounds the walk back over entries the FSM never sees;
// a run that long does not happen (one no-op per term, one barrier per term
// and start-up), and past it the wait is for index itself, which can only
// end with the caller's context.
const maxSkippedEntries = 1024

// lastFSMEntry is the index of the last entry at or below index that the
// FSM applies, or an index it has already applied when there is none.
func (s *Store) lastFSMEntry(index uint64) uint64 {
	applied := s.Applied()
	for i := index; i > applied; i-- {
		if index-i >= maxSkippedEntries {
			return index
		}
		var l hraft.Log
		if err := s.logStore.GetLog(i, &l); err != nil {
			if errors.Is(err, hraft.ErrLogNotFound) {
				// Compacted into a snapshot, which the FSM already holds:
				// compaction follows a snapshot of the applied state.
				return applied
			}
			return index
		}
		if l.Type == hraft.LogCommand || l.Type == hraft.LogConfiguration {
			return i
		}
	}
	return applied
}
