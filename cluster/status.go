package cluster

import (
	"context"
	"errors"
	"fmt"
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
// the leader's commit index at the time of asking, within ReadyLag: its own
// commit index would not do, since a node cut off from the leader, or one
// catching up, knows only an old one.
func (c *Cluster) Ready(ctx context.Context) error {
	if servers := c.store.Raft().GetConfiguration().Configuration().Servers; len(servers) > 0 &&
		!slices.ContainsFunc(servers, func(s hraft.Server) bool { return string(s.ID) == c.id }) {
		// A removed node runs on outside the cluster (cluster.md); "no
		// leader" would send its operator looking for a lost quorum.
		return errors.New("this node is not a member of the cluster (it was removed): herald cluster join adds it back")
	}
	if addr, _ := c.store.Raft().LeaderWithID(); addr == "" {
		return errors.New("no leader")
	}
	ctx, cancel := context.WithTimeout(ctx, ReadyLag)
	defer cancel()
	err := c.Barrier(ctx)
	var behind *behindError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &behind):
		return fmt.Errorf("not caught up with the leader within %v: applied %d of its commit index %d",
			ReadyLag, behind.applied, behind.index)
	case errors.Is(err, raft.ErrClosed):
		return errors.New("shutting down")
	}
	// The cause may name another node's address, which /readyz, open to
	// anyone, does not show.
	c.log.Debug("readiness: no commit index from the leader", "error", err)
	return fmt.Errorf("no commit index from the leader within %v", ReadyLag)
}

// caughtUp reports whether there is a leader and this node has applied the
// log up to the commit index it knows (start-up's first check; Ready asks
// the leader).
func (c *Cluster) caughtUp() error {
	r := c.store.Raft()
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

// WaitCaughtUp waits, while ctx allows, until this node has applied the log
// up to the leader's commit index and, unless it leads, holds the VAPID key
// the leader made: a node that just joined may not have applied it yet, and
// only a leader makes one.
func (c *Cluster) WaitCaughtUp(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.caughtUp()
		if err == nil {
			// Its own commit index may trail the leader's (a node that
			// was away): catch up with the leader's, as /readyz does.
			err = c.Barrier(ctx)
		}
		if err == nil && !c.store.IsLeader() {
			if _, ok, verr := c.store.VAPID(); verr != nil {
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
		case <-c.stop:
			return raft.ErrClosed
		case <-tick.C:
		}
	}
}

// ClusterStatus is GET /v1.0/admin/cluster.
type ClusterStatus struct {
	LeaderID    string       `json:"leaderId"`
	Term        uint64       `json:"term"`
	CommitIndex uint64       `json:"commitIndex"`
	Nodes       []NodeStatus `json:"nodes"`
	SlotCount   int          `json:"slotCount"`
	// RulesLevel is the rules level the cluster's FSM applies entries
	// under (raft/rules.go), as this node has applied it.
	RulesLevel int `json:"rulesLevel"`
	// ClusterID is the identity of the cluster's history (identity.go),
	// empty below raft.IdentityLevel.
	ClusterID string `json:"clusterId,omitempty"`
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
	// RulesLevel is the newest rules level the node's binary knows; an
	// older node does not say (0).
	RulesLevel int `json:"rulesLevel,omitempty"`
	// ClusterID is the cluster whose data the node holds: another than
	// the cluster's marks a node left out of a restore.
	ClusterID string `json:"clusterId,omitempty"`
	// Disk is "full" while the node's data directory is below its
	// --disk-reserve (it refuses writes that add data), else "ok"; a node
	// that does not answer, or predates it, does not say.
	Disk string `json:"disk,omitempty"`
	// ClockOffsetMs is how far the node's clock is ahead of the leader's
	// (behind when negative), in ms, as the answering node measured it
	// (clock.go); absent when the node or the leader did not answer.
	ClockOffsetMs *int64 `json:"clockOffsetMs,omitempty"`
	// ClockMs is the node's wall clock (Unix ms) when it answered another
	// node's status call (clock.go); the cluster's status does not show it.
	ClockMs int64 `json:"clockMs,omitempty"`
}

// Status describes the cluster as this node sees it: the Raft
// configuration, each member's recorded addresses, and what each member says
// of itself when asked (state "unreachable" when it does not answer). With
// one node it owns every slot.
func (c *Cluster) Status() ClusterStatus {
	r := c.store.Raft()
	stats := r.Stats()
	term, _ := strconv.ParseUint(stats["term"], 10, 64)
	commit, _ := strconv.ParseUint(stats["commit_index"], 10, 64)
	_, leader := r.LeaderWithID()
	out := ClusterStatus{LeaderID: string(leader), Term: term, CommitIndex: commit, SlotCount: SlotCount, Nodes: []NodeStatus{}}
	out.RulesLevel, _ = c.store.Rules()
	out.ClusterID, _ = c.store.ClusterID()
	f := r.GetConfiguration()
	if f.Error() != nil {
		return out
	}
	recs, _ := c.store.Nodes()
	table, _ := c.store.Slots()
	owned := map[string]int{}
	for _, id := range table {
		owned[id]++
	}
	servers := f.Configuration().Servers
	out.Nodes = make([]NodeStatus, len(servers))
	// Each clock's offset from this node's, to give it from the leader's
	// once all are in.
	offsets := make([]*time.Duration, len(servers))
	base := c.clockBase()
	var wg sync.WaitGroup
	for i, s := range servers {
		ns := NodeStatus{ID: string(s.ID), RaftAddr: string(s.Address), HTTPAddr: recs[string(s.ID)].HTTPAddr,
			Voter: s.Suffrage == hraft.Voter, State: "unreachable", Slots: owned[string(s.ID)]}
		if string(s.ID) == c.id {
			ns = c.selfStatus()
			ns.Voter, ns.Slots = s.Suffrage == hraft.Voter, owned[c.id]
			offsets[i] = new(time.Duration)
		} else if ns.RaftAddr != "" {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				defer cancel()
				peer, off, clocked, err := c.askStatus(ctx, base, ns.ID, ns.RaftAddr)
				if clocked {
					offsets[i] = &off
				}
				if err == nil {
					ns.State, ns.AppliedIndex, ns.LiveConnections, ns.LastContactMs, ns.RulesLevel, ns.ClusterID, ns.Disk =
						peer.State, peer.AppliedIndex, peer.LiveConnections, peer.LastContactMs, peer.RulesLevel, peer.ClusterID, peer.Disk
					if since, ok := c.health.failingSince(ns.ID); ok && c.store.IsLeader() {
						ns.LastContactMs = silentFor(ns.LastContactMs, since, time.Now())
					}
				} else if since, ok := c.health.failingSince(ns.ID); ok && c.store.IsLeader() {
					// The leader says how long it has not heard from
					// it; 0 read as "just now".
					ns.LastContactMs = time.Since(since).Milliseconds()
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
	if at := slices.IndexFunc(out.Nodes, func(n NodeStatus) bool { return n.ID == out.LeaderID }); at >= 0 && offsets[at] != nil {
		for i := range out.Nodes {
			if offsets[i] != nil {
				ms := (*offsets[i] - *offsets[at]).Milliseconds()
				out.Nodes[i].ClockOffsetMs = &ms
			}
		}
	}
	return out
}

// silentFor is a peer's lastContactMs as the leader reports it: what the
// peer says of itself (0 when it has not heard from a leader since it
// started: an older Herald the leader cannot reach, a node that cannot take
// the leader's connections), or, when the leader's heartbeats to it have
// been failing longer, how long since the leader last heard from it. A
// peer that answers the leader's status call but not its heartbeats read as
// "0ms", just heard from.
func silentFor(peerMs int64, since, now time.Time) int64 {
	return max(peerMs, now.Sub(since).Milliseconds())
}

// selfStatus is this node as it sees itself.
func (c *Cluster) selfStatus() NodeStatus {
	r := c.store.Raft()
	ns := NodeStatus{ID: c.id, HTTPAddr: c.opts.HTTPAdvert, RaftAddr: c.store.RaftAddr(), State: stateName(r.State()),
		AppliedIndex: c.store.Applied(), LiveConnections: c.opts.LiveConnections(), RulesLevel: c.rulesLevel()}
	ns.ClusterID, _ = c.store.ClusterID()
	ns.Disk = diskState(c.store.DiskSpace())
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

func diskState(d raft.DiskSpace) string {
	if d.Full {
		return "full"
	}
	return "ok"
}

// HandOffFull passes the leadership of a leader whose disk is full to the
// most caught-up voter that says it has room: a full leader refuses every
// write that adds data for the whole cluster, though the others could take
// them. It answers the node it handed to, or "" when this node does not
// lead, has room, or no voter says it has room (a node that predates the
// disk field does not say, so it is not chosen).
func (c *Cluster) HandOffFull(ctx context.Context) (string, error) {
	if !c.store.IsLeader() || !c.store.DiskSpace().Full {
		return "", nil
	}
	var best *NodeStatus
	st := c.Status()
	for i, n := range st.Nodes {
		if n.ID == c.id || !n.Voter || n.State != "follower" || n.Disk != "ok" {
			continue
		}
		if best == nil || n.AppliedIndex > best.AppliedIndex {
			best = &st.Nodes[i]
		}
	}
	if best == nil {
		return "", nil
	}
	if err := c.store.TransferTo(ctx, best.ID, best.RaftAddr); err != nil {
		return "", err
	}
	return best.ID, nil
}
