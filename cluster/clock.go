package cluster

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
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
	mid := all[(len(all)-1)/2]
	if c.store.IsLeader() {
		c.clockRef.Store(&clockReading{offset: mid, at: time.Now()})
	}
	return now.Add(mid)
}

// MaxClockOffset is how far the time of a write (raft.Command.Now) may lie
// from the cluster's clock. Past it the write is refused: its time would
// land in the replicated state for every node to judge by their clocks. A
// node an hour behind issued access tokens that were expired on every other
// node, a node an hour ahead ones that lived two hours, and a node a week
// behind wrote changes that the next purge trimmed, taking every delta
// token of their users with them (410). The bound covers a forwarded
// write's hold across an election (forwardHold) with room to spare; an
// offset this large is a broken clock, not NTP's drift.
const MaxClockOffset = 30 * time.Second

// clockReadEvery is how old a leader's reading of the voters' clocks may
// grow before a write asks for a new one; clockReadFor how long it serves
// at most, since clocks get stepped.
const (
	clockReadEvery = 10 * time.Second
	clockReadFor   = time.Minute
)

// clockReading is the offset of the cluster's clock (ClusterNow) from this
// node's, and when it was read (this node's monotonic clock).
type clockReading struct {
	offset time.Duration
	at     time.Time
}

// clockExempt are the commands whose time is the cluster's own plumbing or
// already bounded: the purge's is ClusterNow; membership, slots and rules
// keep the cluster running and record no time of a user's; a refused
// delivery outcome would have its owner send again (deliveries are at
// least once, but a receiver would see each twice).
var clockExempt = map[raft.Op]bool{raft.OpPurge: true, raft.OpSetNode: true, raft.OpRemoveNode: true,
	raft.OpSetSlots: true, raft.OpSetRules: true, raft.OpSetVAPID: true, raft.OpBootstrapAdmin: true,
	raft.OpDeliveryOutcomes: true}

// checkClock refuses, on the leader, a command whose time lies more than
// MaxClockOffset from the cluster's clock. Without a recent reading of the
// voters' clocks (a new leader) it lets the command through and has one
// taken, rather than judge by the leader's clock alone, which may be the
// one that is off.
func (c *Cluster) checkClock(cmd *raft.Command) error {
	if clockExempt[cmd.Op] || cmd.Now == 0 {
		return nil
	}
	r := c.clockRef.Load()
	if r == nil || time.Since(r.at) >= clockReadEvery {
		c.readClocksSoon()
	}
	if r == nil || time.Since(r.at) >= clockReadFor {
		return nil
	}
	off := time.Unix(0, cmd.Now).Sub(c.now().Add(r.offset))
	if off.Abs() <= MaxClockOffset {
		return nil
	}
	return resource.Errorf(resource.CodeUnavailable,
		"The write was not made: the clock of the server node that took it is %s %s the cluster's, and the times it would store would be wrong on every node. An operator must set that node's clock right (NTP); meanwhile retry through another node.",
		off.Abs().Round(time.Second), aheadOrBehind(off))
}

func aheadOrBehind(off time.Duration) string {
	if off > 0 {
		return "ahead of"
	}
	return "behind"
}

// readClocksSoon has the voters' clocks read in the background, once at a
// time.
func (c *Cluster) readClocksSoon() {
	if !c.readingClocks.CompareAndSwap(false, true) {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.readingClocks.Store(false)
		ctx, cancel := context.WithTimeout(c.stopped, 2*clockPeerTimeout)
		defer cancel()
		c.ClusterNow(ctx)
	}()
}

// checkClocks is checkClock for each of cmds: the commands it lets through
// and the index of each in cmds, and an error for each it refuses.
func (c *Cluster) checkClocks(cmds []*raft.Command) (pass []*raft.Command, at []int, refused map[int]error) {
	for i, cmd := range cmds {
		if err := c.checkClock(cmd); err != nil {
			if refused == nil {
				refused = map[int]error{}
			}
			refused[i] = err
			continue
		}
		pass, at = append(pass, cmd), append(at, i)
	}
	return pass, at, refused
}
