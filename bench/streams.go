package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// streams are live streams the bench holds open, SSE or WebSocket, each on
// its own connection from one of several loopback source addresses (a
// server caps connections per client address; and one address has only
// some 28,000 ephemeral ports).
type streams struct {
	transport string
	addrs     int // source addresses to spread over; 0: the system's choice
	onEvent   func(data []byte)

	open    atomic.Int64
	ended   atomic.Int64
	mu      sync.Mutex
	closers []func()
	wsHTTP  []*http.Client
}

// perSourceAddr is how many streams share one source address: under the
// default --max-conns-per-ip (256) of a server the bench did not start.
const perSourceAddr = 200

func newStreams(transport string, total int, base string, onEvent func([]byte)) *streams {
	s := &streams{transport: transport, onEvent: onEvent}
	if u, err := url.Parse(base); err == nil {
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() && ip.To4() != nil {
			s.addrs = min(240, (total+perSourceAddr-1)/perSourceAddr)
		}
	}
	if transport == "ws" {
		n := max(1, s.addrs)
		for k := range n {
			d := s.dialer(k)
			s.wsHTTP = append(s.wsHTTP, &http.Client{Transport: &http.Transport{DialContext: d.DialContext}})
		}
	}
	return s
}

// dialer binds stream i's connection to source address 127.0.0.(10+i%n).
func (s *streams) dialer(i int) *net.Dialer {
	d := &net.Dialer{Timeout: 30 * time.Second}
	if s.addrs > 0 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i%s.addrs))}
	}
	return d
}

// openOne opens stream i of user token at base and returns once the
// server has answered (and, for SSE, written its first line); events are
// read on a goroutine of the stream's own.
func (s *streams) openOne(ctx context.Context, i int, base, token string) error {
	if s.transport == "ws" {
		return s.openWS(ctx, i, base, token)
	}
	return s.openSSE(ctx, i, base, token)
}

func (s *streams) openSSE(ctx context.Context, i int, base, token string) error {
	u, err := url.Parse(base)
	if err != nil {
		return err
	}
	conn, err := s.dialer(i).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/v1.0/me/notifications/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := req.Write(conn); err != nil {
		conn.Close()
		return err
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return fmt.Errorf("stream: HTTP %d", resp.StatusCode)
	}
	body := bufio.NewReaderSize(resp.Body, 4096)
	if _, err := body.ReadSlice('\n'); err != nil {
		conn.Close()
		return fmt.Errorf("stream ended before it started: %w", err)
	}
	conn.SetDeadline(time.Time{})
	s.added(func() { conn.Close() })
	go func() {
		defer s.ended.Add(1)
		created := false
		for {
			line, err := body.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				// A longer line than any notification's: drop its rest.
				for err == bufio.ErrBufferFull {
					_, err = body.ReadSlice('\n')
				}
				continue
			}
			if err != nil {
				return
			}
			switch {
			case bytes.HasPrefix(line, []byte("event: ")):
				created = bytes.Equal(bytes.TrimSpace(line[7:]), []byte("created"))
			case created && bytes.HasPrefix(line, []byte("data: ")):
				s.onEvent(line[6:])
				created = false
			}
		}
	}()
	return nil
}

func (s *streams) openWS(ctx context.Context, i int, base, token string) error {
	u := "ws" + base[len("http"):] + "/v1.0/me/notifications/stream"
	hc := s.wsHTTP[i%len(s.wsHTTP)]
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: hc,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		if resp != nil {
			return fmt.Errorf("websocket: HTTP %d: %w", resp.StatusCode, err)
		}
		return err
	}
	s.added(func() { conn.CloseNow() })
	go func() {
		defer s.ended.Add(1)
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			var f struct {
				Type         string          `json:"type"`
				Notification json.RawMessage `json:"notification"`
			}
			if json.Unmarshal(b, &f) == nil && f.Type == "created" {
				s.onEvent(f.Notification)
			}
		}
	}()
	return nil
}

func (s *streams) added(closer func()) {
	s.mu.Lock()
	s.closers = append(s.closers, closer)
	s.mu.Unlock()
	s.open.Add(1)
}

// openAll opens streams 0..n-1, stream j for user j%len(users) through
// node j%nodes, k at a time.
func (s *streams) openAll(ctx context.Context, e *env, users []*benchUser, n, k int, prog *progress) error {
	prog.phase("open")
	prog.show(func() string { return fmt.Sprintf("%d of %d streams open", s.open.Load(), n) })
	return parallel(ctx, n, k, func(j int) error {
		err := s.openOne(ctx, j, e.url(j), users[j%len(users)].token)
		if err != nil {
			return fmt.Errorf("open stream %d of %d: %w", j+1, n, err)
		}
		return nil
	})
}

// live is the streams still open: opened and not ended.
func (s *streams) live() int64 { return s.open.Load() - s.ended.Load() }

func (s *streams) close() {
	s.mu.Lock()
	cl := s.closers
	s.closers = nil
	s.mu.Unlock()
	for _, c := range cl {
		c()
	}
}

// tally matches received events to sends by the mark in their payload.
type tally struct {
	got  []atomic.Int32
	want []int32 // set when the send is acknowledged
	mu   sync.Mutex
	lat  []time.Duration
	// unmatched are events whose mark names no send of this run.
	unmatched atomic.Int64
	total     atomic.Int64
}

func newTally(capacity int) *tally {
	return &tally{got: make([]atomic.Int32, capacity), want: make([]int32, capacity)}
}

func (t *tally) event(data []byte) {
	now := time.Now()
	seq, sent, ok := parseMark(data)
	if !ok || seq < 0 || seq >= int64(len(t.got)) {
		t.unmatched.Add(1)
		return
	}
	t.got[seq].Add(1)
	t.total.Add(1)
	d := now.Sub(time.Unix(0, sent))
	t.mu.Lock()
	t.lat = append(t.lat, d)
	t.mu.Unlock()
}

// expect records that send seq was acknowledged and should reach n streams.
func (t *tally) expect(seq int64, n int) {
	t.mu.Lock()
	t.want[seq] = int32(n)
	t.mu.Unlock()
}

// counts are expected and received deliveries over the acknowledged
// sends, and the duplicates beyond them.
func (t *tally) counts() (expected, received, dups int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.want {
		w, g := int64(t.want[i]), int64(t.got[i].Load())
		expected += w
		received += min(w, g)
		dups += max(0, g-w)
	}
	return expected, received, dups
}

// forget drops send seq, with every latency so far: the sample before
// the run is not part of it.
func (t *tally) forget(seq int64) {
	t.mu.Lock()
	t.total.Add(-int64(t.got[seq].Swap(0)))
	t.want[seq] = 0
	t.lat = nil
	t.mu.Unlock()
}

func (t *tally) latencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]time.Duration(nil), t.lat...)
}

// waitAll waits until every expected delivery has arrived or within has
// passed with none arriving.
func (t *tally) waitAll(ctx context.Context, expected int64, within time.Duration) {
	last, lastAt := int64(-1), time.Now()
	for ctx.Err() == nil {
		n := t.total.Load()
		if n >= expected {
			if _, r, _ := t.counts(); r >= expected {
				return
			}
		}
		if n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) > within {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
