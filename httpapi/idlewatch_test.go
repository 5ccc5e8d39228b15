package httpapi_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testcerts"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// dialStream opens a stream with a bare connection and returns it with the
// status line the server answered.
func dialStream(t testing.TB, host, token string, ws bool) (net.Conn, string) {
	t.Helper()
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	return openStreamOn(t, conn, host, token, ws)
}

// openStreamOn asks for a stream on conn and reads the response head (for
// SSE, up to the first comment).
func openStreamOn(t testing.TB, conn net.Conn, host, token string, ws bool) (net.Conn, string) {
	t.Helper()
	req := "GET /v1.0/me/notifications/stream HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + token + "\r\n"
	if ws {
		req += "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	} else {
		req += "Accept: text/event-stream\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	head := readUntil(conn, []byte("\r\n\r\n"), streamWait)
	line, _, _ := strings.Cut(string(head), "\r\n")
	if !ws && strings.Contains(line, " 200 ") && !bytes.Contains(head, []byte(": connected\n\n")) {
		readUntil(conn, []byte(": connected\n\n"), streamWait)
	}
	return conn, line
}

// maskedFrame is a client's frame: masked, as RFC 6455 asks of clients.
func maskedFrame(opcode byte, payload string) []byte {
	mask := [4]byte{1, 2, 3, 4}
	b := []byte{0x80 | opcode, 0x80 | byte(len(payload))}
	b = append(b, mask[:]...)
	for i := range len(payload) {
		b = append(b, payload[i]^mask[i%4])
	}
	return b
}

// An idle stream holds no goroutine of its own on Linux: the kernel
// watches its connection (idlewatch_linux.go). Before, each held one
// blocked in a read, whose stack the collector walked in every cycle.
func TestIdleStreamsHoldNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("idle connections are watched by epoll on Linux only; elsewhere each keeps a reading goroutine")
	}
	e := newStreamEnv(t, func(c *node.Config) { c.Limits.MaxConns, c.Limits.MaxConnsPerIP = 0, 0 })
	u, err := url.Parse(e.url)
	if err != nil {
		t.Fatal(err)
	}
	const each = 40
	before := runtime.NumGoroutine()
	var conns []net.Conn
	for i := range 2 * each {
		c, line := dialStream(t, u.Host, e.user, i%2 == 1)
		if !strings.Contains(line, " 200 ") && !strings.Contains(line, " 101 ") {
			t.Fatalf("stream %d: %q", i, line)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	deadline := time.Now().Add(streamWait)
	for n := runtime.NumGoroutine() - before; n >= each/2; n = runtime.NumGoroutine() - before {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle streams left %d more goroutines", 2*each, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	title := fmt.Sprintf("still-watched-%d", time.Now().UnixNano())
	e.sendTitled(t, title)
	for i, c := range conns {
		if got := readUntil(c, []byte(title), streamWait); !bytes.Contains(got, []byte(title)) {
			t.Fatalf("idle stream %d did not receive: %q", i, got)
		}
	}
}

// A client that goes away, without a word, gives back its place among the
// user's streams: the watch sees the connection end while nothing is being
// written to it.
func TestStreamOfAClientGoneIsReleased(t *testing.T) {
	for _, ws := range []bool{false, true} {
		t.Run(map[bool]string{false: "sse", true: "ws"}[ws], func(t *testing.T) {
			e := newStreamEnv(t, func(c *node.Config) { c.Limits.MaxStreamsPerUser = 2 })
			u, err := url.Parse(e.url)
			if err != nil {
				t.Fatal(err)
			}
			ok := " 200 "
			if ws {
				ok = " 101 "
			}
			a, line := dialStream(t, u.Host, e.user, ws)
			defer a.Close()
			b, line2 := dialStream(t, u.Host, e.user, ws)
			if !strings.Contains(line, ok) || !strings.Contains(line2, ok) {
				t.Fatalf("two streams: %q, %q", line, line2)
			}
			c, line := dialStream(t, u.Host, e.user, ws)
			c.Close()
			if !strings.Contains(line, " 429 ") {
				t.Fatalf("a third stream over the limit of two: %q", line)
			}
			b.Close()
			awaitStreamLetIn(t, "after a client went away", ok, func() (net.Conn, string) {
				return dialStream(t, u.Host, e.user, ws)
			}).Close()
		})
	}
}

// Each frame a WebSocket client sends wakes its stream's reader, which
// hands the connection back to the watch once the frame is answered: a
// ping is answered every time, one at a time or several in one write.
func TestWebSocketPingsAnsweredAfterEachIdle(t *testing.T) {
	e := newStreamEnv(t, nil)
	u, err := url.Parse(e.url)
	if err != nil {
		t.Fatal(err)
	}
	conn, line := dialStream(t, u.Host, e.user, true)
	defer conn.Close()
	if !strings.Contains(line, " 101 ") {
		t.Fatalf("handshake: %q", line)
	}
	pong := func(payload string) []byte { return append([]byte{0x8A, byte(len(payload))}, payload...) }
	for i := range 5 {
		p := fmt.Sprintf("ping-%d", i)
		if _, err := conn.Write(maskedFrame(0x9, p)); err != nil {
			t.Fatal(err)
		}
		if got := readUntil(conn, pong(p), streamWait); !bytes.Contains(got, pong(p)) {
			t.Fatalf("ping %d: no pong, read %q", i, got)
		}
	}
	both := append(maskedFrame(0x9, "first"), maskedFrame(0x9, "second")...)
	if _, err := conn.Write(both); err != nil {
		t.Fatal(err)
	}
	got := readUntil(conn, pong("second"), streamWait)
	if !bytes.Contains(got, pong("first")) || !bytes.Contains(got, pong("second")) {
		t.Fatalf("two pings in one write: read %q", got)
	}
	title := fmt.Sprintf("after-pings-%d", time.Now().UnixNano())
	e.sendTitled(t, title)
	if got := readUntil(conn, []byte(title), streamWait); !bytes.Contains(got, []byte(title)) {
		t.Fatalf("no event after the pings: %q", got)
	}
}

// Over TLS the watch sees the socket under the TLS connection; the reader
// it starts reads through TLS. A WebSocket reader does not hand the
// connection back (TLS reads records ahead), so pings are answered by it
// from then on; an SSE stream still ends when its client goes away.
func TestIdleWatchOverTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "public")
	srv := ca.Server(t, "srv", "127.0.0.1")
	cfg := testnode.Config(t, t.TempDir())
	cfg.TLSCert, cfg.TLSKey = srv.Cert, srv.Key
	cfg.Limits.AppRate, cfg.Limits.UserRate = 0, 0
	cfg.Limits.MaxStreamsPerUser = 1
	n := testnode.Start(t, &cfg)
	tlsConf := &tls.Config{RootCAs: ca.Pool()}
	e := setUpStreamEnv(t, n, &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}})
	u, err := url.Parse(e.url)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(ws bool) (net.Conn, string) {
		t.Helper()
		raw, err := tls.Dial("tcp", u.Host, tlsConf) // no ALPN: HTTP/1.1
		if err != nil {
			t.Fatal(err)
		}
		return openStreamOn(t, raw, u.Host, e.user, ws)
	}

	conn, line := dial(true)
	if !strings.Contains(line, " 101 ") {
		t.Fatalf("handshake: %q", line)
	}
	for i := range 3 {
		p := fmt.Sprintf("ping-%d", i)
		if _, err := conn.Write(maskedFrame(0x9, p)); err != nil {
			t.Fatal(err)
		}
		want := append([]byte{0x8A, byte(len(p))}, p...)
		if got := readUntil(conn, want, streamWait); !bytes.Contains(got, want) {
			t.Fatalf("ping %d over TLS: no pong, read %q", i, got)
		}
	}
	conn.Close()

	// The one stream the user may have is free again once the client is
	// gone; the next, an SSE stream, is let in and receives.
	sse := awaitStreamLetIn(t, "after the WebSocket client left", " 200 ", func() (net.Conn, string) { return dial(false) })
	title := fmt.Sprintf("over-tls-%d", time.Now().UnixNano())
	e.sendTitled(t, title)
	if got := readUntil(sse, []byte(title), streamWait); !bytes.Contains(got, []byte(title)) {
		t.Fatalf("no event over TLS: %q", got)
	}
	sse.Close()
	awaitStreamLetIn(t, "after the SSE client left", " 200 ", func() (net.Conn, string) { return dial(false) }).Close()
}

// awaitStreamLetIn opens streams with dial until one is answered with ok,
// and returns it: until then each must be refused with 429, the user's
// limit, and the wait is bounded by streamWait.
func awaitStreamLetIn(t *testing.T, when, ok string, dial func() (net.Conn, string)) net.Conn {
	t.Helper()
	deadline := time.Now().Add(streamWait)
	for {
		c, line := dial()
		if strings.Contains(line, ok) {
			return c
		}
		c.Close()
		if !strings.Contains(line, " 429 ") || time.Now().After(deadline) {
			t.Fatalf("%s, a new stream: %q", when, line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
