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
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]trackedConn
}

type trackedConn struct {
	state http.ConnState
	since time.Time // when it entered state
}

func newConnTracker() *connTracker { return &connTracker{conns: map[net.Conn]trackedConn{}} }

// hook is the http.Server's ConnState.
func (t *connTracker) hook(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s {
	case http.StateClosed, http.StateHijacked:
		// A hijacked connection (a WebSocket) is its handler's to end;
		// http.Server no longer waits for it either.
		delete(t.conns, c)
	default:
		t.conns[c] = trackedConn{state: s, since: time.Now()}
	}
}

// closeUnused closes the connections on which the client has sent nothing
// at all, and says how many. One that has sent part of a request is left
// to finish it (or to the header timeout).
func (t *connTracker) closeUnused() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	closed := 0
	for c, tc := range t.conns {
		if tc.state != http.StateNew {
			continue
		}
		raw := c
		if tc, ok := c.(*tls.Conn); ok {
			// Nothing read below TLS means no handshake began either.
			// After a handshake the request bytes are hidden in TLS
			// records: such a connection is left to the drain's bound.
			raw = tc.NetConn()
		}
		if m, ok := raw.(*markConn); ok && !m.read.Load() {
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
	for c, tc := range t.conns {
		out = append(out, openConn{Remote: c.RemoteAddr().String(), State: tc.state.String(),
			For: now.Sub(tc.since).Round(time.Millisecond)})
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
	read atomic.Bool
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
