// Package bench is `herald bench SCENARIO`: it starts its own Herald nodes
// (or uses --server), sets up users, an application and subscriptions
// through the public API, drives one scenario's load, and reports what it
// measured beside the ceiling of the same run: the same client against a
// bare net/http handler that answers the same request (and, for latency,
// a bare fan-out server at the same load: fanout.go).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/herald-notify/herald/client"
)

// Scenarios are the names Run takes.
var Scenarios = []string{"ingest", "latency", "conns", "feed", "webpush", "webhook"}

// Options of a run. Zero values take the scenario's defaults (Defaults).
type Options struct {
	Scenario string
	// Server is a running server's URL; empty starts Cluster nodes of our
	// own. With Server, Token or Username and Password are an admin's.
	Server                    string
	Token, Username, Password string
	Cluster                   int

	Duration    time.Duration
	Concurrency int
	Users       int
	Streams     int
	Rate        float64 // sends per second (latency)
	Transport   string  // sse or ws (latency, conns)
	// Notifications is each feed user's stored notifications.
	Notifications int
	// Subscriptions is the delivery endpoints of webpush and webhook.
	Subscriptions int

	// Profile is a directory for Go's profiles of the nodes the bench
	// starts, taken over the load (profile.go); empty: none.
	Profile string

	// Exe and ExeEnv run `herald serve` for the nodes the bench starts:
	// the running binary unless set (tests run their own test binary).
	Exe    string
	ExeEnv []string
	// Progress receives a line a second while the load runs.
	Progress io.Writer
}

// Defaults fills in what o leaves zero: sizes that finish in seconds on a
// laptop. The sizes are given explicitly (BENCHMARKS.md).
func (o *Options) Defaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Cluster == 0 {
		o.Cluster = 1
	}
	if o.Transport == "" {
		o.Transport = "sse"
	}
	def(&o.Concurrency, 64)
	switch o.Scenario {
	case "ingest":
		def(&o.Users, 1)
	case "latency":
		def(&o.Users, 200)
		def(&o.Streams, 1000)
		if o.Rate == 0 {
			o.Rate = 500
		}
	case "conns":
		def(&o.Users, 100)
		def(&o.Streams, 1000)
	case "feed":
		def(&o.Users, 1)
		def(&o.Notifications, 1000)
	case "webpush", "webhook":
		def(&o.Users, 1)
		def(&o.Subscriptions, 100)
		if o.Concurrency == 64 {
			// A sender posts while deliveries queue; more senders
			// only deepen the queue the engine works through.
			o.Concurrency = 8
		}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

func (o *Options) check() error {
	known := false
	for _, s := range Scenarios {
		known = known || s == o.Scenario
	}
	switch {
	case !known:
		return fmt.Errorf("unknown scenario %q: one of %s", o.Scenario, strings.Join(Scenarios, ", "))
	case o.Cluster != 1 && o.Cluster != 3:
		return errors.New("--cluster is 1 or 3")
	case o.Cluster == 3 && o.Scenario != "ingest" && o.Scenario != "latency":
		return errors.New("--cluster 3 is for ingest and latency")
	case o.Cluster == 3 && o.Server != "":
		return errors.New("--cluster starts its own nodes; it does not go with --server")
	case o.Profile != "" && o.Server != "":
		return errors.New("--profile profiles the nodes the bench starts; it does not go with --server (a node of yours serves them with --profiling)")
	case o.Transport != "sse" && o.Transport != "ws":
		return errors.New("--transport is sse or ws")
	case o.Duration <= 0 || o.Concurrency < 1 || o.Users < 1:
		return errors.New("--duration, --concurrency and --users must be positive")
	case (o.Scenario == "latency" || o.Scenario == "conns") && o.Streams < o.Users:
		return errors.New("--streams must be at least --users: every user has a stream")
	case o.Scenario == "latency" && o.Rate <= 0:
		return errors.New("--rate must be positive")
	case o.Scenario == "feed" && o.Notifications < 1:
		return errors.New("--notifications must be at least 1")
	case (o.Scenario == "webpush" || o.Scenario == "webhook") && o.Subscriptions < 1:
		return errors.New("--subscriptions must be at least 1")
	}
	return nil
}

// Result is what a run measured; its JSON is the last line of --json.
type Result struct {
	Scenario    string  `json:"scenario"`
	Server      string  `json:"server"` // "self" or the --server URL
	Nodes       int     `json:"nodes"`
	Transport   string  `json:"transport,omitempty"`
	DurationS   float64 `json:"durationS"`
	Concurrency int     `json:"concurrency"`
	Users       int     `json:"users"`
	// Unit says what Rate counts.
	Unit string  `json:"unit"`
	Rate float64 `json:"rate"`
	// CeilingRate is requests/s of a bare net/http handler answering the
	// scenario's request with the same bytes, same client, same
	// concurrency; CeilingUnit says which request.
	CeilingRate  float64 `json:"ceilingRate"`
	CeilingUnit  string  `json:"ceilingUnit"`
	CeilingP50Ms float64 `json:"ceilingP50Ms"`
	CeilingP99Ms float64 `json:"ceilingP99Ms"`
	// The latency scenario's second ceiling (fanout.go): publish→receipt
	// through a bare fan-out server that stores nothing, at the same load
	// with the same client; the sends it kept up and the deliveries.
	CeilingLatencyP50Ms float64 `json:"ceilingLatencyP50Ms,omitempty"`
	CeilingLatencyP90Ms float64 `json:"ceilingLatencyP90Ms,omitempty"`
	CeilingLatencyP99Ms float64 `json:"ceilingLatencyP99Ms,omitempty"`
	CeilingLatencyMaxMs float64 `json:"ceilingLatencyMaxMs,omitempty"`
	CeilingSendRate     float64 `json:"ceilingSendRate,omitempty"`
	// CeilingCPUUsPerRequest is the fan-out server's CPU time per send
	// over its load (Linux), beside the nodes' CPUUsPerRequest.
	CeilingCPUUsPerRequest float64 `json:"ceilingCpuUsPerRequest,omitempty"`
	CeilingExpected        int64   `json:"ceilingExpected,omitempty"`
	CeilingReceived        int64   `json:"ceilingReceived,omitempty"`
	// CeilingErrors are the fan-out server's failed sends, unmatched and
	// duplicate events, and streams that ended during its run.
	CeilingErrors int64 `json:"ceilingErrors"`
	// LatencyOf says what P50Ms..MaxMs time.
	LatencyOf string  `json:"latencyOf"`
	P50Ms     float64 `json:"p50Ms"`
	P90Ms     float64 `json:"p90Ms"`
	P99Ms     float64 `json:"p99Ms"`
	MaxMs     float64 `json:"maxMs"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	Expected  int64   `json:"expected"`
	Received  int64   `json:"received"`
	// Duplicates are deliveries received more than once (at-least-once
	// delivery allows them; they do not count as received).
	Duplicates int64 `json:"duplicates,omitempty"`

	Streams        int     `json:"streams"`
	BytesPerStream float64 `json:"bytesPerStream"`
	// RSSMiB is the largest resident memory of a node seen during the
	// load; RSSIdleMiB before any setup, the least over three seconds
	// after the start (settled); RSSNodesMiB the peak per node.
	RSSMiB      float64   `json:"rssMiB"`
	RSSIdleMiB  float64   `json:"rssIdleMiB"`
	RSSNodesMiB []float64 `json:"rssNodesMiB,omitempty"`
	// RSSAnonMiB is the peak of the part no file backs (heap and stacks,
	// without Badger's mapped tables), on Linux.
	RSSAnonMiB float64 `json:"rssAnonMiB,omitempty"`

	// Sends of latency; AckP50Ms and AckP99Ms time their POSTs.
	SendRate float64 `json:"sendRate,omitempty"`
	AckP50Ms float64 `json:"ackP50Ms,omitempty"`
	AckP99Ms float64 `json:"ackP99Ms,omitempty"`
	// Group commit: commands per Raft entry, from the leader's
	// herald_raft_batch_commands histogram over the load.
	BatchEntries float64  `json:"batchEntries,omitempty"`
	BatchMean    float64  `json:"batchMean,omitempty"`
	BatchP50     float64  `json:"batchP50,omitempty"`
	BatchP99     float64  `json:"batchP99,omitempty"`
	Batches      []bucket `json:"batches,omitempty"`
	ApplyMeanMs  float64  `json:"applyMeanMs,omitempty"`
	// Where an entry's apply time went, means over the load: the nodes'
	// log writes (an fsync each), the leader's time from its log write to
	// a quorum, its AppendEntries round trips to the followers, and the
	// nodes' writes of committed entries to Badger.
	LogWriteMeanMs    float64 `json:"logWriteMeanMs,omitempty"`
	CommitMeanMs      float64 `json:"commitMeanMs,omitempty"`
	ReplicationMeanMs float64 `json:"replicationMeanMs,omitempty"`
	FSMApplyMeanMs    float64 `json:"fsmApplyMeanMs,omitempty"`
	// CPUUsPerRequest is the nodes' CPU time over the load (their
	// process_cpu_seconds_total) per request: what the server spends on
	// one (a send, with its deliveries in latency; a page in feed),
	// steadier from run to run than a rate that shares two cores with the
	// load client.
	CPUUsPerRequest float64 `json:"cpuUsPerRequest,omitempty"`
	// FaultsPerRequest is the nodes' minor page faults over the load per
	// request (herald_process_minor_page_faults_total): fresh memory and
	// new mapped files touched, which some virtual machines charge
	// several microseconds each.
	FaultsPerRequest float64 `json:"pageFaultsPerRequest,omitempty"`
	ForwardMean      float64 `json:"forwardBatchMean,omitempty"`
	// The Raft log over the load, from the node that snapshotted most:
	// entries its snapshots compacted away, and its log (entries after
	// the newest snapshot, disk) once the load ended.
	LogCompacted  float64 `json:"logCompactedEntries,omitempty"`
	LogEntries    float64 `json:"logEntriesAfter,omitempty"`
	LogMiB        float64 `json:"logMiBAfter,omitempty"`
	DeltaRate     float64 `json:"deltaRate,omitempty"`
	DeltaP50Ms    float64 `json:"deltaP50Ms,omitempty"`
	DeltaP99Ms    float64 `json:"deltaP99Ms,omitempty"`
	DeltaMaxMs    float64 `json:"deltaMaxMs,omitempty"`
	PageBytes     int     `json:"pageBytes,omitempty"`
	Decrypted     int64   `json:"decrypted,omitempty"`
	SetupSeconds  float64 `json:"setupSeconds"`
	StartSeconds  float64 `json:"startSeconds,omitempty"`
	OpenedSeconds float64 `json:"openedSeconds,omitempty"`
	// Profiles are the files --profile wrote.
	Profiles []string `json:"profiles,omitempty"`
}

// env is where a run sends its load: the nodes, an admin, and what to
// undo when it ends.
type env struct {
	o     *Options
	urls  []string
	hc    *http.Client // setup, scrapes
	admin *client.Client
	token string // the admin's, which also reads /metrics
	self  bool
	stop  func()
	rss   *rssWatch
	// profiles are the nodes' /debug/pprof/ URLs, with --profile.
	profiles []string
}

// Run runs one scenario.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.Defaults()
	if err := o.check(); err != nil {
		return nil, err
	}
	e, res, err := open(ctx, &o)
	if err != nil {
		return nil, err
	}
	defer e.close()
	var run func(context.Context, *env, *Result) error
	switch o.Scenario {
	case "ingest":
		run = ingest
	case "latency":
		run = latency
	case "conns":
		run = conns
	case "feed":
		run = feed
	case "webpush":
		run = webPush
	case "webhook":
		run = webhook
	}
	if err := run(ctx, e, res); err != nil {
		return nil, err
	}
	res.RSSMiB, res.RSSNodesMiB = e.rss.peak()
	res.RSSAnonMiB = e.rss.anonPeak()
	if len(res.RSSNodesMiB) == 1 {
		res.RSSNodesMiB = nil
	}
	return res, nil
}

func open(ctx context.Context, o *Options) (*env, *Result, error) {
	e := &env{o: o, hc: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}, stop: func() {}}
	res := &Result{Scenario: o.Scenario, Nodes: o.Cluster, DurationS: o.Duration.Seconds(), Concurrency: o.Concurrency, Users: o.Users}
	if o.Scenario == "latency" || o.Scenario == "conns" {
		res.Transport = o.Transport
	}
	started := time.Now()
	var tok string
	if o.Server == "" {
		res.Server = "self"
		fmt.Fprintf(o.Progress, "starting %d node(s) in a temporary directory...\n", o.Cluster)
		if o.Profile != "" {
			if err := os.MkdirAll(o.Profile, 0o755); err != nil {
				return nil, nil, fmt.Errorf("--profile: %w", err)
			}
		}
		nodes, err := selfNodes(ctx, o, o.Cluster)
		if err != nil {
			return nil, nil, err
		}
		e.urls, e.stop, e.self, e.profiles = nodes.urls, nodes.stop, true, nodes.profiles
		pw := nodes.adminPassword
		res.StartSeconds = time.Since(started).Seconds()
		o.Username, o.Password = "admin", pw
	} else {
		res.Server = strings.TrimRight(o.Server, "/")
		e.urls = []string{res.Server}
	}
	anon, err := client.New(e.urls[0], client.WithHTTPClient(e.hc))
	if err != nil {
		e.close()
		return nil, nil, err
	}
	tok = o.Token
	if tok == "" {
		if o.Username == "" || o.Password == "" {
			e.close()
			return nil, nil, errors.New("bench against --server signs in as an admin: give --token, or --username and --password")
		}
		t, err := anon.PasswordToken(ctx, o.Username, o.Password)
		if err != nil {
			e.close()
			return nil, nil, fmt.Errorf("sign in as %s: %w", o.Username, err)
		}
		tok = t.AccessToken
	}
	e.admin, e.token = anon.With(client.WithToken(tok)), tok
	e.rss = newRSSWatch(ctx, e.hc, e.urls, tok)
	res.RSSIdleMiB = e.rss.settled(ctx)
	return e, res, nil
}

func (e *env) close() {
	if e.rss != nil {
		e.rss.close()
	}
	e.stop()
}

func (e *env) url(i int) string { return e.urls[i%len(e.urls)] }

// rssWatch samples every node's resident memory once a second and keeps
// the peaks.
type rssWatch struct {
	hc    *http.Client
	token string
	urls  []string
	mu    sync.Mutex
	peaks []float64
	last  []float64
	anon  float64 // the largest node's peak without mapped files
	done  chan struct{}
	ended chan struct{}
}

func newRSSWatch(ctx context.Context, hc *http.Client, urls []string, token string) *rssWatch {
	w := &rssWatch{hc: hc, token: token, urls: urls, peaks: make([]float64, len(urls)), last: make([]float64, len(urls)),
		done: make(chan struct{}), ended: make(chan struct{})}
	w.sample(ctx)
	go func() {
		defer close(w.ended)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				w.sample(ctx)
			}
		}
	}()
	return w
}

func (w *rssWatch) sample(ctx context.Context) {
	for i, u := range w.urls {
		m, err := scrape(ctx, w.hc, u, w.token)
		if err != nil {
			continue
		}
		v := m.rssMiB()
		w.mu.Lock()
		w.last[i] = v
		w.peaks[i] = max(w.peaks[i], v)
		w.anon = max(w.anon, m.anonMiB())
		w.mu.Unlock()
	}
}

// settled samples the nodes' memory for three seconds and returns the
// least: a node just started, and signed in to, holds for a second or two
// what its start and the password hashing (argon2id, 19 MiB a hash) left,
// until the Go runtime collects it and hands it back to the system (87 MiB
// at the sign-in, 28 MiB 1.5 s later: a node of 3 December 2026).
func (w *rssWatch) settled(ctx context.Context) float64 {
	least := w.now()
	for range 12 {
		select {
		case <-ctx.Done():
			return least
		case <-time.After(250 * time.Millisecond):
		}
		w.sample(ctx)
		least = min(least, w.now())
	}
	return least
}

// now is the largest node's memory at the last sample.
func (w *rssWatch) now() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var m float64
	for _, v := range w.last {
		m = max(m, v)
	}
	return m
}

// reset forgets the peaks: what setup used is not the load's.
func (w *rssWatch) reset(ctx context.Context) {
	w.mu.Lock()
	clear(w.peaks)
	w.anon = 0
	w.mu.Unlock()
	w.sample(ctx)
}

func (w *rssWatch) peak() (float64, []float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var m float64
	for _, v := range w.peaks {
		m = max(m, v)
	}
	return m, append([]float64(nil), w.peaks...)
}

func (w *rssWatch) anonPeak() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.anon
}

func (w *rssWatch) close() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	<-w.ended
}
