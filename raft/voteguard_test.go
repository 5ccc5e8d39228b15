package raft

import (
	"context"
	"os"
	"testing"
	"time"
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
		if err := l.Raft().LeadershipTransferToServer("n1", "").Error(); err != nil {
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
