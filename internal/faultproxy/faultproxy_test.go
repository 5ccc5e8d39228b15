package faultproxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/faultproxy"
)

// echo is a target that writes back what it reads and remembers it.
type echo struct {
	ln  net.Listener
	mu  sync.Mutex
	got bytes.Buffer
}

func newEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						e.mu.Lock()
						e.got.Write(buf[:n])
						e.mu.Unlock()
						c.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return e
}

func (e *echo) received() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.got.String()
}

func start(t *testing.T) (*faultproxy.Proxy, *echo) {
	t.Helper()
	e := newEcho(t)
	p, err := faultproxy.New(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, e
}

func dial(t *testing.T, p *faultproxy.Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads the same number of bytes back.
func roundTrip(c net.Conn, msg string) (string, error) {
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

func pollUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRelaysBothWays(t *testing.T) {
	p, e := start(t)
	c := dial(t, p)
	if got, err := roundTrip(c, "hello"); err != nil || got != "hello" {
		t.Fatalf("echo through the proxy: %q, %v", got, err)
	}
	if e.received() != "hello" || p.Open() != 1 || p.Accepted() != 1 {
		t.Fatalf("target got %q; %d open, %d accepted", e.received(), p.Open(), p.Accepted())
	}
	// A large transfer arrives whole and in order.
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10)
	go c.Write(big)
	back := make([]byte, len(big))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, big) {
		t.Fatalf("1 MiB through the proxy: equal %v, %v", bytes.Equal(back, big), err)
	}
}

// A cut resets the open connection and every new one until Heal.
func TestCutResetsOpenAndNewConnections(t *testing.T) {
	p, _ := start(t)
	c := dial(t, p)
	if _, err := roundTrip(c, "a"); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	if _, err := roundTrip(c, "b"); err == nil {
		t.Fatal("an open connection still relays after Cut")
	}
	// The listener still accepts (the port is not freed for someone else),
	// but the connection is reset before anything is relayed, sometimes
	// before the dialer's handshake completes.
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		defer c2.Close()
		if got, err := roundTrip(c2, "c"); err == nil {
			t.Fatalf("a new connection relayed %q while cut", got)
		}
	}
	p.Heal()
	c3 := dial(t, p)
	if got, err := roundTrip(c3, "d"); err != nil || got != "d" {
		t.Fatalf("after Heal: %q, %v", got, err)
	}
}

// A one-way cut swallows the bytes sent that way and keeps the connection.
func TestCutDirectionSwallowsOneWay(t *testing.T) {
	p, e := start(t)
	c := dial(t, p)
	if _, err := roundTrip(c, "a"); err != nil {
		t.Fatal(err)
	}
	p.CutDirection(faultproxy.Backward)
	io.WriteString(c, "b")
	// The target got "b" and echoed it; the echo vanished on the way back.
	pollUntil(t, "the echo swallowed", func() bool { return e.received() == "ab" && p.Discarded() == 1 })
	p.Heal()
	if got, err := roundTrip(c, "c"); err != nil || got != "c" {
		t.Fatalf("after Heal the client read %q, %v; want only the new echo", got, err)
	}

	p.CutDirection(faultproxy.Forward)
	io.WriteString(c, "d")
	pollUntil(t, "the request swallowed", func() bool { return p.Discarded() == 2 })
	p.Heal()
	if got, err := roundTrip(c, "e"); err != nil || got != "e" || e.received() != "abce" {
		t.Fatalf("after Heal: %q, %v; the target got %q", got, err, e.received())
	}
}

// A pause holds what is sent, on old and new connections, and relays it
// at Resume.
func TestPauseHoldsAndResumeDelivers(t *testing.T) {
	p, e := start(t)
	c := dial(t, p)
	if _, err := roundTrip(c, "a"); err != nil {
		t.Fatal(err)
	}
	p.Pause()
	io.WriteString(c, "b")
	c2 := dial(t, p)
	io.WriteString(c2, "c")
	// Nothing comes back while paused; a short deadline is all a test of
	// absence can do, and it cannot pass a proxy that relays.
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes while paused (%v)", n, err)
	}
	if got := e.received(); got != "a" {
		t.Fatalf("the target got %q while paused", got)
	}
	p.Resume()
	for i, conn := range []net.Conn{c, c2} {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 1)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != []string{"b", "c"}[i] {
			t.Fatalf("connection %d after Resume: %q, %v", i, buf, err)
		}
	}
}

// Latency delays each way; a round trip takes at least twice as long.
func TestLatencyDelaysBothWays(t *testing.T) {
	p, _ := start(t)
	c := dial(t, p)
	const d = 100 * time.Millisecond
	p.SetLatency(d)
	began := time.Now()
	if got, err := roundTrip(c, "x"); err != nil || got != "x" {
		t.Fatalf("%q, %v", got, err)
	}
	if took := time.Since(began); took < 2*d {
		t.Fatalf("round trip took %v with %v each way", took, d)
	}
	p.SetLatency(0)
	if got, err := roundTrip(c, "y"); err != nil || got != "y" {
		t.Fatalf("%q, %v", got, err)
	}
}

// DropConnections resets the open connections once; new ones relay.
func TestDropConnectionsOnce(t *testing.T) {
	p, _ := start(t)
	c := dial(t, p)
	if _, err := roundTrip(c, "a"); err != nil {
		t.Fatal(err)
	}
	p.DropConnections()
	if _, err := roundTrip(c, "b"); err == nil {
		t.Fatal("a dropped connection still relays")
	}
	pollUntil(t, "the dropped connection gone", func() bool { return p.Open() == 0 })
	if got, err := roundTrip(dial(t, p), "c"); err != nil || got != "c" {
		t.Fatalf("a new connection: %q, %v", got, err)
	}
}

// A target that is down looks like a cut link to the dialer.
func TestTargetDownResets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := faultproxy.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// The reset may even beat the dialer's own handshake.
	c, err := net.Dial("tcp", p.Addr())
	if err == nil {
		defer c.Close()
		if _, err := roundTrip(c, "a"); err == nil {
			t.Fatal("relayed to a target that is down")
		}
	}
}

// Close ends the listener and every open connection.
func TestCloseEndsEverything(t *testing.T) {
	p, _ := start(t)
	c := dial(t, p)
	if _, err := roundTrip(c, "a"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c, "b"); err == nil {
		t.Fatal("relayed after Close")
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.Close()
		t.Fatal("still accepting after Close")
	}
}

// A group applies each fault to all its proxies.
func TestGroupAppliesToEveryLink(t *testing.T) {
	p1, _ := start(t)
	p2, _ := start(t)
	g := faultproxy.Group{p1, p2}
	c1, c2 := dial(t, p1), dial(t, p2)
	g.Cut()
	for i, c := range []net.Conn{c1, c2} {
		if _, err := roundTrip(c, "a"); err == nil {
			t.Fatalf("link %d relays after the group was cut", i)
		}
	}
	g.Heal()
	for i, p := range g {
		if got, err := roundTrip(dial(t, p), "b"); err != nil || got != "b" {
			t.Fatalf("link %d after Heal: %q, %v", i, got, err)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}
