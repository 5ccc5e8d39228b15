package node

import (
	"crypto/tls"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// connTracker follows the public listener's connections (http.Server's
// ConnState hook) so that a shutdown can close the ones that never carried
// a request, and say which connections it had to cut when the drain ran out
// of time.
//
// Why the unused ones: http.Server.Shutdown closes idle keep-alive
// connections at once but waits for a connection in StateNew until it is
// five seconds old, in case a request is on its way. Clients open such
// connections and leave them unused: browsers pre-connect, and Go's own
// Transport (since go1.27 it drains a body closed early in the background
// and only then returns the connection to its pool) dials a second
// connection for a request made meanwhile and pools whichever it did not
// use. A shutdown budget of five seconds then went entirely on waiting for
// a request that never comes.
//
// The set of connections changes under the lock twice in a connection's
// life; its state, which changes twice a request (active, then idle), is
// kept in the connection's own atomics. A lock taken at every change was
// the node's most contended one under `herald bench ingest`: 1.6 s of
// waiting in 5 s (the bench's --profile, mutex profile).
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]*connState
}

// connState is a connection's state and since when (Unix nanoseconds).
type connState struct {
	state atomic.Int32
	since atomic.Int64
}

func (cs *connState) set(s http.ConnState, now time.Time) {
	cs.state.Store(int32(s))
	cs.since.Store(now.UnixNano())
}

func newConnTracker() *connTracker { return &connTracker{conns: map[net.Conn]*connState{}} }

// hook is the http.Server's ConnState.
func (t *connTracker) hook(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateClosed, http.StateHijacked:
		// A hijacked connection (a WebSocket) is its handler's to end;
		// http.Server no longer waits for it either.
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
		return
	case http.StateNew:
		cs := stateOf(c)
		cs.set(s, time.Now())
		t.mu.Lock()
		t.conns[c] = cs
		t.mu.Unlock()
		return
	}
	// The public listener is a markListener: its connections carry their
	// state, and only another listener's are looked up under the lock.
	if m := marked(c); m != nil {
		m.state.set(s, time.Now())
		return
	}
	t.mu.Lock()
	cs := t.conns[c]
	t.mu.Unlock()
	if cs != nil {
		cs.set(s, time.Now())
	}
}

// marked is the markConn under c, or nil.
func marked(c net.Conn) *markConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	m, _ := c.(*markConn)
	return m
}

// stateOf is where c's state is kept: in the connection when it is one of
// markListener's.
func stateOf(c net.Conn) *connState {
	if m := marked(c); m != nil {
		return &m.state
	}
	return new(connState)
}

// closeUnused closes the connections on which the client has sent nothing
// at all, and says how many. One that has sent part of a request is left
// to finish it (or to the header timeout).
func (t *connTracker) closeUnused() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	closed := 0
	for c, cs := range t.conns {
		if http.ConnState(cs.state.Load()) != http.StateNew {
			continue
		}
		// Nothing read below TLS means no handshake began either. After
		// a handshake the request bytes are hidden in TLS records: such a
		// connection is left to the drain's bound.
		if m := marked(c); m != nil && !m.read.Load() {
			c.Close()
			delete(t.conns, c)
			closed++
		}
	}
	return closed
}

// openConn describes one connection for the log.
type openConn struct {
	Remote string        `json:"remote"`
	State  string        `json:"state"`
	For    time.Duration `json:"for"`
}

// open lists the connections not closed yet, the longest in their state first.
func (t *connTracker) open() []openConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	out := make([]openConn, 0, len(t.conns))
	for c, cs := range t.conns {
		out = append(out, openConn{Remote: c.RemoteAddr().String(), State: http.ConnState(cs.state.Load()).String(),
			For: now.Sub(time.Unix(0, cs.since.Load())).Round(time.Millisecond)})
	}
	slices.SortFunc(out, func(a, b openConn) int { return int(b.For - a.For) })
	return out
}

// markListener hands out connections that remember whether the client
// has sent anything.
type markListener struct{ net.Listener }

func (l markListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &markConn{Conn: c}, nil
}

type markConn struct {
	net.Conn
	read  atomic.Bool
	state connState // connTracker's
}

// NetConn is the connection under c, for code that needs its descriptor
// (httpapi's idle watch), as tls.Conn has it.
func (c *markConn) NetConn() net.Conn { return c.Conn }

func (c *markConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.read.Load() {
		c.read.Store(true)
	}
	return n, err
}
