package node

import (
	"context"
	"errors"
	"io"
	"strconv"

	hraft "github.com/hashicorp/raft"
)

// SlotCount is the number of user partitions (DESIGN.md, Partitioning).
const SlotCount = 1024

// Ready reports whether the node has a leader and has applied the log up to
// the commit index it knows.
func (n *Node) Ready(ctx context.Context) error {
	r := n.store.Raft()
	if addr, _ := r.LeaderWithID(); addr == "" {
		return errors.New("no leader")
	}
	if !n.started.Load() {
		return errors.New("still starting")
	}
	// Raft's own applied index counts the no-op and barrier entries a new
	// leader commits, which never reach the FSM.
	commit, _ := strconv.ParseUint(r.Stats()["commit_index"], 10, 64)
	if r.AppliedIndex() < commit {
		return errors.New("still applying the log")
	}
	return nil
}

// Backup streams a consistent copy of the state.
func (n *Node) Backup(w io.Writer) error { return n.store.Backup(w) }

// ClusterStatus is GET /v1.0/admin/cluster.
type ClusterStatus struct {
	LeaderID    string       `json:"leaderId"`
	Term        uint64       `json:"term"`
	CommitIndex uint64       `json:"commitIndex"`
	Nodes       []NodeStatus `json:"nodes"`
	SlotCount   int          `json:"slotCount"`
}

// NodeStatus is one member of the cluster.
type NodeStatus struct {
	ID              string `json:"id"`
	HTTPAddr        string `json:"httpAddr"`
	RaftAddr        string `json:"raftAddr"`
	State           string `json:"state"`
	Voter           bool   `json:"voter"`
	LastContactMs   int64  `json:"lastContactMs"`
	AppliedIndex    uint64 `json:"appliedIndex"`
	Slots           int    `json:"slots"`
	LiveConnections int    `json:"liveConnections"`
}

// Cluster describes the cluster as this node sees it. With one node it owns
// every slot.
func (n *Node) Cluster() any {
	r := n.store.Raft()
	stats := r.Stats()
	term, _ := strconv.ParseUint(stats["term"], 10, 64)
	commit, _ := strconv.ParseUint(stats["commit_index"], 10, 64)
	_, leader := r.LeaderWithID()
	out := ClusterStatus{LeaderID: string(leader), Term: term, CommitIndex: commit, SlotCount: SlotCount, Nodes: []NodeStatus{}}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return out
	}
	servers := f.Configuration().Servers
	for _, s := range servers {
		ns := NodeStatus{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == hraft.Voter, State: "unreachable"}
		if string(s.ID) == n.id {
			ns.HTTPAddr = n.Addr()
			ns.State = stateName(r.State())
			ns.AppliedIndex = n.store.Applied()
			ns.LiveConnections = n.hub.Open()
			if len(servers) == 1 {
				ns.Slots = SlotCount
			}
		}
		out.Nodes = append(out.Nodes, ns)
	}
	return out
}

func stateName(s hraft.RaftState) string {
	switch s {
	case hraft.Leader:
		return "leader"
	case hraft.Candidate:
		return "candidate"
	case hraft.Follower:
		return "follower"
	}
	return "unreachable"
}
