package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// newLoadClient is the client of every measured request, Herald's and the
// ceiling's alike: keep-alive, one connection per worker, no compression.
func newLoadClient(workers int) *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConns: workers * 2, MaxIdleConnsPerHost: workers * 2, DisableCompression: true,
		IdleConnTimeout: time.Minute,
	}}
}

// recorder collects latencies from many goroutines.
type recorder struct {
	mu  sync.Mutex
	d   []time.Duration
	ok  atomic.Int64
	bad atomic.Int64
}

func (r *recorder) add(d time.Duration) {
	r.ok.Add(1)
	r.mu.Lock()
	r.d = append(r.d, d)
	r.mu.Unlock()
}

// shard is one worker's latencies, merged at the end: no lock per request.
type shard struct{ d []time.Duration }

type percentiles struct{ p50, p90, p99, max float64 } // milliseconds

func summarize(d []time.Duration) percentiles {
	if len(d) == 0 {
		return percentiles{}
	}
	d = slices.Clone(d)
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(q * float64(len(d)))
		if i >= len(d) {
			i = len(d) - 1
		}
		return ms(d[i])
	}
	return percentiles{at(0.50), at(0.90), at(0.99), ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// closedLoop runs workers that each call do back to back for d, and
// returns every successful call's latency and the failures. A call is
// never cut off at the end (the server might still carry it out, uncounted):
// workers start none after d, and let the last ones finish.
func closedLoop(ctx context.Context, workers int, d time.Duration, prog *progress,
	do func(ctx context.Context, worker int, i int64) error) (lat []time.Duration, ok, failed int64, elapsed time.Duration) {
	shards := make([]shard, workers)
	var okN, badN, seq atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	prog.track(&okN, &badN)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(end) {
				t := time.Now()
				err := do(ctx, w, seq.Add(1))
				if errors.Is(err, errStop) || ctx.Err() != nil {
					return
				}
				if err != nil {
					badN.Add(1)
					prog.fail(err)
					continue
				}
				shards[w].d = append(shards[w].d, time.Since(t))
				okN.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed = time.Since(start)
	prog.untrack()
	for _, s := range shards {
		lat = append(lat, s.d...)
	}
	return lat, okN.Load(), badN.Load(), elapsed
}

// errStop from a closedLoop call: the run is over before the call began.
var errStop = errors.New("stopped")

// call is one request of a scenario, against Herald or against the ceiling.
type call struct {
	method, path string
	header       http.Header
	body         []byte
}

// statusError is an answer other than the one the scenario wants.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %.200s", e.status, e.body) }

// do sends c to base and reads the whole answer; want is the status that
// counts as success.
func do(ctx context.Context, hc *http.Client, base string, c call, want int) ([]byte, error) {
	return doInto(ctx, hc, base, c, want, nil)
}

// doInto is do reading the answer into buf's space, which it returns:
// for a scenario that reads large answers many times over.
func doInto(ctx context.Context, hc *http.Client, base string, c call, want int, buf []byte) ([]byte, error) {
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, base+c.path, body)
	if err != nil {
		return buf, err
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return buf, err
	}
	defer resp.Body.Close()
	w := bytes.NewBuffer(buf[:0])
	if _, err := w.ReadFrom(resp.Body); err != nil {
		return w.Bytes(), err
	}
	if resp.StatusCode != want {
		return w.Bytes(), &statusError{resp.StatusCode, w.String()}
	}
	return w.Bytes(), nil
}

// ceilingServer answers every request with the status, headers and body
// Herald gave to the same request (recorded once), after reading the
// request body whole: the least any server must do for it, on this
// machine, in the same run.
type ceilingServer struct {
	srv *http.Server
	url string
}

func startCeiling(status int, header http.Header, body []byte) (*ceilingServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		w.Write(body)
	})
	c := &ceilingServer{srv: &http.Server{Handler: h}, url: "http://" + l.Addr().String()}
	go c.srv.Serve(l)
	return c, nil
}

func (c *ceilingServer) close() { c.srv.Close() }

// answerHeader keeps the headers of an answer that a client would notice
// in its size: the ceiling sends the same ones.
func answerHeader(h http.Header) http.Header {
	out := http.Header{}
	for _, k := range []string{"Content-Type", "Location", "Request-Id", "Cache-Control", "Odata-Version"} {
		if v, ok := h[k]; ok {
			out[k] = v
		}
	}
	return out
}

// measureCeiling runs the scenario's request against a bare handler for
// min(d, 10s) with the same client and workers, and fills in the result's
// ceiling.
func measureCeiling(ctx context.Context, res *Result, prog *progress, workers int, d time.Duration, unit string,
	status int, header http.Header, body []byte, request func(ctx context.Context, hc *http.Client, base string, worker int, i int64) error) error {
	cs, err := startCeiling(status, header, body)
	if err != nil {
		return err
	}
	defer cs.close()
	hc := newLoadClient(workers)
	defer hc.CloseIdleConnections()
	d = min(d, 10*time.Second)
	prog.phase("ceiling")
	lat, ok, _, elapsed := closedLoop(ctx, workers, d, prog, func(ctx context.Context, w int, i int64) error {
		return request(ctx, hc, cs.url, w, i)
	})
	p := summarize(lat)
	res.CeilingRate = float64(ok) / elapsed.Seconds()
	res.CeilingUnit = unit
	res.CeilingP50Ms, res.CeilingP99Ms = p.p50, p.p99
	return nil
}

// progress prints a line a second while a phase runs.
type progress struct {
	w     io.Writer
	rss   *rssWatch
	start time.Time
	mu    sync.Mutex
	name  string
	ok    *atomic.Int64
	bad   *atomic.Int64
	extra func() string
	last  int64
	err   string
	done  chan struct{}
	ended chan struct{}
}

func newProgress(w io.Writer, rss *rssWatch) *progress {
	p := &progress{w: w, rss: rss, done: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(p.ended)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				p.print()
			}
		}
	}()
	return p
}

func (p *progress) phase(name string) {
	p.mu.Lock()
	p.name, p.start, p.ok, p.bad, p.extra, p.last, p.err = name, time.Now(), nil, nil, nil, 0, ""
	p.mu.Unlock()
}

func (p *progress) track(ok, bad *atomic.Int64) {
	p.mu.Lock()
	p.ok, p.bad, p.last = ok, bad, 0
	p.mu.Unlock()
}

func (p *progress) untrack() {
	p.mu.Lock()
	p.ok, p.bad = nil, nil
	p.mu.Unlock()
}

func (p *progress) show(extra func() string) {
	p.mu.Lock()
	p.extra = extra
	p.mu.Unlock()
}

func (p *progress) fail(err error) {
	p.mu.Lock()
	p.err = err.Error()
	p.mu.Unlock()
}

func (p *progress) print() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.name == "" {
		return
	}
	line := fmt.Sprintf("%-10s %5.0fs", p.name, time.Since(p.start).Seconds())
	if p.ok != nil {
		n := p.ok.Load()
		line += fmt.Sprintf("  %8d/s  errors %d", n-p.last, p.bad.Load())
		p.last = n
	}
	if p.extra != nil {
		line += "  " + p.extra()
	}
	if p.rss != nil {
		line += fmt.Sprintf("  rss %.0f MiB", p.rss.now())
	}
	if p.err != "" {
		line += "  last error: " + p.err
		p.err = ""
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) close() {
	close(p.done)
	<-p.ended
}

func bytesReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }
