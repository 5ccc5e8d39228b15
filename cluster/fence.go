package cluster

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
)

// fence stops this node's external deliveries (webPush, webhook, FCM,
// APNs) while it cannot be sure it still owns its slots: the leader moves
// the slots of a voter whose heartbeats have failed for PeerDownAfter, and a
// node cut off from the others cannot learn that. So a node that has not
// heard from a quorum within the lease (half of PeerDownAfter) stops on its
// own, before the leader can have moved its slots; DESIGN.md beside this
// file has the timing argument. Reads and live streams are not fenced: a
// cut-off node keeps serving the clients connected to it.
type fence struct {
	lease time.Duration
	// fenced is set the moment the lease is seen lapsed, and cleared only
	// once the node has caught up with the leader's log: a node that was
	// cut off holds a slot table that may be stale, and must not deliver by
	// it.
	fenced atomic.Bool
	// quorumLost is the leader's own count of the voters that answered its
	// heartbeats within the lease, refreshed by the monitor. hashicorp/raft
	// steps a leader down after LeaderLeaseTimeout without a quorum anyway;
	// this does not depend on that.
	quorumLost atomic.Bool

	mu sync.Mutex
	// failing holds, on the leader, the peers whose heartbeats fail.
	failing map[string]peerSilence
}

// peerSilence is what the leader knows of a peer whose heartbeats fail.
type peerSilence struct {
	lastContact time.Time // its last successful heartbeat, per raft
	lastFailure time.Time // when a failure was last reported
}

// observe records, on the leader, when each failing peer last answered;
// a leader change starts afresh, as its replication does. The cluster's
// one Raft observer (health.go) feeds it.
func (f *fence) observe(o hraft.Observation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch d := o.Data.(type) {
	case hraft.FailedHeartbeatObservation:
		f.failing[string(d.PeerID)] = peerSilence{lastContact: d.LastContact, lastFailure: time.Now()}
	case hraft.ResumedHeartbeatObservation:
		delete(f.failing, string(d.PeerID))
	case hraft.LeaderObservation:
		clear(f.failing)
	}
}

// defaultPeerDownAfter stands in for an unset PeerDownAfter (node/ passes
// its own default; this keeps a zero from fencing every delivery).
const defaultPeerDownAfter = 10 * time.Second

// fenceLease is how long a node may go without hearing from a quorum before
// it stops its deliveries: half the grace period after which the leader
// moves a silent voter's slots, leaving the other half for the leader's own
// lease (hashicorp/raft's LeaderLeaseTimeout, half the heartbeat timeout)
// and for scheduling delays. See DESIGN.md, Fencing.
func fenceLease(peerDownAfter time.Duration) time.Duration { return peerDownAfter / 2 }

// fenceTick bounds how long the monitor takes to notice a lapse that no
// delivery asked about while the fence is down.
func fenceTick(lease time.Duration) time.Duration {
	return min(max(lease/10, 20*time.Millisecond), 250*time.Millisecond)
}

func newFence(peerDownAfter time.Duration) *fence {
	if peerDownAfter <= 0 {
		peerDownAfter = defaultPeerDownAfter
	}
	f := &fence{lease: fenceLease(peerDownAfter), failing: map[string]peerSilence{}}
	f.fenced.Store(true) // until this node has heard from a leader
	return f
}

// Fenced reports whether this node's external deliveries are stopped
// because it has not heard from a quorum within the lease, or has not yet
// caught up since it did again.
func (c *Cluster) Fenced() bool {
	ok, _ := c.inLease(time.Now())
	return !ok || c.fence.fenced.Load()
}

// FenceLease is how long this node delivers without hearing from a quorum.
func (c *Cluster) FenceLease() time.Duration { return c.fence.lease }

// inLease reports whether this node has heard from a quorum within the
// lease, and if not, why. It is what Owns asks before every delivery
// attempt, so a lapse stops deliveries at once, not at the monitor's tick.
func (c *Cluster) inLease(now time.Time) (bool, string) {
	r := c.store.Raft()
	switch r.State() {
	case hraft.Leader:
		// A new leader may not have applied what earlier leaders
		// committed (a slot table among it) until its barrier of the term.
		if c.barrierTerm.Load() != r.CurrentTerm() {
			return false, "a new leader that has not applied the log of earlier terms yet"
		}
		if c.fence.quorumLost.Load() {
			return false, "the leader has not heard from a quorum of voters"
		}
		return true, ""
	case hraft.Follower:
		// Contact without a known leader is a vote granted in an
		// election: no proof that a quorum still follows anyone.
		if _, id := r.LeaderWithID(); id == "" {
			return false, "no leader"
		}
		if now.Sub(r.LastContact()) > c.fence.lease {
			return false, "no contact with the leader"
		}
		return true, ""
	case hraft.Candidate:
		return false, "an election is under way (this node is a candidate)"
	}
	return false, "raft is shut down"
}

// watchFence keeps the fence: it drops it when the lease lapses (also a
// lapse that happened between two looks, found from the gap between two
// contacts), wakes the node when it changes so that the engine rescans, and
// lifts it once the node has caught up with the leader.
func (c *Cluster) watchFence() {
	if ht := c.store.Raft().ReloadableConfig().HeartbeatTimeout; 2*c.fence.lease <= ht {
		// The margin of the timing argument (DESIGN.md) is gone: a node
		// cut off may still deliver when its slots move.
		c.log.Warn("raft.peer-down-after should be well above the raft heartbeat timeout for fencing to work",
			"peer_down_after", 2*c.fence.lease, "heartbeat_timeout", ht)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f := c.fence
		// While fenced the monitor looks often, so that a node starting
		// up, or back in contact, resumes its deliveries at once.
		const fencedTick = 20 * time.Millisecond
		timer := time.NewTimer(fencedTick)
		defer timer.Stop()
		var (
			lastContact  time.Time
			lastFollower bool // the look that read lastContact was a follower's
			everLifted   bool // at start the fence is up quietly
			dropLogged   bool
		)
		for {
			select {
			case <-c.stop:
				return
			case <-timer.C:
			}
			if f.fenced.Load() {
				timer.Reset(fencedTick)
			} else {
				timer.Reset(fenceTick(f.lease))
			}
			now := time.Now()
			r := c.store.Raft()
			if r.State() == hraft.Leader {
				f.quorumLost.Store(!c.quorumWithinLease(now))
				if term := r.CurrentTerm(); c.barrierTerm.Load() != term {
					// Housekeeping's rebalance does this too; the fence
					// should not wait for it.
					if err := c.termBarrier(term, f.lease); err != nil {
						c.log.Debug("fence: barrier of the new term", "error", err)
					}
				}
			}
			ok, why := c.inLease(now)
			state := r.State()
			if lc := r.LastContact(); state == hraft.Follower && !lastContact.IsZero() && lc.Sub(lastContact) > f.lease {
				// Contact came back before this look, but the gap was
				// longer than the lease: the slots may have moved meanwhile.
				ok, why = false, "no contact with the leader for "+lc.Sub(lastContact).Round(time.Millisecond).String()
				if !lastFollower {
					// The gap spans this node's own leadership
					// (LastContact is a follower's): it was not
					// out of contact, it stopped leading.
					why = "this node stopped leading"
				}
			}
			lastContact, lastFollower = r.LastContact(), state == hraft.Follower
			if !ok {
				if !f.fenced.Swap(true) {
					c.wake()
					if everLifted {
						dropLogged = true
						c.log.Warn("external deliveries stopped: this node has not heard from a quorum within the fencing lease; they resume once it has caught up with the leader",
							"reason", why, "lease", f.lease)
					}
				}
				continue
			}
			if !f.fenced.Load() {
				continue
			}
			if err := c.catchUp(f.lease); err != nil {
				c.log.Debug("fence: catching up with the leader", "error", err)
				continue
			}
			if ok, _ := c.inLease(time.Now()); !ok {
				continue
			}
			f.fenced.Store(false)
			c.wake()
			level := slog.LevelDebug
			if dropLogged {
				level = slog.LevelInfo
			}
			c.log.Log(context.Background(), level, "external deliveries resumed: this node hears from a quorum again and has caught up")
			everLifted, dropLogged = true, false
		}
	}()
}

// catchUp waits until this node has applied what the leader had applied
// when asked: a follower that was cut off may hold a stale slot table, and
// the entry moving its slots away must be applied before it delivers again.
// A leader's log is the cluster's; it has nothing to catch up with.
func (c *Cluster) catchUp(within time.Duration) error {
	if c.store.IsLeader() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	rec, err := c.leaderRecord(ctx)
	if err != nil {
		return err
	}
	if rec.ID == c.id {
		return nil
	}
	var leader NodeStatus
	if err := c.callNode(ctx, rec.ID, rec.RaftAddr, http.MethodGet, "/internal/cluster/status", nil, &leader, false); err != nil {
		return err
	}
	return c.store.WaitApplied(ctx, leader.AppliedIndex)
}

// quorumWithinLease is the leader's own count: itself and every voter
// whose heartbeats have not been failing since before the lease. A failing
// peer keeps being reported at every retry (at least every half heartbeat
// timeout while its link refuses); one not reported for two leases is
// counted heard, so that a lost "resumed" observation (the observer drops
// what it cannot queue) cannot fence a leader for good. A peer whose
// heartbeats hang rather than fail is hashicorp/raft's own lease check's.
func (c *Cluster) quorumWithinLease(now time.Time) bool {
	cf := c.store.Raft().GetConfiguration()
	if cf.Error() != nil {
		return false
	}
	f := c.fence
	f.mu.Lock()
	defer f.mu.Unlock()
	voters, heard := 0, 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage != hraft.Voter {
			continue
		}
		voters++
		p, failing := f.failing[string(s.ID)]
		if string(s.ID) == c.id || !failing || now.Sub(p.lastContact) <= f.lease || now.Sub(p.lastFailure) > 2*f.lease {
			heard++
		}
	}
	return heard > voters/2
}
