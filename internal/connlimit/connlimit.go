// Package connlimit bounds what one client, and all of them together, can
// hold open on the public listener: connections per client address, the
// server's connections, and how long a request body may take to arrive.
package connlimit

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Listener admits a connection only while the server holds fewer than max
// and its client address fewer than perIP. A connection beyond either is
// closed at once rather than left waiting in the accept queue: a waiting
// client would only hold a file and learn nothing, and a client within its
// share must still get in while another client is at its cap.
type Listener struct {
	net.Listener
	max, perIP int
	onReject   func(remote net.Addr, perIP bool)

	mu    sync.Mutex
	total int
	byKey map[string]int
}

// New wraps l. Zero or less for max or perIP means no bound of that kind.
// onReject, when set, is called for each refused connection (metrics, a
// throttled log); it must not block.
func New(l net.Listener, max, perIP int, onReject func(remote net.Addr, perIP bool)) *Listener {
	return &Listener{Listener: l, max: max, perIP: perIP, onReject: onReject, byKey: map[string]int{}}
}

// Accept returns the next connection within the bounds, closing those
// beyond them.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientKey(c.RemoteAddr())
		ok, byIP := l.admit(key)
		if ok {
			return &conn{Conn: c, l: l, key: key}, nil
		}
		// Counted before the close, so that whoever sees the close sees
		// the count too.
		if l.onReject != nil {
			l.onReject(c.RemoteAddr(), byIP)
		}
		c.Close()
	}
}

// Open is the number of connections admitted and not yet closed.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// OpenFrom is the number of open connections counted against addr's client.
func (l *Listener) OpenFrom(addr net.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byKey[clientKey(addr)]
}

func (l *Listener) admit(key string) (ok, byIP bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.total >= l.max {
		return false, false
	}
	if l.perIP > 0 && l.byKey[key] >= l.perIP {
		return false, true
	}
	l.total++
	l.byKey[key]++
	return true, false
}

func (l *Listener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byKey[key]--; l.byKey[key] <= 0 {
		delete(l.byKey, key)
	}
}

// clientKey is what one client is counted by: its IPv4 address, or the /64
// of its IPv6 address, since a single IPv6 host is usually handed a whole
// /64 and could otherwise open as many connections as it has addresses.
func clientKey(a net.Addr) string {
	var ip net.IP
	switch t := a.(type) {
	case *net.TCPAddr:
		ip = t.IP
	default:
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return a.String()
		}
		ip = net.ParseIP(host)
		if ip == nil {
			return host
		}
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// conn gives its slot back once, however often it is closed (the server
// and a hijacking handler may both close it).
type conn struct {
	net.Conn
	l    *Listener
	key  string
	once sync.Once
}

// NetConn is the connection under c, for code that needs its descriptor
// (httpapi's idle watch), as tls.Conn has it.
func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

// BodyReader cuts off a request body that arrives too slowly: the body must
// have arrived at grace plus one second per minRate bytes received since
// start, so a client that stalls, or trickles a byte now and then, loses
// the connection within about grace, while a large body on a slow but
// working link keeps going. The deadline is the connection's read
// deadline, which the server resets for the next request, and which
// net/http clears when the body ends, before its background read: the
// reader must not set it again after that, or the background read would
// time out and cancel the request while the handler still works.
type BodyReader struct {
	body     io.ReadCloser
	rc       *http.ResponseController
	start    time.Time
	grace    time.Duration
	minRate  int64
	received int64
}

// NewBodyReader wraps a request's body; rc controls its connection. A
// minRate of zero or less means the body must be complete within grace.
func NewBodyReader(body io.ReadCloser, rc *http.ResponseController, grace time.Duration, minRate int64) *BodyReader {
	b := &BodyReader{body: body, rc: rc, start: time.Now(), grace: grace, minRate: minRate}
	b.arm()
	return b
}

func (b *BodyReader) deadline() time.Time {
	d := b.start.Add(b.grace)
	if b.minRate > 0 {
		d = d.Add(time.Duration(float64(b.received) / float64(b.minRate) * float64(time.Second)))
	}
	return d
}

func (b *BodyReader) arm() {
	// A connection that cannot take deadlines (none of the server's do
	// that today) keeps only the other bounds: the body size limit.
	_ = b.rc.SetReadDeadline(b.deadline())
}

func (b *BodyReader) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	// A read that ends the body returns its error with the last bytes
	// (io.EOF); only a read with more to come moves the deadline.
	if n > 0 && err == nil && b.minRate > 0 {
		b.received += int64(n)
		b.arm()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// Handlers put a read error into their answer; the network's
		// says "read tcp <server address>->...: i/o timeout".
		err = ErrBodyTooSlow
	}
	return n, err
}

// ErrBodyTooSlow is the read error of a body cut off for arriving too
// slowly. It is a timeout, as net.Error.
var ErrBodyTooSlow error = bodyTooSlow{}

type bodyTooSlow struct{}

func (bodyTooSlow) Error() string   { return "the body arrived too slowly and was cut off" }
func (bodyTooSlow) Timeout() bool   { return true }
func (bodyTooSlow) Temporary() bool { return false }

func (b *BodyReader) Close() error { return b.body.Close() }
