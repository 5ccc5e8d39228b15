// Package loadgen drives a running Herald server as an application service
// and as a user's devices would: it posts notifications with an application
// token and X-UNS-ID, and holds live SSE streams that receive them. It backs
// `herald bench` and the Go benchmarks.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-notify/herald/client"
)

// Target is a disposable application, user and live subscription on a
// server, made by Setup.
type Target struct {
	URL       string
	AppToken  string
	UserToken string
	UNSID     string

	http   *http.Client
	admin  *client.Client
	userID string
	appID  string
}

// Setup signs in as an admin and registers a fresh application, user and
// live subscription to send through.
func Setup(ctx context.Context, baseURL, adminUser, adminPassword string) (*Target, error) {
	baseURL = strings.TrimRight(baseURL, "/")
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	anon, err := client.New(baseURL, client.WithHTTPClient(hc))
	if err != nil {
		return nil, err
	}
	tok, err := anon.PasswordToken(ctx, adminUser, adminPassword)
	if err != nil {
		return nil, fmt.Errorf("sign in as %s: %w", adminUser, err)
	}
	admin := anon.With(client.WithToken(tok.AccessToken))
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	app, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "herald bench", TargetHostName: "bench-" + tag + ".invalid"})
	if err != nil {
		return nil, fmt.Errorf("create application: %w", err)
	}
	t := &Target{URL: baseURL, http: hc, admin: admin, appID: app.ID}
	const pw = "bench-password-1"
	u, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "bench-" + tag, Password: pw})
	if err != nil {
		t.Cleanup(ctx)
		return nil, fmt.Errorf("create user: %w", err)
	}
	t.userID = u.ID
	ut, err := anon.PasswordToken(ctx, u.UserPrincipalName, pw)
	if err != nil {
		t.Cleanup(ctx)
		return nil, err
	}
	t.UserToken = ut.AccessToken
	var sub struct{ ID string }
	err = anon.With(client.WithToken(t.UserToken)).Do(ctx, http.MethodPost, "/v1.0/me/notificationSubscriptions",
		map[string]any{"targetHostName": app.TargetHostName, "platformType": "web", "channel": map[string]string{"type": "live"}}, &sub)
	if err != nil {
		t.Cleanup(ctx)
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	t.UNSID = sub.ID
	at, err := anon.ClientCredentialsToken(ctx, app.AppID, app.PasswordCredentials[0].SecretText)
	if err != nil {
		t.Cleanup(ctx)
		return nil, err
	}
	t.AppToken = at.AccessToken
	return t, nil
}

// Cleanup deletes what Setup made.
func (t *Target) Cleanup(ctx context.Context) error {
	var errs []error
	if t.userID != "" {
		errs = append(errs, t.admin.DeleteUser(ctx, t.userID))
	}
	if t.appID != "" {
		errs = append(errs, t.admin.Do(ctx, http.MethodDelete, "/v1.0/applications/"+t.appID, nil, nil))
	}
	return errors.Join(errs...)
}

// Post sends notification number i; its rawContent carries the send time
// in Unix nanoseconds, which streams use to measure delivery latency.
func (t *Target) Post(ctx context.Context, i int64) (int, error) {
	body := fmt.Sprintf(`{"appNotificationId":"bench-%d","payload":{"rawContent":"%d","visualContent":{"title":"Build %d finished","body":"All 1432 tests passed."}}}`,
		i, time.Now().UnixNano(), i)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL+"/v1.0/me/notifications", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+t.AppToken)
	req.Header.Set("X-UNS-ID", t.UNSID)
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.http.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Streams are open live streams of the target's user.
type Streams struct {
	received atomic.Int64
	mu       sync.Mutex
	latency  []time.Duration
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Received is the number of created events all streams have seen.
func (s *Streams) Received() int64 { return s.received.Load() }

// Close ends the streams.
func (s *Streams) Close() {
	s.cancel()
	s.wg.Wait()
}

// OpenStreams opens n SSE streams of the target's user and returns once
// every one is connected.
func (t *Target) OpenStreams(ctx context.Context, n int) (*Streams, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &Streams{cancel: cancel}
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	connected := make(chan error, n)
	for i := 0; i < n; i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			connected <- s.read(ctx, tr, t)
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-connected; err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// read opens one stream, reports on connected, then counts events.
func (s *Streams) read(ctx context.Context, tr *http.Transport, t *Target) (err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.URL+"/v1.0/me/notifications/stream", nil)
	req.Header.Set("Authorization", "Bearer "+t.UserToken)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return fmt.Errorf("stream: HTTP %d", resp.StatusCode)
	}
	go func() { <-ctx.Done(); resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		return errors.New("stream ended before it started")
	}
	// Hand the connection to the caller's count, then keep reading.
	go func() {
		created := false
		for sc.Scan() {
			line := sc.Bytes()
			switch {
			case bytes.HasPrefix(line, []byte("event: ")):
				created = bytes.Equal(line[7:], []byte("created"))
			case created && bytes.HasPrefix(line, []byte("data: ")):
				s.received.Add(1)
				if at := sentAt(line); at > 0 {
					d := time.Duration(time.Now().UnixNano() - at)
					s.mu.Lock()
					s.latency = append(s.latency, d)
					s.mu.Unlock()
				}
			}
		}
	}()
	return nil
}

// sentAt finds the send time Post put into rawContent.
func sentAt(data []byte) int64 {
	const key = `"rawContent":"`
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0
	}
	rest := data[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0
	}
	v, _ := strconv.ParseInt(string(rest[:j]), 10, 64)
	return v
}

// Options of a run.
type Options struct {
	Notifications int
	Concurrency   int
	Streams       int
	// Wait bounds how long to wait for streams to receive everything.
	Wait time.Duration
}

// Report is what a run measured.
type Report struct {
	Options
	Created, Limited, Failed int
	Elapsed                  time.Duration
	PostLatency              Percentiles
	Delivered                int64
	DeliveryLatency          Percentiles
	FanoutElapsed            time.Duration
}

// Percentiles summarise latencies.
type Percentiles struct{ P50, P90, P99, Max time.Duration }

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return Percentiles{at(.50), at(.90), at(.99), d[len(d)-1]}
}

// Run posts opts.Notifications with opts.Concurrency workers while
// opts.Streams live streams receive them.
func Run(ctx context.Context, t *Target, opts Options) (Report, error) {
	rep := Report{Options: opts}
	var streams *Streams
	if opts.Streams > 0 {
		var err error
		if streams, err = t.OpenStreams(ctx, opts.Streams); err != nil {
			return rep, err
		}
		defer streams.Close()
	}
	var next atomic.Int64
	var created, limited, failed atomic.Int64
	lat := make([][]time.Duration, opts.Concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < opts.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(opts.Notifications) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				status, err := t.Post(ctx, i)
				lat[w] = append(lat[w], time.Since(t0))
				switch {
				case err == nil && status == http.StatusCreated:
					created.Add(1)
				case status == http.StatusTooManyRequests:
					limited.Add(1)
				default:
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	rep.Created, rep.Limited, rep.Failed = int(created.Load()), int(limited.Load()), int(failed.Load())
	rep.PostLatency = percentiles(slices.Concat(lat...))
	if streams != nil {
		want := int64(rep.Created) * int64(opts.Streams)
		deadline := time.Now().Add(opts.Wait)
		for streams.Received() < want && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		rep.FanoutElapsed = time.Since(start)
		rep.Delivered = streams.Received()
		streams.mu.Lock()
		rep.DeliveryLatency = percentiles(streams.latency)
		streams.mu.Unlock()
	}
	return rep, nil
}

// String is the report as `herald bench` prints it.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ingest: %d notifications, %d workers: %d created, %d rate-limited (429), %d failed in %s\n",
		r.Notifications, r.Concurrency, r.Created, r.Limited, r.Failed, r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "  throughput %.0f notifications/s\n", float64(r.Created)/r.Elapsed.Seconds())
	fmt.Fprintf(&b, "  POST→201 latency p50 %s  p90 %s  p99 %s  max %s\n", r.PostLatency.P50.Round(time.Microsecond),
		r.PostLatency.P90.Round(time.Microsecond), r.PostLatency.P99.Round(time.Microsecond), r.PostLatency.Max.Round(time.Microsecond))
	if r.Streams > 0 {
		want := int64(r.Created) * int64(r.Streams)
		fmt.Fprintf(&b, "fan-out: %d SSE streams: %d of %d events delivered, %.0f events/s\n",
			r.Streams, r.Delivered, want, float64(r.Delivered)/r.FanoutElapsed.Seconds())
		fmt.Fprintf(&b, "  send→stream latency p50 %s  p90 %s  p99 %s  max %s\n", r.DeliveryLatency.P50.Round(time.Microsecond),
			r.DeliveryLatency.P90.Round(time.Microsecond), r.DeliveryLatency.P99.Round(time.Microsecond), r.DeliveryLatency.Max.Round(time.Microsecond))
	}
	return b.String()
}
