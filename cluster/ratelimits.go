package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/herald-notify/herald/internal/logthrottle"
	"github.com/herald-notify/herald/resource"
)

// Request limits shared by the cluster (DESIGN.md, Request limits shared by
// the cluster). Each node keeps its own token buckets and admits or refuses
// a request on them alone, without asking anyone. Every rateReportEvery it
// tells the other nodes how many requests it admitted per application and
// per user since its last report, and takes what they report from its own
// buckets. The cluster as a whole then admits about what one node would,
// with the slack of one report interval.

const (
	rateLimitsPath = "/internal/cluster/ratelimits"
	// rateReportEvery is how often a node tells the others what it admitted.
	rateReportEvery = 200 * time.Millisecond
	// rateReportTimeout bounds one report; a peer that does not take it in
	// time misses it (its buckets are a little fuller than they should be).
	rateReportTimeout = time.Second
)

// RateReport is what one node admitted since its last report: requests per
// application id and per user id. Ids only, never a token or a name.
type RateReport struct {
	Apps  map[string]int `json:"apps,omitempty"`
	Users map[string]int `json:"users,omitempty"`
}

func (r RateReport) empty() bool { return len(r.Apps) == 0 && len(r.Users) == 0 }

// plus returns r and o added up, in maps of its own.
func (r RateReport) plus(o RateReport) RateReport {
	add := func(a, b map[string]int) map[string]int {
		if len(a)+len(b) == 0 {
			return nil
		}
		out := make(map[string]int, len(a)+len(b))
		maps.Copy(out, a)
		for k, n := range b {
			out[k] += n
		}
		return out
	}
	return RateReport{Apps: add(r.Apps, o.Apps), Users: add(r.Users, o.Users)}
}

// RateLimits are a node's request buckets (httpapi's limiter).
type RateLimits struct {
	// Take returns what the node admitted since the last call, and counts
	// from now on while count is true (there are other nodes to tell).
	Take func(count bool) RateReport
	// Charge takes what another node admitted from the node's buckets,
	// which may fall into debt down to debt bursts.
	Charge func(r RateReport, debt int)
}

// ShareRateLimits has this node report what its buckets admit to the other
// nodes and take what they report. Call it before Start.
func (c *Cluster) ShareRateLimits(l RateLimits) { c.rates.Store(&l) }

// rateSender is the reporting loop's state: per peer, whether a report is
// on its way, and what was admitted meanwhile, sent once it has arrived.
type rateSender struct {
	mu      sync.Mutex
	busy    map[string]bool
	pending map[string]RateReport
	log     *logthrottle.Logger
}

// shareRates reports this node's admissions to the others until Close.
// Without other nodes it only asks the buckets not to count: a lone node
// pays nothing per request.
func (c *Cluster) shareRates() {
	defer c.wg.Done()
	s := &rateSender{busy: map[string]bool{}, pending: map[string]RateReport{}, log: logthrottle.New(c.log, time.Minute)}
	t := time.NewTicker(rateReportEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		l := c.rates.Load()
		if l == nil {
			continue
		}
		peers := c.otherServers()
		c.ratePeers.Store(int32(len(peers)))
		r := l.Take(len(peers) > 0)
		s.send(c, peers, r)
	}
}

// send hands r to every peer: at once to one with no report on its way,
// else added to what it is sent next.
func (s *rateSender) send(c *Cluster, peers map[string]string, r RateReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.pending {
		if _, ok := peers[id]; !ok {
			delete(s.pending, id) // no longer a member
		}
	}
	for id, addr := range peers {
		out := r
		if p, ok := s.pending[id]; ok {
			out = p.plus(r)
		}
		if s.busy[id] {
			if !out.empty() {
				s.pending[id] = out
			}
			continue
		}
		delete(s.pending, id)
		if out.empty() {
			continue
		}
		s.busy[id] = true
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), rateReportTimeout)
			err := c.callNode(ctx, id, addr, http.MethodPost, rateLimitsPath, out, nil, false)
			cancel()
			if err != nil {
				// A peer that is down, cut off or of an earlier version
				// (404) misses the report; the Raft log says a peer is
				// down, so this stays at debug.
				s.log.Fail(logthrottle.Key{Subject: id, Kind: "rate-report"}, slog.LevelDebug,
					"request limits: a report to a peer failed", slog.String("peer", id), slog.String("error", err.Error()))
			}
			s.mu.Lock()
			delete(s.busy, id)
			s.mu.Unlock()
		}()
	}
}

// otherServers maps the other members of the Raft configuration (voters or
// not) to their Raft addresses.
func (c *Cluster) otherServers() map[string]string {
	f := c.store.Raft().GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	out := map[string]string{}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) != c.id {
			out[string(srv.ID)] = string(srv.Address)
		}
	}
	return out
}

// serveRateLimits takes another node's report from this node's buckets.
func (c *Cluster) serveRateLimits(_ context.Context, _ *http.Request, body []byte) (any, error) {
	var r RateReport
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, resource.Errorf(resource.CodeInvalidRequest, "rate report: %v", err)
	}
	if l := c.rates.Load(); l != nil {
		// Debt down to one burst per other node: every node may have
		// spent its full bucket before it heard of the others.
		l.Charge(r, max(int(c.ratePeers.Load()), 1))
	}
	return struct{}{}, nil
}
