package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// latency: Streams live streams over Users users (stream j is user j%Users's,
// on node j%nodes), then Rate sends a second for Duration, send i to user
// i%Users through node i%nodes, by a pool of Concurrency senders on an
// open-loop schedule. Every stream matches each created event to its send
// by the mark in rawContent and times it from the send's timestamp.
func latency(ctx context.Context, e *env, res *Result) error {
	o := e.o
	prog := newProgress(o.Progress, e.rss)
	defer prog.close()
	sends := int(o.Rate*o.Duration.Seconds()) + 1
	// The fan-out ceiling runs first, while the node is idle, and its
	// streams are closed before the node's open: together they would
	// take the client past the 20,000 files a process may hold here. It
	// runs on this machine, so it is no ceiling for a --server elsewhere.
	if o.Server == "" {
		if err := fanoutCeiling(ctx, e, res, prog, sends); err != nil {
			return err
		}
	}
	started := time.Now()
	f, err := liveFixture(ctx, e, prog)
	if err != nil {
		return err
	}
	defer f.cleanup()
	perUser := streamsPerUser(o.Streams, o.Users)
	t := newTally(sends + 1)
	st := newStreams(o.Transport, o.Streams, e.urls[0], t.event)
	defer st.close()
	if err := st.openAll(ctx, e, f.users, o.Streams, 64, prog); err != nil {
		return err
	}
	res.SetupSeconds = time.Since(started).Seconds()
	res.Streams = o.Streams

	hc := newLoadClient(o.Concurrency)
	defer hc.CloseIdleConnections()
	// The ceiling answers a send as Herald did. The sample has a mark
	// past the run's sends, and its deliveries are left out of the
	// latencies below.
	status, header, body, err := sample(ctx, hc, e.url(0), f.sendCall(f.users[0], int64(sends), time.Now()), http.StatusCreated)
	if err != nil {
		return fmt.Errorf("a first notification: %w", err)
	}
	t.expect(int64(sends), perUser[0])
	if err := measureCeiling(ctx, res, prog, o.Concurrency, o.Duration, "POST requests/s", status, header, body,
		func(ctx context.Context, hc *http.Client, base string, w int, i int64) error {
			_, err := do(ctx, hc, base, f.sendCall(f.users[int(i)%len(f.users)], i, time.Now()), http.StatusCreated)
			return err
		}); err != nil {
		return err
	}
	// What the sample delivered is not the run's.
	t.waitAll(ctx, int64(perUser[0]), 2*time.Second)
	t.forget(int64(sends))
	e.rss.reset(ctx)

	before := scrapeAll(ctx, e)
	prog.phase("latency")
	prog.show(func() string {
		return fmt.Sprintf("received %d  streams %d", t.total.Load(), st.live())
	})
	profiled := e.profileLoad(ctx, "latency", o.Duration, res)
	acks, okN, failed, elapsed := paced(ctx, o.Concurrency, sends, o.Rate, o.Duration, prog, func(ctx context.Context, i int) error {
		u := i % len(f.users)
		_, err := do(ctx, hc, e.url(i), f.sendCall(f.users[u], int64(i), time.Now()), http.StatusCreated)
		if err == nil {
			t.expect(int64(i), perUser[u])
		}
		return err
	})
	expected, _, _ := t.counts()
	t.waitAll(ctx, expected, 10*time.Second)
	after := scrapeAll(ctx, e)
	if err := profiled(); err != nil {
		return err
	}
	groupCommit(res, before, after)
	serverCost(res, before, after, okN+failed)
	expected, received, dups := t.counts()
	p, a := summarize(t.latencies()), summarize(acks)
	res.Unit, res.LatencyOf = "deliveries/s", "publish→receipt on the stream"
	res.Rate = float64(received) / elapsed.Seconds()
	res.SendRate = float64(okN) / elapsed.Seconds()
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = p.p50, p.p90, p.p99, p.max
	res.AckP50Ms, res.AckP99Ms = a.p50, a.p99
	res.Requests, res.Errors = okN+failed, failed+t.unmatched.Load()
	res.Expected, res.Received, res.Duplicates = expected, received, dups
	if live := st.live(); live < int64(o.Streams) {
		res.Errors += int64(o.Streams) - live
	}
	return nil
}

// streamsPerUser is how many of n streams, dealt round robin, user i has.
func streamsPerUser(n, users int) []int {
	out := make([]int, users)
	for j := range n {
		out[j%users]++
	}
	return out
}

// paced makes up to n calls at rate per second on a schedule fixed in
// advance (open loop: a slow answer delays no later send's schedule, only,
// once every worker is busy, its start), and returns the calls' latencies.
// It issues no call after d: a server that cannot keep the rate gets
// fewer calls, and the achieved rate says so.
func paced(ctx context.Context, workers, n int, rate float64, d time.Duration, prog *progress, fn func(ctx context.Context, i int) error) (lat []time.Duration, ok, failed int64, elapsed time.Duration) {
	jobs := make(chan int, workers)
	var okN, badN atomic.Int64
	shards := make([]shard, workers)
	var wg sync.WaitGroup
	prog.track(&okN, &badN)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				t := time.Now()
				if err := fn(ctx, i); err != nil {
					badN.Add(1)
					prog.fail(err)
					continue
				}
				shards[w].d = append(shards[w].d, time.Since(t))
				okN.Add(1)
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; i < n && ctx.Err() == nil && time.Since(start) < d; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > time.Millisecond {
			time.Sleep(d)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed = time.Since(start)
	prog.untrack()
	for _, s := range shards {
		lat = append(lat, s.d...)
	}
	return lat, okN.Load(), badN.Load(), elapsed
}

// conns: Streams idle streams over Users users from several loopback
// source addresses; the node's resident memory before and after gives the
// memory per stream. Then one notification to each user proves every
// stream still receives.
func conns(ctx context.Context, e *env, res *Result) error {
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
	perUser := streamsPerUser(o.Streams, o.Users)
	t := newTally(o.Users + 1)
	st := newStreams(o.Transport, o.Streams, e.urls[0], t.event)
	defer st.close()

	// The ceiling: the same stream request answered with the stream's
	// first bytes by a bare handler, which then ends it.
	streamCall := func(u *benchUser) call {
		return call{method: http.MethodGet, path: "/v1.0/me/notifications/stream",
			header: http.Header{"Authorization": {"Bearer " + u.token}, "Accept": {"text/event-stream"}}}
	}
	if err := measureCeiling(ctx, res, prog, o.Concurrency, min(o.Duration, 3*time.Second), "stream requests/s", http.StatusOK,
		http.Header{"Content-Type": {"text/event-stream"}, "Cache-Control": {"no-cache"}}, []byte("retry: 2000\n: connected\n\n"),
		func(ctx context.Context, hc *http.Client, base string, w int, i int64) error {
			_, err := do(ctx, hc, base, streamCall(f.users[int(i)%len(f.users)]), http.StatusOK)
			return err
		}); err != nil {
		return err
	}

	e.rss.reset(ctx)
	before := e.rss.now()
	opened := time.Now()
	if err := st.openAll(ctx, e, f.users, o.Streams, o.Concurrency, prog); err != nil {
		return err
	}
	res.OpenedSeconds = time.Since(opened).Seconds()
	res.Rate = float64(o.Streams) / res.OpenedSeconds
	res.Streams = o.Streams
	// Let the node settle (its last accepts and their goroutines) before
	// its memory is read: until it reports every stream open.
	waitOpenStreams(ctx, e, int64(o.Streams), 30*time.Second)
	e.rss.sample(ctx)
	afterMiB := e.rss.now()
	res.BytesPerStream = (afterMiB - before) * (1 << 20) / float64(o.Streams)
	if err := e.profileNow(ctx, "conns", res); err != nil {
		return err
	}

	prog.phase("notify")
	prog.show(func() string { return fmt.Sprintf("received %d of %d", t.total.Load(), o.Streams) })
	hc := newLoadClient(o.Concurrency)
	defer hc.CloseIdleConnections()
	var failed atomic.Int64
	parallel(ctx, o.Users, o.Concurrency, func(i int) error {
		_, err := do(ctx, hc, e.url(i), f.sendCall(f.users[i], int64(i), time.Now()), http.StatusCreated)
		if err != nil {
			failed.Add(1)
			prog.fail(err)
			return nil
		}
		t.expect(int64(i), perUser[i])
		return nil
	})
	t.waitAll(ctx, int64(o.Streams), 15*time.Second)
	_, received, dups := t.counts()
	p := summarize(t.latencies())
	res.Unit, res.LatencyOf = "streams opened/s", "publish→receipt of the last notification"
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = p.p50, p.p90, p.p99, p.max
	res.Requests = int64(o.Streams + o.Users)
	res.Errors = failed.Load() + t.unmatched.Load()
	// Expected counts every stream, acknowledged send or not: a failed
	// send leaves its user's streams short, as it should.
	res.Expected, res.Received, res.Duplicates = int64(o.Streams), received, dups
	return nil
}

// waitOpenStreams waits until the nodes together report n open streams.
func waitOpenStreams(ctx context.Context, e *env, n int64, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var open float64
		for _, m := range scrapeAll(ctx, e) {
			open += m["herald_open_streams"]
		}
		if int64(open) >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
