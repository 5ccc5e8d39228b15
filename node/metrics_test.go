package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/fanout/webhook/webhooktest"
	"github.com/herald-notify/herald/internal/testnode"
)

// The gauges an operator watches are exported and follow the node: Raft
// role, term and commit index, Badger's sizes, and the delivery queue,
// which holds a webhook delivery while its endpoint fails and empties once
// it answers.
func TestOperatorMetricsExportedAndMove(t *testing.T) {
	r := newDeliveryRig(t, nil)
	n := r.node
	if v := metric(t, n, "herald_raft_leader"); v != 1 {
		t.Errorf("herald_raft_leader %v on a lone node, want 1", v)
	}
	if v := metric(t, n, "herald_raft_state"); v != 2 {
		t.Errorf("herald_raft_state %v on a lone node, want 2 (leader)", v)
	}
	if v := metric(t, n, "herald_raft_term"); v < 1 {
		t.Errorf("herald_raft_term %v, want at least 1", v)
	}
	if v := metric(t, n, "herald_raft_last_contact_seconds"); v != 0 {
		t.Errorf("herald_raft_last_contact_seconds %v on the leader, want 0", v)
	}
	if v := metric(t, n, "herald_badger_memtable_bytes"); v <= 0 {
		t.Errorf("herald_badger_memtable_bytes %v, want the memtable's log counted", v)
	}
	metric(t, n, "herald_badger_lsm_bytes")
	metric(t, n, "herald_badger_table_builders_released_total")
	metric(t, n, "herald_raft_snapshot_index")
	if v := metric(t, n, "herald_raft_log_entries"); v < 1 {
		t.Errorf("herald_raft_log_entries %v, want the entries since the start counted", v)
	}
	if v := metric(t, n, "herald_raft_log_bytes"); v <= 0 {
		t.Errorf("herald_raft_log_bytes %v, want the log's segment counted", v)
	}
	metric(t, n, "herald_badger_vlog_bytes")
	// The node runs in the test's process, whose heap it counts too, and
	// the two are read by two scrapes: the bound allows for what the
	// process frees in between.
	if anon, rss := metric(t, n, "herald_process_resident_anon_bytes"), metric(t, n, "process_resident_memory_bytes"); anon <= 0 || anon > rss+16<<20 {
		t.Errorf("herald_process_resident_anon_bytes %v, want more than 0 and at most the resident %v", anon, rss)
	}
	faults := metric(t, n, "herald_process_minor_page_faults_total")
	if faults <= 0 {
		t.Errorf("herald_process_minor_page_faults_total %v, want the faults of the node's start counted", faults)
	}
	if v := metric(t, n, "herald_delivery_queue"); v != 0 {
		t.Errorf("herald_delivery_queue %v before any delivery, want 0", v)
	}
	// The delivery counters are there at zero before the first delivery,
	// so that an alert on increase() counts it (found by review).
	for _, want := range []string{`herald_delivery_attempts_total{channel="webhook",outcome="failed"} 0`,
		`herald_delivery_unconfigured_total{channel="apns"} 0`} {
		name, _, _ := strings.Cut(want, "{")
		if lines := metricLines(t, n, name); !strings.Contains(lines, want) {
			t.Errorf("before any delivery: want %s among %s", want, lines)
		}
	}
	commit := metric(t, n, "herald_raft_commit_index")

	failing := make([]webhooktest.Answer, 15)
	for i := range failing {
		failing[i] = webhooktest.Answer{Status: http.StatusInternalServerError}
	}
	r.webhook(append(failing, webhooktest.Answer{})...) // the last answer repeats
	r.send(client.Notification{AppNotificationID: "queued", Payload: &client.Payload{RawContent: strings.Repeat("x", 3000)}})

	pollUntil(t, "the commit index to rise with the writes", func() error {
		if v := metric(t, n, "herald_raft_commit_index"); v <= commit {
			return fmt.Errorf("herald_raft_commit_index %v, was %v", v, commit)
		}
		return nil
	})
	pollUntil(t, "the failing webhook delivery to be queued", func() error {
		if v := metric(t, n, "herald_delivery_queue"); v < 1 {
			return fmt.Errorf("herald_delivery_queue %v", v)
		}
		return nil
	})
	pollUntil(t, "the queue to empty once the endpoint answers", func() error {
		if v := metric(t, n, "herald_delivery_queue"); v != 0 {
			return fmt.Errorf("herald_delivery_queue %v (attempts: %s)", v, metricLines(t, n, "herald_delivery_attempts_total"))
		}
		return nil
	})

	// The writes above touched fresh memory (a memtable's log, buffers).
	if v := metric(t, n, "herald_process_minor_page_faults_total"); v <= faults {
		t.Errorf("herald_process_minor_page_faults_total %v after the writes, was %v", v, faults)
	}

	// Closing compacts the memtable into a table (CompactL0OnClose), so the
	// LSM size grows across a restart.
	before := metric(t, n, "herald_badger_lsm_bytes")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := n.Config
	again := testnode.Start(t, &cfg)
	if v := metric(t, again, "herald_badger_lsm_bytes"); v <= before {
		t.Errorf("herald_badger_lsm_bytes %v after a restart that flushed the memtable, was %v", v, before)
	}
}

// metricLines is every sample of a metric, for failure messages.
func metricLines(t *testing.T, n *testnode.Node, name string) string {
	t.Helper()
	resp, err := n.GetMetrics()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

// A write's stages are on /metrics: the leader times each commit and each
// AppendEntries to each follower by name, and every node its own log
// writes and applies, so an operator can tell whose disk holds writes up.
func TestRaftStagesAreTimedOnEveryNode(t *testing.T) {
	ctx := context.Background()
	nodes := startThree(t, nil)
	for _, n := range nodes {
		pollUntil(t, "ready "+n.Config.NodeID, func() error { return readyz(n) })
	}
	leader, followers := leaderAndFollowers(t, nodes)
	// A series with a label exists from its first sample on.
	stage := func(n *testnode.Node, name string) float64 {
		base, labels, _ := strings.Cut(name, "{")
		if labels == "" {
			return metric(t, n, base+"_count")
		}
		line := metricLines(t, n, base+"_count{"+labels+" ")
		if line == "" {
			return 0
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	commits := stage(leader, "herald_raft_commit_seconds")
	appends := map[string]float64{}
	writes, applies := map[string]float64{}, map[string]float64{}
	for _, f := range followers {
		id := f.Config.NodeID
		appends[id] = stage(leader, `herald_raft_replication_seconds{peer="`+id+`"}`)
		writes[id] = stage(f, "herald_raft_log_write_seconds")
		applies[id] = stage(f, "herald_raft_fsm_apply_seconds")
	}
	leaderWrites := stage(leader, "herald_raft_log_write_seconds")

	adminToken := adminTokenOf(t, leader)
	if _, err := clientFor(t, leader, adminToken).CreateApplication(ctx,
		client.NewApplication{DisplayName: "Stages", TargetHostName: "stages.test"}); err != nil {
		t.Fatal(err)
	}
	want := leader.Store().Applied()
	pollUntil(t, "every stage timed", func() error {
		if v := stage(leader, "herald_raft_commit_seconds"); v <= commits {
			return fmt.Errorf("leader's commits timed %v, were %v", v, commits)
		}
		if v := stage(leader, "herald_raft_log_write_seconds"); v <= leaderWrites {
			return fmt.Errorf("leader's log writes timed %v, were %v", v, leaderWrites)
		}
		for _, f := range followers {
			id := f.Config.NodeID
			if v := stage(leader, `herald_raft_replication_seconds{peer="`+id+`"}`); v <= appends[id] {
				return fmt.Errorf("AppendEntries to %s timed %v, were %v", id, v, appends[id])
			}
			if f.Store().Applied() < want {
				return fmt.Errorf("%s has not applied the write yet", id)
			}
			if v := stage(f, "herald_raft_log_write_seconds"); v <= writes[id] {
				return fmt.Errorf("%s's log writes timed %v, were %v", id, v, writes[id])
			}
			if v := stage(f, "herald_raft_fsm_apply_seconds"); v <= applies[id] {
				return fmt.Errorf("%s's applies timed %v, were %v", id, v, applies[id])
			}
		}
		return nil
	})
}
