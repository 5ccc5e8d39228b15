package httpapi

import (
	"crypto/tls"
	"net"
	"sync"
	"syscall"
)

// A live stream's client says nothing for hours: an SSE client never
// writes after its request, a WebSocket client only answers pings. A
// goroutine blocked in a read for each of them is 2 KiB of stack, and the
// collector walks every such stack in each cycle: with 10,000 streams that
// walk was a ninth of the node's CPU under the latency load (issue 11,
// BENCHMARKS.md). So an idle connection is watched by the kernel instead
// (epoll on Linux, idlewatch_linux.go): when the client sends something or
// goes away, a goroutine is started to read it, as before. Elsewhere, or
// for a connection without a file descriptor, the goroutine starts at once.

// idleWatch watches one connection. wait arms it; close ends it for good.
type idleWatch struct {
	w    *idleWatcher // nil: no watcher, every wait starts its goroutine
	conn net.Conn
	rc   syscall.RawConn // the descriptor under conn's wrappers
	// rearmable is whether a reader may go back to waiting once it has
	// read what the client sent. A TLS connection reads records ahead
	// into its own buffer, which the kernel does not see: its reader
	// reads on.
	rearmable bool

	mu sync.Mutex // orders wait and close, which a stream's goroutines call
	id uint64     // the watcher's name for conn, once armed
	// armed is whether the kernel holds the connection's registration
	// (it stays registered, disarmed, once it has fired).
	armed   bool
	stopped bool
}

func newIdleWatch(conn net.Conn) *idleWatch {
	iw := &idleWatch{conn: conn}
	inner, isTLS := innerConn(conn)
	iw.rearmable = !isTLS
	if sc, ok := inner.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			iw.rc, iw.w = rc, sharedIdleWatcher()
		}
	}
	return iw
}

// wait has ready run in a goroutine of its own once the client has sent
// something or gone, once per wait; after close it does nothing.
func (iw *idleWatch) wait(ready func()) {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	if iw.stopped {
		return
	}
	if iw.w == nil || !iw.w.arm(iw, ready) {
		go ready()
	}
}

// close forgets the connection, then closes it. A ready already started
// runs on.
func (iw *idleWatch) close() {
	iw.mu.Lock()
	if !iw.stopped {
		iw.stopped = true
		if iw.w != nil {
			iw.w.disarm(iw)
		}
	}
	iw.mu.Unlock()
	iw.conn.Close()
}

// innerConn is the connection under conn's wrappers (TLS, and the
// listeners' own, which have NetConn as tls.Conn does), and whether one of
// them was TLS.
func innerConn(conn net.Conn) (inner net.Conn, isTLS bool) {
	for {
		switch c := conn.(type) {
		case *tls.Conn:
			isTLS = true
			conn = c.NetConn()
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
		default:
			return conn, isTLS
		}
	}
}

var (
	idleWatcherOnce sync.Once
	idleWatcherOne  *idleWatcher
)

// sharedIdleWatcher is the process's one watcher, started at first use, or
// nil where none can run.
func sharedIdleWatcher() *idleWatcher {
	idleWatcherOnce.Do(func() { idleWatcherOne = startIdleWatcher() })
	return idleWatcherOne
}
