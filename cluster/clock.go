package cluster

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Wall clocks (docs/cluster.md, Clocks). Every replicated time comes from
// the clock of the node that made the command, and Raft neither needs nor
// checks that the nodes' clocks agree. The cluster measures them instead:
// each node reports its clock when asked its status, and the asker takes
// the middle of its call as the moment of the answer.

// ClockOffsetWarn is the offset from the leader's clock past which the
// cluster status marks a node: NTP holds clocks within milliseconds, so a
// second means it is not running there.
const ClockOffsetWarn = time.Second

// clockPeerTimeout bounds one peer's answer to a clock reading; a slower
// answer would say little of when the clock was read.
const clockPeerTimeout = 500 * time.Millisecond

// now is this node's wall clock (Options.Clock in tests).
func (c *Cluster) now() time.Time {
	if c.opts.Clock != nil {
		return c.opts.Clock()
	}
	return time.Now()
}

// clockMs is what this node reports of its clock in its status.
func (c *Cluster) clockMs() int64 { return c.now().UnixMilli() }

// askStatus asks a node its status and measures its clock's offset from
// this node's: its reported clock minus the middle of the call, within half
// the call's time. ok is false when it did not answer or did not report a
// clock (an older node).
func (c *Cluster) askStatus(ctx context.Context, id, raftAddr string) (peer NodeStatus, offset time.Duration, ok bool, err error) {
	start := c.now()
	err = c.callNode(ctx, id, raftAddr, http.MethodGet, "/internal/cluster/status", nil, &peer, false)
	if err != nil || peer.ClockMs == 0 {
		return peer, 0, false, err
	}
	end := c.now()
	mid := start.Add(end.Sub(start) / 2)
	return peer, time.UnixMilli(peer.ClockMs).Sub(mid), true, nil
}

// voterClocks is the offset from this node's clock of each voter that
// answers (this node's own is 0), measured now.
func (c *Cluster) voterClocks(ctx context.Context) map[string]time.Duration {
	out := map[string]time.Duration{c.id: 0}
	f := c.store.Raft().GetConfiguration()
	if f.Error() != nil {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == c.id || s.Suffrage != hraft.Voter {
			continue
		}
		wg.Add(1)
		go func(id, addr string) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, clockPeerTimeout)
			defer cancel()
			if _, off, ok, _ := c.askStatus(cctx, id, addr); ok {
				mu.Lock()
				out[id] = off
				mu.Unlock()
			}
		}(string(s.ID), string(s.Address))
	}
	wg.Wait()
	return out
}

// ClusterNow is the time a leader's purge runs at: the lower middle of the
// clocks of the voters that answer, this node's included. One node's clock,
// however far ahead, then cannot move it: a leader an hour ahead purged
// every notification an hour before its expirationDateTime, and every token
// with less than an hour to live; a day ahead, the change log a day early,
// so that devices got 410 resyncRequired. With only half the voters
// answering the earlier clock counts, since a purge that comes late loses
// nothing. A node alone, or whose peers do not report a clock, has only its
// own.
func (c *Cluster) ClusterNow(ctx context.Context) time.Time {
	offsets := c.voterClocks(ctx)
	now := c.now()
	all := make([]time.Duration, 0, len(offsets))
	for _, off := range offsets {
		all = append(all, off)
	}
	slices.Sort(all)
	return now.Add(all[(len(all)-1)/2])
}
