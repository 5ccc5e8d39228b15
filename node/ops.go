package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

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

// Cluster describes the cluster as this node sees it: the Raft
// configuration, each member's recorded addresses, and what each member says
// of itself when asked (state "unreachable" when it does not answer). With
// one node it owns every slot.
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
	recs, _ := n.store.Nodes()
	servers := f.Configuration().Servers
	out.Nodes = make([]NodeStatus, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		ns := NodeStatus{ID: string(s.ID), RaftAddr: string(s.Address), HTTPAddr: recs[string(s.ID)].HTTPAddr,
			Voter: s.Suffrage == hraft.Voter, State: "unreachable"}
		if string(s.ID) == n.id {
			ns = n.selfStatus()
			ns.Voter = s.Suffrage == hraft.Voter
		} else if ns.HTTPAddr != "" {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				defer cancel()
				var peer NodeStatus
				if err := n.callNode(ctx, ns.HTTPAddr, http.MethodGet, "/internal/cluster/status", nil, &peer, false); err == nil {
					ns.State, ns.AppliedIndex, ns.LiveConnections, ns.LastContactMs =
						peer.State, peer.AppliedIndex, peer.LiveConnections, peer.LastContactMs
				}
				out.Nodes[i] = ns
			}()
			continue
		}
		if len(servers) == 1 {
			ns.Slots = SlotCount
		}
		out.Nodes[i] = ns
	}
	wg.Wait()
	return out
}

// selfStatus is this node as it sees itself.
func (n *Node) selfStatus() NodeStatus {
	r := n.store.Raft()
	ns := NodeStatus{ID: n.id, HTTPAddr: n.httpAdvert, RaftAddr: n.store.RaftAddr(), State: stateName(r.State()),
		AppliedIndex: n.store.Applied(), LiveConnections: n.hub.Open()}
	if r.State() != hraft.Leader {
		if lc := r.LastContact(); !lc.IsZero() {
			ns.LastContactMs = time.Since(lc).Milliseconds()
		}
	}
	return ns
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
