package raft

import (
	"testing"
	"time"

	metrics "github.com/hashicorp/go-metrics/compat"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// histogramOf is what o has observed so far.
func histogramOf(t *testing.T, o prometheus.Observer) *dto.Histogram {
	t.Helper()
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram()
}

// The sink takes raft's commit and replication timers, through go-metrics'
// global as raft reports them, and nothing else raft reports.
func TestRaftStagesTakeCommitAndReplicationTimers(t *testing.T) {
	s := raftStages()
	if s == nil {
		t.Fatal("the sink was not installed")
	}
	before := histogramOf(t, s.commit)
	peer := s.replication.WithLabelValues("stage-test-peer")
	appends := histogramOf(t, peer).GetSampleCount()

	start := time.Now().Add(-3 * time.Millisecond)
	metrics.MeasureSince([]string{"raft", "commitTime"}, start)
	metrics.MeasureSinceWithLabels([]string{"raft", "replication", "appendEntries", "rpc"}, start,
		[]metrics.Label{{Name: "peer_id", Value: "stage-test-peer"}})
	// Others of raft's timers, and one without its peer, go nowhere.
	metrics.MeasureSince([]string{"raft", "leader", "dispatchLog"}, start)
	metrics.MeasureSince([]string{"raft", "replication", "appendEntries", "rpc", "stage-test-peer"}, start)
	metrics.MeasureSinceWithLabels([]string{"raft", "replication", "appendEntries", "rpc"}, start, nil)

	after := histogramOf(t, s.commit)
	if got := after.GetSampleCount() - before.GetSampleCount(); got != 1 {
		t.Errorf("commit timer: %d samples, want 1", got)
	}
	if got := histogramOf(t, peer).GetSampleCount() - appends; got != 1 {
		t.Errorf("replication timer for the peer: %d samples, want 1", got)
	}
	// Raft reports milliseconds; the histogram holds seconds.
	if got := after.GetSampleSum() - before.GetSampleSum(); got < 0.003 || got > 1 {
		t.Errorf("a 3 ms commit added %v to the sum, want it in seconds", got)
	}
}
