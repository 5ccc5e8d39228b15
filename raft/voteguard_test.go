package raft

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// An emptied member's vote cannot elect a node that missed acknowledged
// writes (found by review). Three nodes; n2 is stopped while three users
// are created through n1 (committed by n1 and n3); n1 and n3 go down and
// n3's data directory is emptied; n2 and the emptied n3 come back. Without
// the guard n3 voted for n2, which then led without the three users, and
// n1 dropped them from its log when it came back. With it no leader is
// elected until n1 is back, and then every node holds the users.
func TestAnEmptiedMemberDoesNotVoteAwayAcknowledgedWrites(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	dirs := map[string]string{}
	addrs := map[string]string{}
	var servers []NodeRecord
	for _, id := range ids {
		dirs[id], addrs[id] = t.TempDir(), freeAddr(t)
		servers = append(servers, NodeRecord{ID: id, RaftAddr: addrs[id]})
	}
	open := func(id string) *Store {
		t.Helper()
		s, err := Open(Options{Dir: dirs[id], NodeID: id, RaftAddr: addrs[id],
			HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	nodes := map[string]*Store{}
	for _, id := range ids {
		nodes[id] = open(id)
	}
	defer func() {
		for _, s := range nodes {
			s.Close()
		}
	}()
	for _, id := range ids {
		// As every node of a new cluster does (cluster/join.go).
		if err := nodes[id].BootstrapCluster(servers); err != nil {
			t.Fatal(err)
		}
	}
	leader := func(among ...string) *Store {
		for _, id := range among {
			if s := nodes[id]; s != nil && s.IsLeader() {
				return s
			}
		}
		return nil
	}
	pollUntil(t, "a leader among the three", func() error {
		if leader(ids...) == nil {
			return os.ErrNotExist
		}
		return nil
	})
	// n1 leads from here on, so that n2 and n3 are the followers.
	if l := leader(ids...); l != nodes["n1"] {
		if err := l.Raft().LeadershipTransferToServer("n1", hraft.ServerAddress(addrs["n1"])).Error(); err != nil {
			t.Fatal(err)
		}
		pollUntil(t, "n1 leading", func() error {
			if !nodes["n1"].IsLeader() {
				return os.ErrNotExist
			}
			return nil
		})
	}

	nodes["n2"].Close()
	delete(nodes, "n2")
	var lost []string
	for _, name := range []string{"lost1", "lost2", "lost3"} {
		u := newUser(name)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := nodes["n1"].Propose(ctx, &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: u})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		lost = append(lost, u.ID)
	}
	nodes["n1"].Close()
	nodes["n3"].Close()
	delete(nodes, "n1")
	delete(nodes, "n3")
	if err := os.RemoveAll(dirs["n3"]); err != nil {
		t.Fatal(err)
	}
	nodes["n2"] = open("n2")
	nodes["n3"] = open("n3")

	// n2 stands for election every few hundred milliseconds; an emptied
	// n3's vote would elect it at the first.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if l := leader("n2", "n3"); l != nil {
			t.Fatalf("%s was elected while the node holding the acknowledged writes was down", l.opts.NodeID)
		}
		time.Sleep(20 * time.Millisecond)
	}

	nodes["n1"] = open("n1")
	for _, id := range ids {
		s := nodes[id]
		pollUntil(t, id+" holding every acknowledged user", func() error {
			for _, uid := range lost {
				if _, found, err := s.User(uid); err != nil || !found {
					return os.ErrNotExist
				}
			}
			return nil
		})
	}
}

// A node that came up without Raft state votes only once its log reaches
// the commit index it learned from the leader: a log caught up part way is
// a prefix shorter than what it may have acknowledged before it lost its
// data (found by review), and an unknown target keeps it from voting.
func TestACatchingUpNodeVotesOnceItHoldsTheLeadersCommitIndex(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), NodeID: "n3", RaftAddr: freeAddr(t),
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.mayVote(); err == nil {
		t.Fatal("an empty node may vote")
	}
	if !s.NeedsCatchUpTarget() {
		t.Fatal("an empty node does not ask for its target")
	}
	if err := s.SetCatchUpTarget(3); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCatchUpTarget(9); err != nil || s.NeedsCatchUpTarget() {
		t.Fatalf("a second target: %v, still needed %v", err, s.NeedsCatchUpTarget())
	}
	store := func(from, to uint64) {
		t.Helper()
		var logs []*hraft.Log
		for i := from; i <= to; i++ {
			logs = append(logs, &hraft.Log{Index: i, Term: 1, Type: hraft.LogNoop})
		}
		if err := s.logStore.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	store(1, 2) // part way
	if err := s.mayVote(); err == nil || !strings.Contains(err.Error(), "holds through index 2; must hold through 3") {
		t.Fatalf("a node two entries into a target of three: %v; want a refusal", err)
	}
	store(3, 3)
	if err := s.mayVote(); err != nil {
		t.Fatalf("a node that holds its target: %v", err)
	}
	if catching, _, err := s.catchUp(); err != nil || catching {
		t.Fatalf("the mark after catching up: %v, %v; want it lifted", catching, err)
	}

	// A restart keeps a mark that was not lifted.
	dir := t.TempDir()
	addr := freeAddr(t)
	open := func() *Store {
		s, err := Open(Options{Dir: dir, NodeID: "n4", RaftAddr: addr, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s4 := open()
	if err := s4.SetCatchUpTarget(7); err != nil {
		t.Fatal(err)
	}
	s4.logStore.StoreLogs([]*hraft.Log{{Index: 1, Term: 1, Type: hraft.LogNoop}})
	s4.Close()
	s4 = open()
	defer s4.Close()
	if err := s4.mayVote(); err == nil || !strings.Contains(err.Error(), "must hold through 7") {
		t.Fatalf("after a restart part way: %v; want the refusal with the target kept", err)
	}
}
