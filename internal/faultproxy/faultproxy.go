// Package faultproxy is a TCP relay for tests that can break the link it
// carries: cut it (new connections reset, open ones dropped), cut one
// direction (bytes that way vanish while the connection stays up), pause it
// (nothing relayed, connections held open, as when the peer process is
// stopped), delay it, or drop its open connections once. Tests put one
// Proxy on each link they want to break (for Herald, one per node pair and
// port) and send the dialer to Addr instead of the target; a Group applies
// a fault to several links at once, such as every link of one node.
//
// The proxy relays bytes without looking at them, so it works the same for
// plaintext, TLS, HTTP and Raft.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Direction is one way of a link.
type Direction int

const (
	// Forward is from the dialer (the client) to the target.
	Forward Direction = iota
	// Backward is from the target back to the dialer.
	Backward
)

func (d Direction) String() string {
	if d == Forward {
		return "forward"
	}
	return "backward"
}

// DialTimeout bounds the proxy's own dial of the target.
const DialTimeout = 5 * time.Second

// chunkSize is the relay's read size: large enough for bulk Raft traffic,
// small enough that latency is applied per message rather than per stream.
const chunkSize = 32 << 10

// Proxy relays the connections made to Addr to one target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu sync.Mutex
	// changed is closed and replaced at every change of the faults below,
	// waking relays that wait for a pause to end.
	changed  chan struct{}
	cut      bool
	blocked  [2]bool // by Direction
	paused   bool
	latency  time.Duration
	conns    map[*link]struct{}
	closed   bool
	accepted atomic.Int64
	dropped  atomic.Int64
	wg       sync.WaitGroup
}

// New starts a proxy on a free loopback port that relays to target.
func New(target string) (*Proxy, error) { return Listen("127.0.0.1:0", target) }

// Listen starts a proxy on addr that relays to target.
func Listen(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen on %s: %w", addr, err)
	}
	p := &Proxy{ln: ln, target: target, changed: make(chan struct{}), conns: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is where dialers should connect instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy relays to.
func (p *Proxy) Target() string { return p.target }

// Accepted counts the connections accepted so far, including those reset
// while the link was cut.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Discarded counts the bytes a cut direction has swallowed so far.
func (p *Proxy) Discarded() int64 { return p.dropped.Load() }

// Open is the number of connections being relayed now.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Cut breaks the link: open connections are reset and new ones are reset
// as soon as they are accepted, as when a firewall starts rejecting the
// route. Heal ends it.
func (p *Proxy) Cut() {
	p.update(func() { p.cut = true })
	p.DropConnections()
}

// CutDirection drops every byte sent in direction d from now on, while
// the connections stay open: the sender's writes succeed, the receiver
// hears nothing, as with a one-way packet filter. Heal ends it.
func (p *Proxy) CutDirection(d Direction) { p.update(func() { p.blocked[d] = true }) }

// Pause stops relaying in both directions and holds every connection, old
// and new, open; what was sent meanwhile is relayed at Resume or Heal. It
// is how a stopped (SIGSTOP) or hung peer looks from the network.
func (p *Proxy) Pause() { p.update(func() { p.paused = true }) }

// Resume ends a Pause.
func (p *Proxy) Resume() { p.update(func() { p.paused = false }) }

// SetLatency delays every chunk of data by d in each direction, keeping
// its order; zero relays at once.
func (p *Proxy) SetLatency(d time.Duration) { p.update(func() { p.latency = max(d, 0) }) }

// Heal clears every fault: the link relays again at once, without latency.
// Connections dropped meanwhile stay dropped; their dialers reconnect.
func (p *Proxy) Heal() {
	p.update(func() {
		p.cut, p.paused, p.latency = false, false, 0
		p.blocked = [2]bool{}
	})
}

// DropConnections resets every open connection once; new ones are relayed
// as usual (unless the link is cut).
func (p *Proxy) DropConnections() {
	p.mu.Lock()
	open := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		open = append(open, l)
	}
	p.mu.Unlock()
	for _, l := range open {
		l.close()
	}
}

// Close stops listening and resets every open connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.DropConnections()
	p.update(func() {}) // wake relays waiting out a pause
	p.wg.Wait()
	return err
}

func (p *Proxy) update(f func()) {
	p.mu.Lock()
	f()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// faults is a consistent copy of the faults, and a channel closed at the
// next change.
type faults struct {
	cut, paused bool
	blocked     [2]bool
	latency     time.Duration
	changed     <-chan struct{}
}

func (p *Proxy) faults() faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return faults{cut: p.cut, paused: p.paused, blocked: p.blocked, latency: p.latency, changed: p.changed}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient accept error (out of descriptors): the dialer
			// sees a failure and retries; the proxy goes on.
			continue
		}
		p.accepted.Add(1)
		if p.faults().cut {
			reset(c)
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve dials the target for one accepted connection and relays both ways
// until either side ends or the proxy drops it.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, DialTimeout)
	if err != nil {
		// The target is down: so is the link, seen from the dialer.
		reset(client)
		return
	}
	l := &link{client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed || p.cut {
		p.mu.Unlock()
		l.close()
		return
	}
	p.conns[l] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.relay(l, Forward, client, server) }()
	go func() { defer wg.Done(); p.relay(l, Backward, server, client) }()
	wg.Wait()
	l.end()
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
}

// chunk is data read from one side, stamped with when it was read so that
// latency counts from then.
type chunk struct {
	data []byte
	at   time.Time
}

// relay copies one direction of l. A reader and a writer goroutine meet
// through a small queue, so that latency delays data without slowing the
// reads behind it, and a pause holds both.
func (p *Proxy) relay(l *link, d Direction, from, to net.Conn) {
	queue := make(chan chunk, 64)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(queue)
		for {
			if !p.waitUnpaused(l) {
				return
			}
			buf := make([]byte, chunkSize)
			n, err := from.Read(buf)
			if n > 0 {
				select {
				case queue <- chunk{data: buf[:n], at: time.Now()}:
				case <-l.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range queue {
		for {
			f := p.faults()
			if f.paused {
				if !p.waitUnpaused(l) {
					return
				}
				continue
			}
			if wait := time.Until(c.at.Add(f.latency)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-f.changed: // the latency may have changed: look again
					t.Stop()
					continue
				case <-l.done:
					t.Stop()
					return
				}
			}
			break
		}
		if p.faults().blocked[d] {
			p.dropped.Add(int64(len(c.data)))
			continue // the bytes vanish on the way
		}
		if _, err := to.Write(c.data); err != nil {
			l.close()
			return
		}
	}
	// The source closed: pass the half-close on, as TCP would.
	if tc, ok := to.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// waitUnpaused blocks while the proxy is paused; false if the link ended.
func (p *Proxy) waitUnpaused(l *link) bool {
	for {
		f := p.faults()
		if !f.paused {
			return true
		}
		select {
		case <-f.changed:
		case <-l.done:
			return false
		}
	}
}

// link is one relayed connection.
type link struct {
	client, server net.Conn
	done           chan struct{}
	once           sync.Once
}

// close resets both sides: a fault, or a failed write.
func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		reset(l.client)
		reset(l.server)
	})
}

// end closes both sides cleanly once both directions have finished, so
// that data still in the kernel's buffers is delivered.
func (l *link) end() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		l.server.Close()
	})
}

// reset closes c with a TCP RST rather than a FIN, so that the other end
// sees "connection reset", as with a rejecting firewall, not a clean end.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

var _ io.Closer = (*Proxy)(nil)
