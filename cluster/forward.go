package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// forwarder is the State the API uses: reads from the local replica, writes
// proposed locally on the leader and forwarded to it from a follower.
type forwarder struct {
	*raft.Store
	c *Cluster
}

// Propose commits cmd through the leader. A follower answers only once it
// has applied the leader's index, so a client reading from the node it wrote
// through sees its write.
func (f forwarder) Propose(ctx context.Context, cmd *raft.Command) (any, error) {
	// ErrNotLeader means Raft refused the entry: nothing was committed, so
	// asking the (new) leader is safe. Give an election a moment.
	// The bound applies to finding a leader and forwarding; a local
	// proposal keeps the caller's context, as on a lone node.
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		if f.Store.IsLeader() {
			v, err := f.Store.Propose(ctx, cmd)
			if !errors.Is(err, raft.ErrNotLeader) {
				return v, err
			}
		} else {
			var w raft.WireResult
			err := f.c.callLeader(fctx, "/internal/cluster/propose", cmd, &w)
			if err == nil {
				var v any
				if v, err = w.Decode(); !errors.Is(err, raft.ErrNotLeader) {
					// The wait has the caller's whole context, not what the
					// round trip left of fctx: the write is done, and only
					// this replica's catching up remains.
					if w.Applied > 0 {
						if werr := f.Store.WaitApplied(ctx, w.Applied); werr != nil {
							f.c.log.Warn("forwarded write committed but not yet applied here", "index", w.Applied, "error", werr)
							// A 2xx now would break read-after-write on this
							// node; a 503 that says the write is done does not.
							return nil, resource.Errorf(resource.CodeUnavailable,
								"The write was committed, but this node has not caught up with it yet (%v); read it again shortly.", werr)
						}
					}
					return v, err
				}
			} else if !errors.Is(err, raft.ErrNotLeader) {
				return nil, forwardError(err)
			}
		}
		if f.c.waitLeaderChange(fctx) != nil {
			return nil, raft.ErrNotLeader
		}
	}
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
