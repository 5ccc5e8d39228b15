//go:build unix

package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/resource"
)

// slowNode starts a node whose header and body timeouts are short, so that
// a cut-off is seen within a test's time.
func slowNode(t *testing.T, edit func(*node.Config)) *testnode.Node {
	t.Helper()
	cfg := testnode.Config(t, t.TempDir())
	cfg.Limits.HeaderTimeout = time.Second
	cfg.Limits.BodyTimeout = time.Second
	if edit != nil {
		edit(&cfg)
	}
	n := testnode.Start(t, &cfg)
	pollUntil(t, "ready", func() error { return readyz(n) })
	return n
}

// dialFrom opens a raw connection to n from loopback address src.
func dialFrom(t *testing.T, n *testnode.Node, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// healthy fails the test unless /healthz answers 200 within a bound.
func healthy(t *testing.T, n *testnode.Node, when string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(n.URL + "/healthz")
	if err != nil {
		t.Fatalf("/healthz %s: %v", when, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz %s: %d", when, resp.StatusCode)
	}
}

// endedByServer waits (bounded) until the server answers on c or closes it,
// and returns what it read; a client-side timeout fails the test.
func endedByServer(t *testing.T, c net.Conn, what string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server neither answered nor closed the connection (read %q)", what, b)
	}
	return string(b)
}

// trickle writes one byte of s every interval until the connection fails or
// s runs out, so that the client is slow but never silent.
func trickle(c net.Conn, s string, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := range len(s) {
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
		<-tick.C
	}
}

// Slowloris headers, a body that stops, and a body that trickles are all cut
// off by the node, while others keep being served: /healthz, and a user
// signing in.
func TestSlowClientsAreCutOff(t *testing.T) {
	n := slowNode(t, nil)

	slowHeaders := dialFrom(t, n, "127.0.0.2")
	go trickle(slowHeaders, "GET /healthz HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-Slow: y\r\n", 1000), 50*time.Millisecond)

	stalled := dialFrom(t, n, "127.0.0.3")
	io.WriteString(stalled, "POST /oauth2/v2.0/token HTTP/1.1\r\nHost: x\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\ngrant_type=pass")

	// 20 bytes a second: above nothing, far below the minimum rate.
	trickling := dialFrom(t, n, "127.0.0.4")
	io.WriteString(trickling, "POST /oauth2/v2.0/token HTTP/1.1\r\nHost: x\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n")
	go trickle(trickling, strings.Repeat("1\r\nx\r\n", 10000), 50*time.Millisecond)

	// Others are served while these wait for their cut-off.
	healthy(t, n, "beside slow clients")
	tok, err := clientFor(t, n, "").PasswordToken(context.Background(), "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatalf("sign in beside slow clients: %v", err)
	}
	stalledJSON := dialFrom(t, n, "127.0.0.5")
	fmt.Fprintf(stalledJSON, "POST /v1.0/me/notificationSubscriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"targetHostName\":", tok.AccessToken)
	if got := endedByServer(t, stalledJSON, "a JSON body that stops"); !strings.HasPrefix(got, "HTTP/1.1 400") ||
		!strings.Contains(got, `"code":"invalidRequest"`) || !strings.Contains(got, "too slowly") {
		t.Errorf("a JSON body that stops got %q, want 400 invalidRequest saying it came too slowly", got)
	}

	if got := endedByServer(t, slowHeaders, "slowloris headers"); strings.HasPrefix(got, "HTTP/1.1 2") {
		t.Errorf("slowloris headers got %q, want a close or an error", firstLine(got))
	}
	for _, c := range []struct {
		conn net.Conn
		what string
	}{{stalled, "a body that stops"}, {trickling, "a body that trickles"}} {
		got := endedByServer(t, c.conn, c.what)
		// The handler sees a read error and answers; nothing may reach
		// a 2xx or a 500.
		if strings.HasPrefix(got, "HTTP/1.1 2") || strings.HasPrefix(got, "HTTP/1.1 500") {
			t.Errorf("%s got %q", c.what, firstLine(got))
		}
		if strings.Contains(got, "127.0.0.1") {
			t.Errorf("%s: the answer names an address: %q", c.what, got)
		}
		t.Logf("%s: %q", c.what, got[strings.LastIndex(got, "\r\n")+2:])
	}
	healthy(t, n, "after the cut-offs")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// 500 connections each sending a 1 MB header block that never ends: the
// node stops reading each at max-header-bytes and answers 431, so the Go
// heap grows by at most what those bounded reads hold, and /healthz
// answers meanwhile.
func TestHugeUnfinishedHeadersKeepMemoryBounded(t *testing.T) {
	n := slowNode(t, nil)
	const conns, size = 500, 1 << 20
	junk := []byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", size))

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse

	var wg sync.WaitGroup
	var mu sync.Mutex
	var answered431 int
	for i := range conns {
		// Two client addresses, each under the per-address cap.
		c := dialFrom(t, n, fmt.Sprintf("127.0.0.%d", 10+i%2))
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			c.Write(junk) // fails once the node has answered and closed
			if b, _ := io.ReadAll(c); strings.HasPrefix(string(b), "HTTP/1.1 431") {
				mu.Lock()
				answered431++
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	peak := base
	sampled := false
	for {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		if !sampled {
			healthy(t, n, "while 500 clients send huge headers")
			sampled = true
		}
		select {
		case <-done:
		case <-time.After(10 * time.Millisecond):
			continue
		}
		break
	}
	// The heap in use counts garbage not yet collected, so the bound is
	// what each connection allocates in all: a header line of at most
	// max-header-bytes + 4 KiB, grown by doubling (less than twice its
	// final capacity in all, which is itself at most twice the length),
	// and 8 KiB of buffers; plus 32 MiB for the rest of the process.
	// About 100 MiB. Without the bound each connection would take at least
	// its whole megabyte: 500 MiB.
	perConn := uint64(4*(n.Config.Limits.MaxHeaderBytes+4<<10) + 8<<10)
	bound := conns*perConn + 32<<20
	grew := int64(peak) - int64(base)
	t.Logf("heap in use grew by %d MiB at peak (bound %d MiB); %d of %d connections answered 431",
		grew>>20, bound>>20, answered431, conns)
	if grew > int64(bound) {
		t.Errorf("heap in use grew by %d MiB under 500 unfinished 1 MB headers; bound %d MiB", grew>>20, bound>>20)
	}
	if answered431 == 0 {
		t.Errorf("no connection was answered 431")
	}
	healthy(t, n, "after huge headers")
}

// A live stream whose client never reads cannot hold the node: once the
// socket buffers are full, the stream falls behind its bounded buffer in the
// hub (1,024 events) or meets its write deadline, and the node closes it,
// serving others throughout.
func TestStreamThatNeverReadsIsDropped(t *testing.T) {
	// No rate limit: the test sends until the stream is dropped.
	n := slowNode(t, func(c *node.Config) { c.Limits.UserRate = 0 })
	ctx := context.Background()
	token := adminTokenOf(t, n)
	admin := clientFor(t, n, token)
	if _, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Tasks", TargetHostName: "tasks.slow.test"}); err != nil {
		t.Fatal(err)
	}

	// A small receive buffer so that the node's writes block soon.
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	c, err := d.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1.0/me/notifications/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", token)
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("open stream: %q, %v", status, err)
	}
	pollUntil(t, "the stream is open", func() error {
		if v := metric(t, n, "herald_open_streams"); v != 1 {
			return fmt.Errorf("herald_open_streams = %v", v)
		}
		return nil
	})

	// The largest payload, sent by eight senders at once, fills the socket
	// buffers soon; the write deadline then ends the stream.
	payload := strings.Repeat("p", resource.MaxPayloadBytes-100)
	var sent atomic.Int64
	// A longer deadline than pollUntil's: under the race detector on a
	// loaded machine the sends alone can take 20 s.
	pollFor(t, time.Minute, "the node drops the stream that never reads", func() error {
		if v := metric(t, n, "herald_open_streams"); v == 0 {
			return nil
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				for range 10 {
					if _, err := admin.SendToUser(ctx, "admin", &client.Notification{TargetHostName: "tasks.slow.test",
						Payload: &client.Payload{RawContent: payload}}); err != nil {
						errs <- fmt.Errorf("send: %w", err)
						return
					}
					sent.Add(1)
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		healthy(t, n, "beside a stream that never reads")
		return fmt.Errorf("still open after %d notifications", sent.Load())
	})
	t.Logf("the stream was dropped after %d notifications", sent.Load())
	healthy(t, n, "after the stream was dropped")
}

// Requests beyond max-in-flight get 503 with Retry-After in the contract's
// error shape at once, while /healthz, /metrics and live streams, which do
// not count, are still served; connections beyond max-conns-per-ip are closed while
// other addresses get in.
func TestInFlightAndPerAddressBounds(t *testing.T) {
	n := slowNode(t, func(c *node.Config) {
		c.Limits.MaxInFlight = 2
		c.Limits.MaxConnsPerIP = 3
		c.Limits.BodyTimeout = time.Minute // the held bodies must not be cut off
	})
	token := adminTokenOf(t, n)

	// Two requests whose bodies have not arrived are in flight.
	var held []net.Conn
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		c := dialFrom(t, n, src)
		if _, err := io.WriteString(c, "POST /oauth2/v2.0/token HTTP/1.1\r\nHost: x\r\n"+
			"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant"); err != nil {
			t.Fatalf("send the held request from %s: %v", src, err)
		}
		held = append(held, c)
	}
	pollUntil(t, "two requests held in flight", func() error {
		if v := metric(t, n, "herald_http_requests_in_flight"); v != 2 {
			for _, c := range held {
				// Whatever the server said or did to a held request
				// tells why it is not in flight.
				c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
				b := make([]byte, 512)
				var ne net.Error
				if k, err := c.Read(b); k > 0 || !errors.As(err, &ne) || !ne.Timeout() {
					return fmt.Errorf("herald_http_requests_in_flight = %v; %s got %q, %v", v, c.LocalAddr(), b[:k], err)
				}
			}
			return fmt.Errorf("herald_http_requests_in_flight = %v", v)
		}
		return nil
	})
	var busy string
	pollUntil(t, "a third request is refused as busy", func() error {
		req, _ := http.NewRequest(http.MethodGet, n.URL+"/v1.0/me", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		busy = string(b)
		return nil
	})
	if !strings.Contains(busy, `"code":"serviceNotAvailable"`) {
		t.Errorf("busy answer %s, want the error shape with serviceNotAvailable", busy)
	}
	healthy(t, n, "with max-in-flight reached")
	s, err := openStream(context.Background(), n, token, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.status != http.StatusOK {
		t.Errorf("stream with max-in-flight reached: %d", s.status)
	}

	// 127.0.0.4 may hold three connections; a fourth is closed on arrival.
	for range 3 {
		dialFrom(t, n, "127.0.0.4")
	}
	pollUntil(t, "three connections from 127.0.0.4 admitted", func() error {
		if v := metric(t, n, "herald_http_connections_open"); v < 6 {
			return fmt.Errorf("herald_http_connections_open = %v", v)
		}
		return nil
	})
	over := dialFrom(t, n, "127.0.0.4")
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err == nil || errors.As(err, new(net.Error)) && err.(net.Error).Timeout() {
		t.Fatalf("a fourth connection from 127.0.0.4 was not closed: %v", err)
	}
	if v := metric(t, n, `herald_http_connections_refused_total{limit="client"}`); v != 1 {
		t.Errorf(`herald_http_connections_refused_total{limit="client"} = %v, want 1`, v)
	}
}

// An ordinary answer had no write deadline: a client that asked for a page
// of 1,000 large notifications (about 4 MiB) and read none of it held the
// page in the node's memory and a place among the requests in flight for as
// long as it kept the connection open (256 such from one address: about
// 1.3 GiB, and every place when the bound is at its floor). Such a client is
// cut off, as a stream that never reads is.
func TestAnswerThatIsNeverReadIsCutOff(t *testing.T) {
	n := slowNode(t, func(c *node.Config) { c.Limits.AppRate, c.Limits.UserRate = 0, 0 })
	ctx := context.Background()
	token := adminTokenOf(t, n)
	admin := clientFor(t, n, token)
	if _, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Tasks", TargetHostName: "tasks.slow.test"}); err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("p", resource.MaxPayloadBytes-100)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < 1000; i += 8 {
				if _, err := admin.SendToUser(ctx, "admin", &client.Notification{TargetHostName: "tasks.slow.test",
					Payload: &client.Payload{RawContent: payload}}); err != nil {
					errs <- fmt.Errorf("send: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}

	// A small receive buffer, and nothing read: the node's writes block.
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	c, err := d.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1.0/me/notifications?$top=1000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", token)
	pollUntil(t, "the page is being written", func() error {
		if v := metric(t, n, "herald_http_requests_in_flight"); v != 1 {
			return fmt.Errorf("herald_http_requests_in_flight = %v", v)
		}
		return nil
	})
	pollFor(t, time.Minute, "the node gives up the answer no one reads", func() error {
		if v := metric(t, n, "herald_http_requests_in_flight"); v != 0 {
			return fmt.Errorf("herald_http_requests_in_flight = %v", v)
		}
		return nil
	})
	healthy(t, n, "after the answer was cut off")
	// A client that reads gets the whole page.
	req, _ := http.NewRequest(http.MethodGet, n.URL+"/v1.0/me/notifications?$top=1000", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct{ Value []json.RawMessage }
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || len(page.Value) != 1000 {
		t.Errorf("a page read at once: %d notifications, %v; want 1000", len(page.Value), err)
	}
}
