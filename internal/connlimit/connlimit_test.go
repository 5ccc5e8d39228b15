package connlimit

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// dialFrom opens a TCP connection to addr from the loopback address src, so
// that one test can play several clients.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// acceptOne accepts the next admitted connection, failing after a deadline.
func acceptOne(t *testing.T, accepted <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-accepted:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection admitted")
		return nil
	}
}

// closedByPeer reports whether the server side closed c: a read sees EOF
// or a reset rather than timing out.
func closedByPeer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func startListener(t *testing.T, max, perIP int) (*Listener, <-chan net.Conn, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var byClient, byServer atomic.Int64
	l := New(raw, max, perIP, func(_ net.Addr, perIP bool) {
		if perIP {
			byClient.Add(1)
		} else {
			byServer.Add(1)
		}
	})
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l, accepted, &byClient, &byServer
}

func TestPerClientCapRefusesOnlyThatClient(t *testing.T) {
	l, accepted, byClient, _ := startListener(t, 0, 2)
	addr := l.Addr().String()
	var held []net.Conn
	for range 2 {
		dialFrom(t, "127.0.0.2", addr)
		held = append(held, acceptOne(t, accepted))
	}
	over := dialFrom(t, "127.0.0.2", addr)
	if !closedByPeer(over) {
		t.Fatal("a third connection from 127.0.0.2 was not closed")
	}
	if byClient.Load() != 1 {
		t.Errorf("refusals counted against the client = %d, want 1", byClient.Load())
	}
	// Another client still gets in.
	dialFrom(t, "127.0.0.3", addr)
	acceptOne(t, accepted)
	if got := l.OpenFrom(held[0].RemoteAddr()); got != 2 {
		t.Errorf("open from 127.0.0.2 = %d, want 2", got)
	}
	// Closing one (twice: the server and a hijacker may both) frees
	// exactly one slot.
	held[0].Close()
	held[0].Close()
	if got := l.OpenFrom(held[1].RemoteAddr()); got != 1 {
		t.Fatalf("open from 127.0.0.2 after a close = %d, want 1", got)
	}
	dialFrom(t, "127.0.0.2", addr)
	acceptOne(t, accepted)
	if l.Open() != 3 {
		t.Errorf("open = %d, want 3", l.Open())
	}
}

func TestServerCapRefusesEveryone(t *testing.T) {
	l, accepted, _, byServer := startListener(t, 2, 0)
	addr := l.Addr().String()
	dialFrom(t, "127.0.0.2", addr)
	first := acceptOne(t, accepted)
	dialFrom(t, "127.0.0.3", addr)
	acceptOne(t, accepted)
	if !closedByPeer(dialFrom(t, "127.0.0.4", addr)) {
		t.Fatal("a connection over the server's cap was not closed")
	}
	if byServer.Load() != 1 {
		t.Errorf("refusals counted against the server = %d, want 1", byServer.Load())
	}
	first.Close()
	dialFrom(t, "127.0.0.4", addr)
	acceptOne(t, accepted)
}

func TestClientKeyGroupsIPv6By64(t *testing.T) {
	a := &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 1}
	b := &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:bbbb::9"), Port: 2}
	c := &net.TCPAddr{IP: net.ParseIP("2001:db8:1:3::1"), Port: 3}
	if clientKey(a) != clientKey(b) {
		t.Errorf("one /64 counted as two clients: %s, %s", clientKey(a), clientKey(b))
	}
	if clientKey(a) == clientKey(c) {
		t.Errorf("two /64s counted as one client: %s", clientKey(a))
	}
	v4 := &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 4}
	if clientKey(v4) != "192.0.2.7" {
		t.Errorf("IPv4-mapped key = %s, want 192.0.2.7", clientKey(v4))
	}
}

// A body that stops arriving is cut off once grace has passed, and one that
// arrives in full clears the deadline so the handler can keep working.
func TestBodyReaderCutsOffAStalledBody(t *testing.T) {
	const grace = 300 * time.Millisecond
	type result struct {
		n   int
		err error
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := NewBodyReader(r.Body, http.NewResponseController(w), grace, 1<<30)
		b, err := io.ReadAll(body)
		if err == nil {
			// The whole body came: the connection's deadline must not be
			// set again (minRate is so high that it would fall within the
			// wait), or the server's background read would cancel the
			// request while the handler still works.
			select {
			case <-r.Context().Done():
				err = errors.New("context cancelled after the body")
			case <-time.After(2 * grace):
			}
		}
		results <- result{len(b), err}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
	select {
	case r := <-results:
		var ne net.Error
		if !errors.As(r.err, &ne) || !ne.Timeout() {
			t.Fatalf("stalled body: read %d bytes, err %v; want a timeout", r.n, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled body was not cut off")
	}

	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader(strings.Repeat("x", 5000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r := <-results; r.err != nil || r.n != 5000 {
		t.Fatalf("complete body: read %d bytes, err %v", r.n, r.err)
	}
}

// A body that keeps arriving above the minimum rate is not cut off, though
// it takes several times grace in all.
func TestBodyReaderLetsASlowButSteadyBodyThrough(t *testing.T) {
	const grace = 200 * time.Millisecond
	type result struct {
		n   int
		err error
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(NewBodyReader(r.Body, http.NewResponseController(w), grace, 100))
		results <- result{len(b), err}
	}))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 20 chunks of 10 bytes, one every 50 ms: 200 bytes a second, twice
	// the minimum, over a second, five times grace.
	const chunks, size = 20, 10
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range chunks {
		<-tick.C
		if _, err := io.WriteString(c, strings.Repeat("x", size)); err != nil {
			t.Fatalf("the server stopped taking the body: %v", err)
		}
	}
	select {
	case r := <-results:
		if r.err != nil || r.n != chunks*size {
			t.Fatalf("read %d bytes, err %v; want %d and no error", r.n, r.err, chunks*size)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never finished reading")
	}
}
