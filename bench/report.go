package bench

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the result as a two-column table.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(f, a...)) }
	where := "a node of its own"
	if r.Nodes > 1 {
		where = fmt.Sprintf("%d nodes of its own, load through every node", r.Nodes)
	}
	if r.Server != "self" {
		where = r.Server
	}
	title := r.Scenario
	if r.Transport != "" {
		title += " (" + r.Transport + ")"
	}
	row("scenario", "%s against %s; %d clients, %d users, %.0fs", title, where, r.Concurrency, r.Users, r.DurationS)
	row("rate", "%s %s", num(r.Rate), r.Unit)
	row("ceiling", "%s %s (bare net/http handler, same client; p50 %.2f ms, p99 %.2f ms)", num(r.CeilingRate), r.CeilingUnit, r.CeilingP50Ms, r.CeilingP99Ms)
	if r.CeilingRate > 0 && r.Unit == "notifications/s" {
		row("of ceiling", "%.2f ×", r.Rate/r.CeilingRate)
	}
	row("latency", "p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ms: %s", r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs, r.LatencyOf)
	if r.CeilingExpected > 0 || r.CeilingErrors > 0 {
		cpu := ""
		if r.CeilingCPUUsPerRequest > 0 {
			cpu = fmt.Sprintf(", %.0f µs of its CPU a send", r.CeilingCPUUsPerRequest)
		}
		row("ceiling latency", "p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ms (bare fan-out server, nothing stored; %s sends/s, %d of %d received, %d errors%s)",
			r.CeilingLatencyP50Ms, r.CeilingLatencyP90Ms, r.CeilingLatencyP99Ms, r.CeilingLatencyMaxMs, num(r.CeilingSendRate), r.CeilingReceived, r.CeilingExpected, r.CeilingErrors, cpu)
	}
	if r.SendRate > 0 {
		row("sends", "%s/s; POST→201 p50 %.2f ms, p99 %.2f ms", num(r.SendRate), r.AckP50Ms, r.AckP99Ms)
	}
	if r.Expected > 0 || r.Scenario == "latency" || r.Scenario == "conns" {
		row("received", "%d of %d expected (%d duplicates)", r.Received, r.Expected, r.Duplicates)
	}
	if r.Streams > 0 {
		row("streams", "%d", r.Streams)
	}
	if r.BytesPerStream != 0 {
		row("per stream", "%.1f KiB resident (node's growth over the open streams)", r.BytesPerStream/1024)
	}
	if r.BatchEntries > 0 {
		var b []string
		for _, k := range r.Batches {
			if k.Le < 0 {
				b = append(b, fmt.Sprintf(">%g:%.0f", k.Gt, k.Count))
			} else {
				b = append(b, fmt.Sprintf("≤%g:%.0f", k.Le, k.Count))
			}
		}
		row("group commit", "%.1f commands per Raft entry (p50 ≤%g, p99 ≤%g) over %.0f entries; apply %.2f ms mean",
			r.BatchMean, r.BatchP50, r.BatchP99, r.BatchEntries, r.ApplyMeanMs)
		row("batch sizes", "%s", strings.Join(b, " "))
		row("raft stages", "log write %.2f ms, commit %.2f ms, AppendEntries %.2f ms, state write %.2f ms (means)",
			r.LogWriteMeanMs, r.CommitMeanMs, r.ReplicationMeanMs, r.FSMApplyMeanMs)
		if r.ForwardMean > 0 {
			row("forwarded", "%.1f commands per forwarded batch", r.ForwardMean)
		}
		row("raft log", "%.0f entries compacted into snapshots during the load; after it %.0f entries, %.1f MiB",
			r.LogCompacted, r.LogEntries, r.LogMiB)
	}
	if r.DeltaRate > 0 {
		row("deltas", "%s pages/s; p50 %.2f  p99 %.2f  max %.2f ms", num(r.DeltaRate), r.DeltaP50Ms, r.DeltaP99Ms, r.DeltaMaxMs)
	}
	if r.PageBytes > 0 {
		row("page", "%d bytes", r.PageBytes)
	}
	if r.Decrypted > 0 {
		row("decrypted", "%d messages", r.Decrypted)
	}
	row("requests", "%d, errors %d", r.Requests, r.Errors)
	if r.CPUUsPerRequest > 0 {
		row("server CPU", "%.0f µs per request (the nodes' CPU time over the load)", r.CPUUsPerRequest)
	}
	if r.FaultsPerRequest > 0 {
		row("page faults", "%.2f per request (fresh memory the nodes touched)", r.FaultsPerRequest)
	}
	mem := fmt.Sprintf("peak %.1f MiB during the load, %.1f MiB idle", r.RSSMiB, r.RSSIdleMiB)
	if len(r.RSSNodesMiB) > 1 {
		mem += fmt.Sprintf(" (peaks per node %.1f)", r.RSSNodesMiB)
	}
	if r.RSSAnonMiB > 0 {
		mem += fmt.Sprintf("; without mapped files %.1f MiB at most", r.RSSAnonMiB)
	}
	row("server rss", "%s", mem)
	row("setup", "%.1fs", r.SetupSeconds)
	if len(r.Profiles) > 0 {
		row("profiles", "%d files in %s (go tool pprof FILE.pprof, go tool trace FILE.trace)", len(r.Profiles), filepath.Dir(r.Profiles[0]))
	}
	return tw.Flush()
}

// num writes a rate with thousands separators.
func num(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
