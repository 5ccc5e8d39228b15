package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/herald-notify/herald/raft"
)

// SlotCount is the number of user partitions (DESIGN.md, Partitioning).
const SlotCount = raft.SlotCount

// Ready reports whether the node has a leader, has caught up with it, and
// has started its engine.
func (n *Node) Ready(ctx context.Context) error {
	if err := n.cluster.Ready(ctx); err != nil {
		return err
	}
	if !n.started.Load() {
		return errors.New("still starting")
	}
	return nil
}

// ReadyNotes says when the data directory's disk is full.
func (n *Node) ReadyNotes() map[string]string {
	d := n.store.DiskSpace()
	if !d.Full {
		return nil
	}
	return map[string]string{"disk": fmt.Sprintf("full: %d bytes free, below the reserve of %d; writes that add data get 507 until space is freed",
		d.Free, d.Reserve)}
}

// Cluster is GET /v1.0/admin/cluster.
func (n *Node) Cluster() any { return n.cluster.Status() }

// AddNode adds a voter (API.md §8); a follower asks the leader.
func (n *Node) AddNode(ctx context.Context, id, raftAddr, httpAddr string) error {
	return n.cluster.AddNode(ctx, id, raftAddr, httpAddr)
}

// RemoveNode removes a member; a follower asks the leader.
func (n *Node) RemoveNode(ctx context.Context, id string) error { return n.cluster.RemoveNode(ctx, id) }

// Backup streams a consistent copy of the state.
func (n *Node) Backup(ctx context.Context, w io.Writer) error { return n.store.Backup(ctx, w) }

// ownershipChanged reports whether the set of slots this node owns, or its
// leadership, or its fence, changed since it was last asked. Leadership
// counts even with a slot table: without one the leader owns every user, and
// a failover must not wait for a table change to be noticed.
func (n *Node) ownershipChanged() bool {
	table, _ := n.store.Slots()
	// A fenced node owns nothing: the engine drops what it held, so the
	// lift must count as a gain for it to rescan.
	fenced := n.cluster.Fenced()
	owned := make([]bool, SlotCount)
	for i, id := range table {
		owned[i] = id == n.id && !fenced
	}
	if table == nil && n.store.IsLeader() && !fenced {
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
