package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/raft"
)

// SlotCount is the number of user partitions (DESIGN.md, Partitioning).
const SlotCount = raft.SlotCount

// Ready reports whether the node has a leader and has applied the log up to
// the commit index it knows.
func (n *Node) Ready(ctx context.Context) error {
	if err := n.caughtUp(); err != nil {
		return err
	}
	if !n.started.Load() {
		return errors.New("still starting")
	}
	return nil
}

// caughtUp reports whether there is a leader and this node has applied the
// log up to the commit index it knows.
func (n *Node) caughtUp() error {
	r := n.store.Raft()
	if addr, _ := r.LeaderWithID(); addr == "" {
		return errors.New("no leader")
	}
	// Raft's own applied index counts the no-op and barrier entries a new
	// leader commits, which never reach the FSM.
	commit, _ := strconv.ParseUint(r.Stats()["commit_index"], 10, 64)
	if r.AppliedIndex() < commit {
		return errors.New("still applying the log")
	}
	return nil
}

// waitCaughtUp waits, while ctx allows, until this node has applied the log
// up to the leader's commit index and, unless it leads, holds the VAPID key
// the leader made: a node that just joined may not have applied it yet, and
// only a leader makes one.
func (n *Node) waitCaughtUp(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := n.caughtUp()
		if err == nil && !n.store.IsLeader() {
			if _, ok, verr := n.store.VAPID(); verr != nil {
				return verr
			} else if !ok {
				err = errors.New("no VAPID key from the leader yet")
			}
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%v)", ctx.Err(), err)
		case <-n.stop:
			return raft.ErrClosed
		case <-tick.C:
		}
	}
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
	table, _ := n.store.Slots()
	owned := map[string]int{}
	for _, id := range table {
		owned[id]++
	}
	servers := f.Configuration().Servers
	out.Nodes = make([]NodeStatus, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		ns := NodeStatus{ID: string(s.ID), RaftAddr: string(s.Address), HTTPAddr: recs[string(s.ID)].HTTPAddr,
			Voter: s.Suffrage == hraft.Voter, State: "unreachable", Slots: owned[string(s.ID)]}
		if string(s.ID) == n.id {
			ns = n.selfStatus()
			ns.Voter, ns.Slots = s.Suffrage == hraft.Voter, owned[n.id]
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
		if table == nil && len(servers) == 1 {
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

// Owns reports whether this node runs the deliveries of a user: the owner of
// the user's slot. Before the leader has written a slot table (a node of an
// older version, or the first moments of a cluster) the leader runs them
// all, so that no delivery runs once per node.
func (n *Node) Owns(userID string) bool {
	table, err := n.store.Slots()
	if err != nil || table == nil {
		return n.store.IsLeader()
	}
	return table[raft.SlotOf(userID)] == n.id
}

// rebalance is the leader's: it gives every reachable voter its share of
// the slots, moving as few as possible, whenever they and the table
// disagree. A voter whose heartbeats have failed for the grace period
// (peerHealth) gets none until it answers again, so its users' deliveries
// run on the survivors without waiting for an admin to remove it.
func (n *Node) rebalance(ctx context.Context) error {
	r := n.store.Raft()
	if r.State() != hraft.Leader {
		return nil
	}
	// The table must be read after everything earlier leaders committed:
	// once per term, since a barrier is itself a log entry.
	term, _ := strconv.ParseUint(r.Stats()["term"], 10, 64)
	if n.barrierTerm.Load() != term {
		if err := r.Barrier(5 * time.Second).Error(); err != nil {
			return err
		}
		n.barrierTerm.Store(term)
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	var voters []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == hraft.Voter {
			voters = append(voters, string(s.ID))
		}
	}
	table, err := n.store.Slots()
	if err != nil {
		return err
	}
	n.health.forget(voters)
	next := raft.Rebalance(table, raft.Reachable(voters, n.id, n.health.down(time.Now())))
	if slices.Equal(next, table) {
		return nil
	}
	_, err = n.store.Propose(ctx, &raft.Command{Op: raft.OpSetSlots, Now: time.Now().UnixNano(), Slots: next})
	return err
}

// ownershipChanged reports whether the set of slots this node owns, or its
// leadership, changed since it was last asked. Leadership counts even with a
// slot table: without one the leader owns every user, and a failover must not
// wait for a table change to be noticed.
func (n *Node) ownershipChanged() bool {
	table, _ := n.store.Slots()
	owned := make([]bool, SlotCount)
	for i, id := range table {
		owned[i] = id == n.id
	}
	if table == nil && n.store.IsLeader() {
		for i := range owned {
			owned[i] = true
		}
	}
	leader := n.store.IsLeader()
	changed := !slices.Equal(owned, n.lastOwned) || leader != n.lastLeader
	n.lastOwned, n.lastLeader = owned, leader
	return changed
}

// rescanIfOwnershipChanged has the engine schedule the pending deliveries of
// users this node gained (the engine drops those it lost at their next
// attempt). Housekeeping goroutine only.
func (n *Node) rescanIfOwnershipChanged() {
	if !n.ownershipChanged() {
		return
	}
	if err := n.engine.Rescan(); err != nil {
		n.log.Warn("could not rescan pending deliveries", "error", err)
	}
}

// observeLeader wakes housekeeping on every leader change Raft observes.
// The channel holds one wake-up: several changes before housekeeping runs
// need only one look.
func (n *Node) observeLeader() {
	ch := make(chan hraft.Observation, 4)
	obs := hraft.NewObserver(ch, false, func(o *hraft.Observation) bool {
		_, ok := o.Data.(hraft.LeaderObservation)
		return ok
	})
	r := n.store.Raft()
	r.RegisterObserver(obs)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer r.DeregisterObserver(obs)
		for {
			select {
			case <-n.stop:
				return
			case <-ch:
				select {
				case n.leaderChanged <- struct{}{}:
				default:
				}
			}
		}
	}()
}
