package raft

import (
	"bytes"
	"errors"
	"fmt"

	hraft "github.com/hashicorp/raft"
)

// voteGuard is the stable store as Raft's votes see it: a node that came up
// without Raft state votes only once it holds everything the cluster had
// committed when it came back.
//
// hashicorp/raft grants a vote from a node without a configuration to any
// candidate whose log is as long as its own, which an empty log always is
// (it takes such a node for one of a cluster being bootstrapped; Herald's
// nodes bootstrap their configuration before any election). But a member
// whose data directory was emptied (a disk lost, a machine rebuilt with the
// same --node-id, the "cluster remove" first skipped) is such a node too,
// and its vote can elect a member that missed entries the cluster had
// acknowledged, with its own former acknowledgement among those that
// committed them: found by review, where a follower stopped while three
// users were created was elected with the emptied node's vote once the two
// nodes that held them were down, and the writes were gone for good. The
// same holds for a node caught up only part way (a second review): its log
// is then a prefix of the leader's, shorter than what it acknowledged before.
//
// So a node that opens without Raft state, and does not bootstrap one, is
// marked as catching up, in the stable store (a restart keeps the mark). It
// learns the leader's commit index once (cluster/catchup.go asks the leader
// for a read index, which covers every entry committed before), and until
// its log reaches that index it refuses to record a vote, which makes Raft
// refuse the vote (persistVote fails before Granted is set). A new member
// waits for the leader that added it; an election that only its vote could
// decide waits for a node that holds the log.
type voteGuard struct {
	hraft.StableStore
	mayVote func() error
}

// keyLastVoteTerm is the first key hashicorp/raft (v1.7.3) writes for a
// vote, before keyLastVoteCand; refusing it records nothing.
var keyLastVoteTerm = []byte("LastVoteTerm")

// Herald's own keys in the stable store, beside Raft's.
var (
	keyCatchingUp = []byte("HeraldCatchingUp") // 1 while this node may not vote
	keyCatchUpTo  = []byte("HeraldCatchUpTo")  // the commit index it must hold first; 0 while unknown
)

// errNotCaughtUp is why a node refuses a vote while it catches up; Raft
// logs it with the vote it did not grant.
var errNotCaughtUp = errors.New("this node came up without Raft state (a new or emptied data directory) and votes once " +
	"it holds what the cluster had committed; an election that needs its vote waits for a node that holds the log")

func (g voteGuard) SetUint64(key []byte, val uint64) error {
	if bytes.Equal(key, keyLastVoteTerm) {
		if err := g.mayVote(); err != nil {
			return err
		}
	}
	return g.StableStore.SetUint64(key, val)
}

// markCatchingUp marks a node that opened without Raft state and will not
// bootstrap one: it may not vote yet.
func (s *Store) markCatchingUp() error {
	if err := s.logStore.SetUint64(keyCatchUpTo, 0); err != nil {
		return err
	}
	return s.logStore.SetUint64(keyCatchingUp, 1)
}

// clearCatchingUp lifts the mark: the node bootstrapped a cluster, or holds
// what it had to.
func (s *Store) clearCatchingUp() error { return s.logStore.SetUint64(keyCatchingUp, 0) }

// catchUp reads the mark: whether this node is catching up, and the index
// it must hold (0: not known yet).
func (s *Store) catchUp() (catching bool, target uint64, err error) {
	mark, err := s.logStore.GetUint64(keyCatchingUp)
	if err != nil || mark == 0 {
		return false, 0, err
	}
	target, err = s.logStore.GetUint64(keyCatchUpTo)
	return true, target, err
}

// NeedsCatchUpTarget reports whether this node catches up without yet
// knowing to what index: the cluster layer then asks the leader.
func (s *Store) NeedsCatchUpTarget() bool {
	catching, target, err := s.catchUp()
	return err == nil && catching && target == 0
}

// SetCatchUpTarget records the leader's commit index as the one a catching-up
// node must hold before it votes; the first one learned stands.
func (s *Store) SetCatchUpTarget(index uint64) error {
	if !s.NeedsCatchUpTarget() || index == 0 {
		return nil
	}
	return s.logStore.SetUint64(keyCatchUpTo, index)
}

// mayVote is nil when this node may vote. It runs on Raft's goroutine,
// inside a vote: it reads the stores, never Raft.
func (s *Store) mayVote() error {
	catching, target, err := s.catchUp()
	if err != nil {
		return err
	}
	if !catching {
		return nil
	}
	last, err := s.lastIndex()
	if err != nil {
		return err
	}
	if target == 0 || last < target {
		return fmt.Errorf("%w (holds through index %d; must hold %s)", errNotCaughtUp, last, targetText(target))
	}
	return s.clearCatchingUp()
}

func targetText(target uint64) string {
	if target == 0 {
		return "the leader's commit index, not learned yet"
	}
	return fmt.Sprintf("through %d", target)
}

// lastIndex is the last index this node holds, in its log or its latest
// snapshot.
func (s *Store) lastIndex() (uint64, error) {
	last, err := s.logStore.LastIndex()
	if err != nil {
		return 0, err
	}
	list, err := s.snaps.List()
	if err != nil {
		return 0, err
	}
	if len(list) > 0 && list[0].Index > last {
		last = list[0].Index
	}
	return last, nil
}
