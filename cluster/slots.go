package cluster

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/raft"
)

// Owns reports whether this node runs the deliveries of a user: the owner of
// the user's slot. Before the leader has written a slot table (a node of an
// older version, or the first moments of a cluster) the leader runs them
// all, so that no delivery runs once per node. A fenced node owns no one
// (fence.go): the engine asks before every attempt, so once the fence is
// up only an attempt already in flight can still reach its destination.
func (c *Cluster) Owns(userID string) bool {
	if ok, _ := c.inLease(time.Now()); !ok || c.fence.fenced.Load() {
		return false
	}
	table, err := c.store.Slots()
	if err != nil || table == nil {
		return c.store.IsLeader()
	}
	return table[raft.SlotOf(userID)] == c.id
}

// Rebalance is the leader's: it gives every reachable voter its share of
// the slots, moving as few as possible, whenever they and the table
// disagree. A voter whose heartbeats have failed for the grace period
// (peerHealth) gets none until it answers again, so its users' deliveries
// run on the survivors without waiting for an admin to remove it.
func (c *Cluster) Rebalance(ctx context.Context) error {
	r := c.store.Raft()
	if r.State() != hraft.Leader {
		return nil
	}
	// The table must be read after everything earlier leaders committed:
	// once per term, since a barrier is itself a log entry.
	if term := r.CurrentTerm(); c.barrierTerm.Load() != term {
		if err := c.termBarrier(term, 5*time.Second); err != nil {
			return err
		}
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
	table, err := c.store.Slots()
	if err != nil {
		return err
	}
	c.health.forget(voters)
	down := c.health.down(time.Now())
	c.unheardWithoutSlots(ctx, table, f.Configuration().Servers, down)
	next := raft.Rebalance(table, raft.Reachable(voters, c.id, down))
	if slices.Equal(next, table) {
		return nil
	}
	_, err = c.store.Propose(ctx, &raft.Command{Op: raft.OpSetSlots, Now: time.Now().UnixNano(), Slots: next})
	if err == nil {
		// The operator's record of why deliveries moved: a node that
		// stopped answering loses its users to the others, and gets
		// its share back when it answers again.
		c.log.Info("slots moved", "owners", slotCounts(next), "not_answering", slices.Sorted(maps.Keys(down)))
	}
	return err
}

// unheardWithoutSlots adds to down the voters that own no slot in a table
// where others do and that do not answer when asked now. A voter without
// slots most likely lost them for being silent under an earlier leader (or
// this one in an earlier term): a leader's view of its peers starts empty at
// each term, so without asking, a new leader would hand a stopped node its
// share at once and leave those users' deliveries waiting for it for another
// grace period. A node that answers, such as one just joined, gets its share.
// One that does not is asked again at the next rebalance: its heartbeats'
// recovery wakes one.
func (c *Cluster) unheardWithoutSlots(ctx context.Context, table []string, servers []hraft.Server, down map[string]bool) {
	if len(table) == 0 {
		return
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, s := range servers {
		id, addr := string(s.ID), string(s.Address)
		if s.Suffrage != hraft.Voter || id == c.id || down[id] || slices.Contains(table, id) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			var peer NodeStatus
			if err := c.callNode(cctx, id, addr, http.MethodGet, "/internal/cluster/status", nil, &peer, false); err != nil {
				c.log.Debug("rebalance: a voter without slots does not answer; it gets none yet", "peer", id, "error", err)
				mu.Lock()
				down[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// slotCounts is how many slots each node owns in table, as "id=n" in id
// order.
func slotCounts(table []string) string {
	n := map[string]int{}
	for _, id := range table {
		n[id]++
	}
	var out []string
	for _, id := range slices.Sorted(maps.Keys(n)) {
		out = append(out, fmt.Sprintf("%s=%d", id, n[id]))
	}
	return strings.Join(out, " ")
}

// termBarrier has a leader apply everything committed before its term,
// then notes the term: the slot table is read and deliveries start only
// after.
func (c *Cluster) termBarrier(term uint64, timeout time.Duration) error {
	if err := c.store.Raft().Barrier(timeout).Error(); err != nil {
		return err
	}
	c.barrierTerm.Store(term)
	return nil
}
