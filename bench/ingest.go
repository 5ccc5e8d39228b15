package bench

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// ingest: Concurrency application workers POST notifications back to back
// for Duration, worker w to user w%Users through node w%nodes (every node
// of a cluster takes writes; a follower forwards them to the leader).
// It reports notifications/s, the POST→201 latency, and the group commit:
// commands per Raft entry from the nodes' herald_raft_batch_commands.
func ingest(ctx context.Context, e *env, res *Result) error {
	o := e.o
	prog := newProgress(o.Progress, e.rss)
	defer prog.close()
	started := time.Now()
	f, err := liveFixture(ctx, e, prog)
	if err != nil {
		return err
	}
	defer f.cleanup()
	res.SetupSeconds = time.Since(started).Seconds()
	hc := newLoadClient(o.Concurrency)
	defer hc.CloseIdleConnections()
	// One send recorded for the ceiling to answer with.
	status, header, body, err := sample(ctx, hc, e.url(0), f.sendCall(f.users[0], 0, time.Now()), http.StatusCreated)
	if err != nil {
		return fmt.Errorf("a first notification: %w", err)
	}
	if err := measureCeiling(ctx, res, prog, o.Concurrency, o.Duration, "POST requests/s", status, header, body,
		func(ctx context.Context, hc *http.Client, base string, w int, i int64) error {
			_, err := do(ctx, hc, base, f.sendCall(f.users[w%len(f.users)], i, time.Now()), http.StatusCreated)
			return err
		}); err != nil {
		return err
	}
	e.rss.reset(ctx)
	before := scrapeAll(ctx, e)
	prog.phase("ingest")
	profiled := e.profileLoad(ctx, "ingest", o.Duration, res)
	lat, ok, failed, elapsed := closedLoop(ctx, o.Concurrency, o.Duration, prog, func(ctx context.Context, w int, i int64) error {
		_, err := do(ctx, hc, e.url(w), f.sendCall(f.users[w%len(f.users)], i, time.Now()), http.StatusCreated)
		return err
	})
	after := scrapeAll(ctx, e)
	if err := profiled(); err != nil {
		return err
	}
	p := summarize(lat)
	res.Unit, res.LatencyOf = "notifications/s", "POST→201 (acknowledged once durable)"
	res.Rate = float64(ok) / elapsed.Seconds()
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = p.p50, p.p90, p.p99, p.max
	res.Requests, res.Errors = ok+failed, failed
	groupCommit(res, before, after)
	serverCost(res, before, after, ok+failed)
	return nil
}

// sample sends c once and returns Herald's answer, for the ceiling.
func sample(ctx context.Context, hc *http.Client, base string, c call, want int) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, c.method, base+c.path, bytesReader(c.body))
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := readAll(resp.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	if resp.StatusCode != want {
		return 0, nil, nil, &statusError{resp.StatusCode, string(b)}
	}
	return resp.StatusCode, answerHeader(resp.Header), b, nil
}

// groupCommit fills in the batch sizes and apply times of the entries the
// nodes committed between the scrapes (the leader observes them; followers
// observe the batches they forward).
func groupCommit(res *Result, before, after []metrics) {
	var batch histogram
	for i := range before {
		batch = batch.add(histogramDelta(before[i], after[i], "herald_raft_batch_commands"))
	}
	res.BatchEntries = batch.count
	res.BatchMean, res.BatchP50, res.BatchP99 = batch.mean(), batch.quantile(0.5), batch.quantile(0.99)
	res.Batches = batch.buckets()
	res.ApplyMeanMs = seriesMean(before, after, "herald_raft_apply_seconds") * 1000
	res.LogWriteMeanMs = seriesMean(before, after, "herald_raft_log_write_seconds") * 1000
	res.CommitMeanMs = seriesMean(before, after, "herald_raft_commit_seconds") * 1000
	res.ReplicationMeanMs = seriesMean(before, after, "herald_raft_replication_seconds") * 1000
	res.FSMApplyMeanMs = seriesMean(before, after, "herald_raft_fsm_apply_seconds") * 1000
	res.ForwardMean = seriesMean(before, after, "herald_forward_batch_commands")
	for i := range before {
		if d := after[i]["herald_raft_snapshot_index"] - before[i]["herald_raft_snapshot_index"]; d >= res.LogCompacted {
			res.LogCompacted = d
			res.LogEntries = after[i]["herald_raft_log_entries"]
			res.LogMiB = after[i]["herald_raft_log_bytes"] / (1 << 20)
		}
	}
}
