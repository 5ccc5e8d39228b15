package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/herald-notify/herald/raft"
)

// forwarder is the State the API uses: reads from the local replica, writes
// proposed locally on the leader and forwarded to it from a follower.
type forwarder struct {
	*raft.Store
	c *Cluster
}

// Propose commits cmd through the leader. On a follower the command joins
// the next batch to the leader (batch.go), and the answer waits until this
// node has applied it, so a client reading from the node it wrote through
// sees its write.
func (f forwarder) Propose(ctx context.Context, cmd *raft.Command) (any, error) {
	if f.Store.IsLeader() {
		if err := f.c.checkClock(cmd); err != nil {
			return nil, err
		}
		v, err := f.Store.Propose(ctx, cmd)
		// ErrNotLeader means Raft refused the entry: nothing was
		// committed, so the next leader may take it.
		if !errors.Is(err, raft.ErrNotLeader) {
			return v, err
		}
	}
	return f.c.batch.propose(ctx, cmd)
}

// waitLeaderChange waits briefly, for an election to settle, before a retry.
func (c *Cluster) waitLeaderChange(ctx context.Context) error {
	t := time.NewTimer(50 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
