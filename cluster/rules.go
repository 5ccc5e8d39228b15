package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// RaiseRules is the leader's: once every member of the configuration says
// its binary knows a rules level above the cluster's (raft/rules.go), it
// raises the cluster's to the lowest of theirs, through the log. A member
// that does not answer, or an older one that does not say, holds it back:
// it would apply the entries after the raise under the old rules. It does
// nothing on a follower, or when the level is already the newest.
func (c *Cluster) RaiseRules(ctx context.Context) error {
	if !c.store.IsLeader() {
		return nil
	}
	own := c.rulesLevel()
	have, err := c.store.Rules()
	if err != nil {
		return err
	}
	if have >= own {
		return nil
	}
	// Status asks every member; one that does not answer reports 0.
	st := c.Status()
	if len(st.Nodes) == 0 {
		return nil // no configuration read: nobody to vouch for
	}
	var peers []int
	for _, n := range st.Nodes {
		if n.ID != c.id {
			peers = append(peers, n.RulesLevel)
		}
	}
	level := nextRules(have, own, peers)
	if level == 0 {
		return nil
	}
	// The raise to raft.IdentityLevel names the cluster; the FSM keeps a
	// name it already has.
	cmd := &raft.Command{Op: raft.OpSetRules, Now: time.Now().UnixNano(), Level: level, ID: newClusterID()}
	if _, err := c.store.Propose(ctx, cmd); err != nil {
		return fmt.Errorf("raise the rules level to %d: %w", level, err)
	}
	c.log.Info("every member knows a newer rules level; the cluster applies it from here", "rules_level", level)
	return nil
}

// checkJoiner vets a node that asks to join, or that an admin adds, by what
// it says of itself. A node that holds another cluster's data is refused
// for good (identity.go), a member too: it would serve that data as this
// cluster's; and a new member with an identity joins no cluster without one
// (a restored node, which would refuse the leader's plain connections and
// stay a dead voter). A node with Raft state but no identity is refused by a
// cluster that began with a restore, a member too: data from before. A node
// whose binary knows a lower rules level than the cluster applies is
// refused, a member too (a binary gone back to an older release): it would
// apply the entries from its join on under older rules than the others, and
// its state would part from theirs. A new member that cannot be asked yet
// is refused for now (it asks again) where there is anything to check; a
// member that asks again is not held up by a failure to ask it.
func (c *Cluster) checkJoiner(ctx context.Context, rec raft.NodeRecord, member bool) error {
	// Apply everything committed first: a new leader that has not applied
	// the raise yet would judge by an older level and identity.
	if err := c.store.Raft().Barrier(5 * time.Second).Error(); err != nil {
		return raft.ErrNotLeader
	}
	have, err := c.store.Rules()
	if err != nil {
		return err
	}
	id, err := c.store.Identity()
	if err != nil {
		return err
	}
	own := id.ID
	if member && have == 0 && own == "" {
		return nil
	}
	askCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var peer NodeStatus
	if err := c.callNode(askCtx, rec.ID, rec.RaftAddr, http.MethodGet, "/internal/cluster/status", nil, &peer, false); err != nil {
		if member || have == 0 && own == "" {
			return nil
		}
		return &silentJoinerError{rec: rec, err: fmt.Errorf("ask %s which rules it knows: %w", rec.ID, err)}
	}
	if peer.ClusterID != "" && peer.ClusterID != own && (own != "" || !member) {
		// A member may have applied the raise that this leader has
		// not yet.
		if own == "" {
			own = "one without an identity"
		}
		return otherClusterError(rec.ID, peer.ClusterID, own)
	}
	if id.Restored && peer.ClusterID == "" && peer.AppliedIndex > 0 {
		// Every member of a restored cluster holds its identity, from
		// the restore or the snapshot it joined with.
		return otherClusterError(rec.ID, "one without an identity", own)
	}
	if peer.RulesLevel < have {
		return resource.Errorf(resource.CodeInvalidRequest,
			"node %s runs an older Herald than this cluster's (rules level %d, the cluster applies %d): upgrade it first",
			rec.ID, peer.RulesLevel, have)
	}
	return nil
}

// nextRules is the level to raise the cluster's from have to, given the
// leader's own and every other member's: the lowest of them, or 0 when
// that raises nothing.
func nextRules(have, own int, peers []int) int {
	level := own
	for _, p := range peers {
		level = min(level, p)
	}
	if level <= have {
		return 0
	}
	return level
}

// newClusterID is a new cluster's identity: 128 random bits in hex, as a
// restored cluster's (raft.Restore).
func newClusterID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// silentJoinerError is a node to be added that did not answer the leader.
// It unwraps to the call's error, which reads as "no leader" (callNode's
// words for a peer it cannot reach), so a node's own join at its start
// retries; an admin's join says what is wrong instead (addNode).
type silentJoinerError struct {
	rec raft.NodeRecord
	err error
}

func (e *silentJoinerError) Error() string { return e.err.Error() }
func (e *silentJoinerError) Unwrap() error { return e.err }
