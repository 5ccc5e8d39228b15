package cluster

import (
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// peerHealth is the leader's view of which voters answer its heartbeats.
// A voter that stays silent for PeerDownAfter loses its slots to the others
// (rebalance), so its users' deliveries continue without an admin removing
// it; the grace period keeps a blip from moving slots back and forth.
type peerHealth struct {
	grace time.Duration

	mu sync.Mutex
	// failing maps a peer to the first failed heartbeat of its current run
	// of failures; a peer leaves it at its first successful heartbeat.
	failing map[string]time.Time
	// heard maps a failing peer to when the leader last heard from it, as
	// Raft reports with the failure (before the first one was noticed).
	heard map[string]time.Time
}

// down lists the peers whose heartbeats have failed for at least the grace
// period.
func (h *peerHealth) down(now time.Time) map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]bool{}
	for id, since := range h.failing {
		if now.Sub(since) >= h.grace {
			out[id] = true
		}
	}
	return out
}

// failingSince is when the leader last heard from a peer whose heartbeats
// are failing: as Raft reported with the first failure, or else when that
// failure came.
func (h *peerHealth) failingSince(id string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.failing[id]
	if heard, known := h.heard[id]; ok && known && heard.Before(t) {
		t = heard
	}
	return t, ok
}

// forget drops what is known of peers no longer voters: a removed peer's
// replication stops without a "resumed", and a stale entry would count it
// down at once if it were added back.
func (h *peerHealth) forget(voters []string) {
	keep := map[string]bool{}
	for _, id := range voters {
		keep[id] = true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for id := range h.failing {
		if !keep[id] {
			delete(h.failing, id)
			delete(h.heard, id)
		}
	}
}

// observe follows leader changes and the leader's heartbeats to its peers.
// It keeps two views of them: peerHealth, which wakes the node (Changes) on
// every leader change, when a peer has been failing for the grace period,
// and when it answers again; and the fence's, which records when each
// failing peer last answered (fence.go). Only a leader heartbeats, so only
// a leader sees heartbeat failures; a leader change clears both, since the
// new leader's replication reports afresh.
func (c *Cluster) observe() {
	ch := make(chan hraft.Observation, 256)
	obs := hraft.NewObserver(ch, false, func(o *hraft.Observation) bool {
		switch o.Data.(type) {
		case hraft.FailedHeartbeatObservation, hraft.ResumedHeartbeatObservation, hraft.LeaderObservation:
			return true
		}
		return false
	})
	r := c.store.Raft()
	r.RegisterObserver(obs)
	h, f := c.health, c.fence
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer r.DeregisterObserver(obs)
		for {
			select {
			case <-c.stop:
				return
			case o := <-ch:
				f.observe(o)
				h.mu.Lock()
				switch d := o.Data.(type) {
				case hraft.FailedHeartbeatObservation:
					if _, ok := h.failing[string(d.PeerID)]; !ok {
						h.failing[string(d.PeerID)] = time.Now()
						if !d.LastContact.IsZero() {
							if h.heard == nil {
								h.heard = map[string]time.Time{}
							}
							h.heard[string(d.PeerID)] = d.LastContact
						}
						// Look again once the grace period is over; a
						// "resumed" before then makes that look a no-op.
						time.AfterFunc(h.grace, c.wake)
					}
				case hraft.ResumedHeartbeatObservation:
					if _, ok := h.failing[string(d.PeerID)]; ok {
						delete(h.failing, string(d.PeerID))
						delete(h.heard, string(d.PeerID))
						c.wake()
					}
				case hraft.LeaderObservation:
					clear(h.failing)
					clear(h.heard)
					c.wake()
				}
				h.mu.Unlock()
			}
		}
	}()
}

// peerCollector exports the leader's view of its peers: one series per
// other voter while this node leads, none otherwise (only a leader sends
// heartbeats, so only it knows).
type peerCollector struct{ c *Cluster }

var (
	peerAnsweringDesc = prometheus.NewDesc("herald_cluster_peer_answering",
		"1 while the leader's heartbeats to the peer succeed, 0 while they fail; exported by the leader only.",
		[]string{"peer"}, nil)
	peerSilentDesc = prometheus.NewDesc("herald_cluster_peer_silent_seconds",
		"While the leader's heartbeats to the peer fail, how long since the leader last heard from it (0 while it answers); exported by the leader only.",
		[]string{"peer"}, nil)
)

func (p peerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- peerAnsweringDesc
	ch <- peerSilentDesc
}

func (p peerCollector) Collect(ch chan<- prometheus.Metric) {
	r := p.c.store.Raft()
	if r.State() != hraft.Leader {
		return
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return
	}
	now := time.Now()
	for _, s := range f.Configuration().Servers {
		id := string(s.ID)
		if id == p.c.id || s.Suffrage != hraft.Voter {
			continue
		}
		answering, silent := 1.0, 0.0
		if since, ok := p.c.health.failingSince(id); ok {
			answering, silent = 0, now.Sub(since).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(peerAnsweringDesc, prometheus.GaugeValue, answering, id)
		ch <- prometheus.MustNewConstMetric(peerSilentDesc, prometheus.GaugeValue, silent, id)
	}
}

// PeerMetrics is the leader's view of its peers, for the node's registry:
// a peer down shows there, not only as its own missing scrape.
func (c *Cluster) PeerMetrics() prometheus.Collector { return peerCollector{c} }
