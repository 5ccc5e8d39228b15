package cluster

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/herald-notify/herald/raft"
)

// WaitReplicated returns once every other member that answers has applied
// what this node has applied at the time of the call, or when ctx ends.
// Revoking a session waits on it, so that the revoked tokens fail at once
// on every node: a follower would otherwise accept them for the few
// milliseconds until it applies the revocation, and the read barrier,
// which runs only before a "not found", cannot catch that. A member that
// cannot be reached is not waited for (it is cut off; its /readyz says so).
// Rare writes only: it asks each peer for its status every few ms.
func (c *Cluster) WaitReplicated(ctx context.Context) error {
	index := c.store.Applied()
	f := c.store.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == c.id {
			continue
		}
		wg.Add(1)
		go func(id, addr string) {
			defer wg.Done()
			for {
				var peer NodeStatus
				cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				err := c.callNode(cctx, id, addr, http.MethodGet, "/internal/cluster/status", nil, &peer, false)
				cancel()
				// No connection could be made: down or cut off. A slow
				// answer is asked again, until ctx ends.
				if errors.Is(err, raft.ErrNotLeader) || err == nil && peer.AppliedIndex >= index {
					return
				}
				t := time.NewTimer(2 * time.Millisecond)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		}(string(s.ID), string(s.Address))
	}
	wg.Wait()
	return ctx.Err()
}

// WaitReplicated makes the API's State wait until the other members have
// applied what this node has.
func (f forwarder) WaitReplicated(ctx context.Context) error { return f.c.WaitReplicated(ctx) }
