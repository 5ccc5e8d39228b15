package raft

import (
	"sync"
	"time"

	metrics "github.com/hashicorp/go-metrics/compat"
	"github.com/prometheus/client_golang/prometheus"
)

// A write waits in three places after Raft takes it: the leader's log write,
// the followers' answers (each writes its own log), and the state machine's
// apply. herald_raft_apply_seconds times the whole; these split it, so that
// an operator can tell a slow disk on this node from a slow follower or a
// slow network, and a benchmark can say which part grew.

// stageBuckets run from 50 µs to about 1.6 s: a log write on an idle disk
// takes a fraction of a millisecond, and one behind a busy disk tens.
var stageBuckets = prometheus.ExponentialBuckets(0.00005, 2, 16)

// timings are one store's own stages, which Herald's code runs.
type timings struct {
	logWrite prometheus.Histogram // each append to this node's Raft log, its fsync included
	fsmApply prometheus.Histogram // each batch of committed entries written to Badger
}

func newTimings() *timings {
	return &timings{
		logWrite: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "herald_raft_log_write_seconds",
			Help:    "Time of each append to this node's Raft log, fsync included (the leader's own entries, a follower's from the leader).",
			Buckets: stageBuckets}),
		fsmApply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "herald_raft_fsm_apply_seconds",
			Help:    "Time of each batch of committed Raft entries written to this node's state (Badger).",
			Buckets: stageBuckets}),
	}
}

func (t *timings) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.logWrite, t.fsmApply}
}

// since observes the time since start in h; a nil h (a store or FSM made
// without timings, in tests) observes nothing.
func since(h prometheus.Histogram, start time.Time) {
	if h != nil {
		h.Observe(time.Since(start).Seconds())
	}
}

// raftSink takes the two stages only hashicorp/raft sees, which it reports
// through go-metrics' process-wide sink: the leader's time from writing an
// entry to its commit by a quorum, and its round trip of each
// AppendEntries to each follower (a pipelined one waits behind those sent
// before it). Everything else raft reports is dropped. A process holds one
// sink, so nodes that share a process (tests) share these histograms; a
// deployed node has a process of its own.
type raftSink struct {
	commit      prometheus.Histogram
	replication *prometheus.HistogramVec
}

var (
	sinkOnce    sync.Once
	sharedStage *raftSink
)

// raftStages installs the sink as go-metrics' global once and returns it.
func raftStages() *raftSink {
	sinkOnce.Do(func() {
		s := &raftSink{
			commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "herald_raft_commit_seconds",
				Help:    "On the leader, time from writing an entry to its log until a quorum holds it (the leader's log write included).",
				Buckets: stageBuckets}),
			replication: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_raft_replication_seconds",
				Help:    "On the leader, round trip of each AppendEntries to a follower, its log write included (queued behind earlier ones when pipelined).",
				Buckets: stageBuckets}, []string{"peer"}),
		}
		cfg := metrics.DefaultConfig("")
		// Without these the sink costs each report a few comparisons:
		// no host name lookups, no runtime sampling goroutine.
		cfg.EnableHostname = false
		cfg.EnableHostnameLabel = false
		cfg.EnableRuntimeMetrics = false
		cfg.EnableServiceLabel = false
		cfg.EnableTypePrefix = false
		if _, err := metrics.NewGlobal(cfg, s); err == nil {
			sharedStage = s
		}
	})
	return sharedStage
}

func (s *raftSink) collectors() []prometheus.Collector {
	if s == nil {
		return nil
	}
	return []prometheus.Collector{s.commit, s.replication}
}

// AddSampleWithLabels takes raft's timers, in milliseconds.
func (s *raftSink) AddSampleWithLabels(key []string, ms float32, labels []metrics.Label) {
	if len(key) < 2 || key[0] != "raft" {
		return
	}
	switch {
	case len(key) == 2 && key[1] == "commitTime":
		s.commit.Observe(float64(ms) / 1000)
	case len(key) == 4 && key[1] == "replication" && key[2] == "appendEntries" && key[3] == "rpc":
		for _, l := range labels {
			if l.Name == "peer_id" {
				s.replication.WithLabelValues(l.Value).Observe(float64(ms) / 1000)
				return
			}
		}
	}
}

func (s *raftSink) AddSample(key []string, ms float32) { s.AddSampleWithLabels(key, ms, nil) }

func (*raftSink) SetGauge([]string, float32)                               {}
func (*raftSink) SetGaugeWithLabels([]string, float32, []metrics.Label)    {}
func (*raftSink) EmitKey([]string, float32)                                {}
func (*raftSink) IncrCounter([]string, float32)                            {}
func (*raftSink) IncrCounterWithLabels([]string, float32, []metrics.Label) {}
