package raft

import (
	"context"
	"testing"
	"time"
)

// A commit index that ends in entries the FSM never sees (Raft barriers,
// like a new leader's no-op) is reached once the FSM has applied the last
// entry before them: WaitThrough returns rather than waiting for an applied
// index the FSM will never report. Beyond the log it waits until ctx ends.
func TestWaitThroughSkipsEntriesTheFSMNeverSees(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Propose(ctx, &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: newUser("alice")}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.Raft().Barrier(time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	commit := s.CommitIndex()
	if s.Applied() >= commit {
		t.Fatalf("applied %d, commit %d: the barriers should be past what the FSM applied", s.Applied(), commit)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.WaitThrough(wctx, commit); err != nil {
		t.Fatalf("WaitThrough(%d) with the FSM at %d: %v", commit, s.Applied(), err)
	}

	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if err := s.WaitThrough(short, commit+1); err == nil {
		t.Fatal("WaitThrough returned for an index not yet in the log")
	}
}
