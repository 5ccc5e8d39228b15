package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// The latency scenario's ceiling is a bare fan-out server: a process of its
// own, as a node is, that keeps the open streams in a map and nothing else.
// A send is written to its user's streams before the POST is answered, with
// no authentication, no storage and no fsync. The same client measures it
// at the same load as the node, so its publish→receipt times are what this
// machine gives any server under that load: a floor under Herald's.

// fanoutServer is the bare fan-out handler.
type fanoutServer struct {
	mu    sync.Mutex
	users map[string]*fanUser
}

type fanUser struct {
	mu      sync.Mutex
	streams []*fanStream
}

// fanStream is one open stream; write is called with mu held.
type fanStream struct {
	mu    sync.Mutex
	write func(sse, ws []byte) error
}

// ServeFanout serves the bare fan-out server on l until ctx ends.
func ServeFanout(ctx context.Context, l net.Listener) error {
	return newFanoutServer().serve(ctx, l)
}

func newFanoutServer() *fanoutServer {
	return &fanoutServer{users: map[string]*fanUser{}}
}

func (f *fanoutServer) serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (f *fanoutServer) user(key string) *fanUser {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.users[key]
	if u == nil {
		u = &fanUser{}
		f.users[key] = u
	}
	return u
}

func (f *fanoutServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/readyz":
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodGet && r.URL.Path == "/v1.0/me/notifications/stream":
		f.stream(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/v1.0/me/notifications":
		f.send(w, r)
	default:
		http.NotFound(w, r)
	}
}

// stream keeps a stream of the user its bearer token names (the token is
// the user's key) open until the client goes.
func (f *fanoutServer) stream(w http.ResponseWriter, r *http.Request) {
	u := f.user(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	// The stream is the user's before the client sees it open: a send
	// right after waits on mu until its first bytes are out.
	s := &fanStream{write: func(_, _ []byte) error { return net.ErrClosed }}
	s.mu.Lock()
	u.mu.Lock()
	u.streams = append(u.streams, s)
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		for i, o := range u.streams {
			if o == s {
				u.streams = append(u.streams[:i], u.streams[i+1:]...)
				break
			}
		}
		u.mu.Unlock()
		// A send holding the stream finishes its write before the
		// handler returns and the writer goes.
		s.mu.Lock()
		s.write = func(_, _ []byte) error { return net.ErrClosed }
		s.mu.Unlock()
	}()
	ctx := r.Context()
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			s.mu.Unlock()
			return
		}
		defer conn.CloseNow()
		ctx = conn.CloseRead(ctx)
		s.write = func(_, ws []byte) error { return conn.Write(ctx, websocket.MessageText, ws) }
	} else {
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		if _, err := io.WriteString(w, "retry: 2000\n: connected\n\n"); err != nil || rc.Flush() != nil {
			s.mu.Unlock()
			return
		}
		s.write = func(sse, _ []byte) error {
			if _, err := w.Write(sse); err != nil {
				return err
			}
			return rc.Flush()
		}
	}
	s.mu.Unlock()
	<-ctx.Done()
}

// send writes the POST's body, as the notification, to every stream of the
// user X-Uns-Id names, then answers 201 with the body.
func (f *fanoutServer) send(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sse := fmt.Appendf(nil, "event: created\ndata: %s\n\n", body)
	ws := fmt.Appendf(nil, `{"type":"created","notification":%s}`, body)
	u := f.user(r.Header.Get("X-Uns-Id"))
	u.mu.Lock()
	streams := append([]*fanStream(nil), u.streams...)
	u.mu.Unlock()
	for _, s := range streams {
		s.mu.Lock()
		s.write(sse, ws)
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	w.Write(body)
}

// fanoutCeiling runs the latency scenario's load against the bare fan-out
// server, started as a child process of this binary: as many streams over
// as many users, the same sends at the same rate from as many senders.
func fanoutCeiling(ctx context.Context, e *env, res *Result, prog *progress, sends int) error {
	o := e.o
	srv, err := startFanout(ctx, o)
	if err != nil {
		return fmt.Errorf("the fan-out ceiling: %w", err)
	}
	defer srv.stop()
	users := make([]*benchUser, o.Users)
	for i := range users {
		k := fmt.Sprintf("ceiling-%d", i)
		users[i] = &benchUser{token: k, unsid: k}
	}
	perUser := streamsPerUser(o.Streams, o.Users)
	t := newTally(sends)
	st := newStreams(o.Transport, o.Streams, srv.url, t.event)
	defer st.close()
	prog.phase("ceiling: open")
	if err := parallel(ctx, o.Streams, 64, func(j int) error {
		return st.openOne(ctx, j, srv.url, users[j%len(users)].token)
	}); err != nil {
		return fmt.Errorf("the fan-out ceiling: open a stream: %w", err)
	}
	// The same bodies and headers as the node's sends; the server reads
	// no token.
	f := &fixture{appToken: "ceiling"}
	hc := newLoadClient(o.Concurrency)
	defer hc.CloseIdleConnections()
	prog.phase("ceiling: latency")
	cpu0, cpuOK := procCPU(srv.cmd.Process.Pid)
	_, okN, failed, elapsed := paced(ctx, o.Concurrency, sends, o.Rate, o.Duration, prog, func(ctx context.Context, i int) error {
		u := i % len(users)
		_, err := do(ctx, hc, srv.url, f.sendCall(users[u], int64(i), time.Now()), http.StatusCreated)
		if err == nil {
			t.expect(int64(i), perUser[u])
		}
		return err
	})
	expected, _, _ := t.counts()
	t.waitAll(ctx, expected, 10*time.Second)
	if cpu1, ok := procCPU(srv.cmd.Process.Pid); ok && cpuOK && okN+failed > 0 {
		res.CeilingCPUUsPerRequest = (cpu1 - cpu0) * 1e6 / float64(okN+failed)
	}
	expected, received, dups := t.counts()
	p := summarize(t.latencies())
	res.CeilingLatencyP50Ms, res.CeilingLatencyP90Ms, res.CeilingLatencyP99Ms, res.CeilingLatencyMaxMs = p.p50, p.p90, p.p99, p.max
	res.CeilingSendRate = float64(okN) / elapsed.Seconds()
	res.CeilingExpected, res.CeilingReceived = expected, received
	res.CeilingErrors = failed + t.unmatched.Load() + dups + max(0, int64(o.Streams)-st.live())
	return nil
}

// startFanout starts the bare fan-out server and waits until it serves,
// on fresh ports if its first is taken before the child binds it.
func startFanout(ctx context.Context, o *Options) (*nodeProc, error) {
	return onFreshPorts(func() (*nodeProc, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		p, err := startProc(o, []string{"bench", "fanout-server", "--listen", addr}, "", false)
		if err != nil {
			return nil, err
		}
		p.url = "http://" + addr
		if err := p.waitReady(ctx, 30*time.Second); err != nil {
			p.stop()
			return nil, err
		}
		return p, nil
	})
}

// procCPU is process pid's CPU time in seconds, user and system, from
// /proc (Linux; false elsewhere). The kernel counts it in ticks of 1/100 s
// (USER_HZ, 100 on every Linux the bench runs on).
func procCPU(pid int) (float64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: the fields
	// counted here start after its closing one.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return float64(utime+stime) / 100, true
}
