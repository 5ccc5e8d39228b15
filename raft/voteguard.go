package raft

import (
	"bytes"
	"errors"

	hraft "github.com/hashicorp/raft"
)

// voteGuard is the stable store as Raft's votes see it: a node that holds
// no log and no snapshot does not vote.
//
// hashicorp/raft grants a vote from a node without a configuration to any
// candidate whose log is as long as its own, which an empty log always is
// (it takes such a node for one of a cluster being bootstrapped; Herald's
// nodes bootstrap their configuration before any election). But a member
// whose data directory was emptied (a disk lost, a machine rebuilt with the
// same --node-id, and the "cluster remove" first skipped) is such a node
// too, and its vote can elect a member that missed entries the cluster had
// acknowledged: found by review, where a follower that was stopped while
// three users were created was elected with the emptied node's vote once
// the two nodes that held them were down, and the writes were gone for
// good. So until a leader has sent it a log or a snapshot, a node refuses
// to record a vote, which makes Raft refuse it (persistVote fails before
// Granted is set). A genuinely new member waits for the leader that added
// it; an election that only its vote could decide waits for a node that
// holds the log.
type voteGuard struct {
	hraft.StableStore
	holdsNothing func() bool
}

// keyLastVoteTerm is the first key hashicorp/raft (v1.7.3) writes for a
// vote, before keyLastVoteCand; refusing it records nothing.
var keyLastVoteTerm = []byte("LastVoteTerm")

// errNothingToVoteWith is why a node without state refuses a vote; Raft
// logs it with the vote it did not grant.
var errNothingToVoteWith = errors.New("this node holds no Raft log or snapshot (a new or emptied data directory): " +
	"it votes once a leader has sent it the cluster's state; if its data was lost, remove it from the cluster " +
	"(herald cluster remove ID on another node) and start it again")

func (g voteGuard) SetUint64(key []byte, val uint64) error {
	if bytes.Equal(key, keyLastVoteTerm) && g.holdsNothing() {
		return errNothingToVoteWith
	}
	return g.StableStore.SetUint64(key, val)
}

// holdsNothing reports whether this node has neither a Raft log nor a
// snapshot. On an error it says no: Raft then decides as it would.
func (s *Store) holdsNothing() bool {
	if last, err := s.logStore.LastIndex(); err != nil || last > 0 {
		return false
	}
	list, err := s.snaps.List()
	return err == nil && len(list) == 0
}
