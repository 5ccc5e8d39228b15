package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

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
const clockPeerTimeout = time.Second

// now is this node's wall clock (Options.Clock in tests).
func (c *Cluster) now() time.Time {
	if c.opts.Clock != nil {
		return c.opts.Clock()
	}
	return time.Now()
}

// clockMs is what this node reports of its clock in its status.
func (c *Cluster) clockMs() int64 { return c.now().UnixMilli() }

// clockBase is one reading of this node's wall clock, and the moment of
// it on the monotonic clock. Offsets are measured against it and times
// derived from it by elapsed monotonic time, so that a step of the wall
// clock in the middle of a measurement (a VM resumed, NTP stepping) does
// not skew the measurement.
type clockBase struct {
	wall time.Time // this node's clock, monotonic reading stripped
	mono time.Time // time.Now, for its monotonic reading
}

func (c *Cluster) clockBase() clockBase {
	return clockBase{wall: c.now().Round(0), mono: time.Now()}
}

// at is this node's clock as of the base, d after it.
func (b clockBase) at(d time.Duration) time.Time { return b.wall.Add(d) }

// askStatus asks a node its status and measures its clock's offset from
// this node's (as of base): its reported clock minus the middle of the
// call, within half the call's time. clocked is false when it did not
// answer or did not report a clock (an older node).
func (c *Cluster) askStatus(ctx context.Context, base clockBase, id, raftAddr string) (peer NodeStatus, offset time.Duration, clocked bool, err error) {
	start := time.Since(base.mono)
	err = c.callNode(ctx, id, raftAddr, http.MethodGet, "/internal/cluster/status", nil, &peer, false)
	if err != nil || peer.ClockMs == 0 {
		return peer, 0, false, err
	}
	mid := base.at((start + time.Since(base.mono)) / 2)
	return peer, time.UnixMilli(peer.ClockMs).Sub(mid), true, nil
}

// voterClock is one voter's clock: its offset from a base; unknown for an
// older node that reports none, taken as agreeing.
type voterClock struct {
	id      string
	off     time.Duration
	unknown bool
}

// voterClocks is the offset from base of each voter's clock that answers
// (this node's own is 0), and the number of voters. A voter that answers
// without a clock (an older node) counts as agreeing with this node, as
// every node did before clocks were read.
func (c *Cluster) voterClocks(ctx context.Context, base clockBase) (clocks []voterClock, voters int) {
	f := c.store.Raft().GetConfiguration()
	if f.Error() != nil {
		return nil, 0
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != hraft.Voter {
			continue
		}
		voters++
		if string(s.ID) == c.id {
			mu.Lock() // the peers asked before it may be answering
			clocks = append(clocks, voterClock{id: c.id})
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func(id, addr string) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, clockPeerTimeout)
			defer cancel()
			_, off, clocked, err := c.askStatus(cctx, base, id, addr)
			if err != nil {
				return
			}
			if !clocked {
				off = 0
			}
			mu.Lock()
			defer mu.Unlock()
			clocks = append(clocks, voterClock{id: id, off: off, unknown: !clocked})
		}(string(s.ID), string(s.Address))
	}
	wg.Wait()
	return clocks, voters
}

// ErrNoClockQuorum says that fewer than a majority of the voters told their
// clocks, so the cluster's time is not known.
var ErrNoClockQuorum = errors.New("fewer than a majority of the voters told their clocks")

// ClusterNow is the time a leader's purge runs at: the lower middle of the
// clocks of the voters that answer, this node's included, once a majority
// of the voters have. One node's clock, however far off, then cannot move
// it: a leader an hour ahead purged every notification an hour before its
// expirationDateTime, and every token with less than an hour to live; a
// day ahead, the change log a day early, so that devices got 410
// resyncRequired. With only half the voters answering the earlier clock
// counts, since a purge that comes late loses nothing. Without a majority
// it answers ErrNoClockQuorum: this node's clock alone may be the one off.
func (c *Cluster) ClusterNow(ctx context.Context) (time.Time, error) {
	base := c.clockBase()
	clocks, voters := c.voterClocks(ctx, base)
	if voters == 0 {
		// Not a member (yet): nothing else to go by.
		return c.now(), nil
	}
	if len(clocks) <= voters/2 {
		return time.Time{}, fmt.Errorf("%w (%d of %d)", ErrNoClockQuorum, len(clocks), voters)
	}
	offsets := make([]time.Duration, len(clocks))
	for i, vc := range clocks {
		offsets[i] = vc.off
	}
	r := newClockReading(base, offsets)
	r.voters = make(map[string]time.Duration, len(clocks))
	for _, vc := range clocks {
		if !vc.unknown { // the metric gives only clocks measured
			r.voters[vc.id] = base.wall.Add(vc.off).Sub(r.cluster)
		}
	}
	if c.store.IsLeader() {
		c.clockRef.Store(r)
	}
	return r.now(), nil
}

// newClockReading is the reading of the clocks at offsets from base: their
// lower middle. With an even number of them there is no middle clock, and
// when the two in the middle are further apart than MaxClockOffset it
// cannot tell which is off (two of three voters answering, one of them an
// hour behind): the reading serves the purge, for which the earlier clock
// is the safe one, but judges no write (undecided), or the node whose clock
// is right would have its writes refused and the one off let through.
func newClockReading(base clockBase, offsets []time.Duration) *clockReading {
	slices.Sort(offsets)
	lo := (len(offsets) - 1) / 2
	undecided := len(offsets)%2 == 0 && offsets[lo+1]-offsets[lo] > MaxClockOffset
	return &clockReading{cluster: base.wall.Add(offsets[lo]), at: base.mono, own: base.wall, undecided: undecided}
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

// clockReading is the cluster's clock (ClusterNow) as read at at (for its
// monotonic reading): it goes on from there by the monotonic clock, so a
// step of this node's wall clock does not move it.
type clockReading struct {
	cluster time.Time
	at      time.Time
	own     time.Time // this node's wall clock at the reading
	// undecided: the clocks read disagree too much to tell which is
	// right (newClockReading); no write is judged by it.
	undecided bool
	// voters is each answering voter's clock ahead of the cluster's
	// (behind when negative), for the metric (clockCollector).
	voters map[string]time.Duration
}

func (r *clockReading) now() time.Time { return r.cluster.Add(time.Since(r.at)) }

// current reports whether the reading still holds: young enough, and this
// node's wall clock gone on with the monotonic one. The monotonic clock
// stops while a VM is suspended and the wall clock does not, so the two
// part after a resume; a step of the wall clock parts them too, and the
// reading would survive it, but the two cannot be told apart here.
func (r *clockReading) current(own time.Time) bool {
	since := time.Since(r.at)
	return since < clockReadFor && (own.Sub(r.own)-since).Abs() <= time.Second
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
	if clockExempt[cmd.Op] || cmd.Now == 0 || c.opts.UncheckedTimes {
		return nil
	}
	r := c.clockRef.Load()
	current := r != nil && r.current(c.now())
	if !current || time.Since(r.at) >= clockReadEvery {
		c.readClocksSoon()
	}
	if !current || r.undecided {
		return nil
	}
	off := time.Unix(0, cmd.Now).Sub(r.now())
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
	if !c.track() {
		// Closing: a write or a scrape that comes now starts nothing.
		c.readingClocks.Store(false)
		return
	}
	go func() {
		defer c.wg.Done()
		defer c.readingClocks.Store(false)
		ctx, cancel := context.WithTimeout(c.stopped, 2*clockPeerTimeout)
		defer cancel()
		if _, err := c.ClusterNow(ctx); err != nil {
			c.log.Debug("could not read the voters' clocks", "error", err)
		}
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

var clockOffsetDesc = prometheus.NewDesc("herald_cluster_clock_offset_seconds",
	"How far each voter's wall clock is ahead of the cluster's clock (the lower middle of the voters' clocks; behind when negative), as the leader last read them; exported by the leader only.",
	[]string{"node"}, nil)

// clockMetricFor is how old a reading the metric still gives. Scrapes come
// every 15 s to a minute, and each has a new reading taken once the last
// is older than clockReadEvery, for the next scrape to give.
const clockMetricFor = 5 * time.Minute

// clockCollector exports the leader's latest reading of the voters'
// clocks: a node whose clock is off has its writes refused past
// MaxClockOffset, and an operator wants to hear of it well before.
type clockCollector struct{ c *Cluster }

func (k clockCollector) Describe(ch chan<- *prometheus.Desc) { ch <- clockOffsetDesc }

func (k clockCollector) Collect(ch chan<- prometheus.Metric) {
	if !k.c.store.IsLeader() {
		return
	}
	r := k.c.clockRef.Load()
	if r == nil || time.Since(r.at) >= clockReadEvery {
		k.c.readClocksSoon()
	}
	if r == nil || time.Since(r.at) >= clockMetricFor {
		return
	}
	for id, off := range r.voters {
		ch <- prometheus.MustNewConstMetric(clockOffsetDesc, prometheus.GaugeValue, off.Seconds(), id)
	}
}

// ClockMetrics is the leader's view of the voters' clocks, for the node's
// registry.
func (c *Cluster) ClockMetrics() prometheus.Collector { return clockCollector{c} }
