package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-notify/herald/node"
)

// memSample is what the process holds: live heap objects and goroutine
// stacks, read after a collection so garbage does not count.
type memSample struct {
	heap, stacks, goroutines float64
}

func readMem() memSample {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(s)
	return memSample{float64(s[0].Value.Uint64()), float64(s[1].Value.Uint64()), float64(s[2].Value.Uint64())}
}

// openRawStream opens a stream with a bare connection that holds nothing
// but its socket once the stream has begun, so what the process gains per
// stream is nearly all the server's.
func openRawStream(b *testing.B, host, token string, ws bool) net.Conn {
	conn, line := dialStream(b, host, token, ws)
	if !strings.Contains(line, " 200 ") && !strings.Contains(line, " 101 ") {
		b.Fatalf("stream did not begin: %q", line)
	}
	return conn
}

// readUntil reads conn until want has been seen, the deadline passes or
// the connection fails, and returns what it read.
func readUntil(conn net.Conn, want []byte, within time.Duration) []byte {
	conn.SetReadDeadline(time.Now().Add(within))
	defer conn.SetReadDeadline(time.Time{})
	var got []byte
	buf := make([]byte, 512)
	for !bytes.Contains(got, want) {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	return got
}

// BenchmarkIdleStreamMemory opens streams idle streams over loopback against
// a real node and reports what each one costs the process while idle
// (live heap plus goroutine stacks, from runtime/metrics), then proves every
// stream still receives. Run it once:
//
//	go test -run '^$' -bench IdleStreamMemory -benchtime 1x ./httpapi
func BenchmarkIdleStreamMemory(b *testing.B) {
	const streams = 2000
	for _, tr := range []string{"sse", "ws"} {
		b.Run(tr, func(b *testing.B) {
			e := newStreamEnv(b, func(c *node.Config) {
				c.Limits.MaxConns, c.Limits.MaxConnsPerIP = 0, 0
			})
			u, err := url.Parse(e.url)
			if err != nil {
				b.Fatal(err)
			}
			for range b.N {
				before := readMem()
				conns := make([]net.Conn, 0, streams)
				for range streams {
					conns = append(conns, openRawStream(b, u.Host, e.user, tr == "ws"))
				}
				// Each stream's listener is registered before its first
				// bytes are written, so every stream is open here.
				after := readMem()
				n := float64(streams)
				b.ReportMetric((after.heap-before.heap)/n, "heap-B/stream")
				b.ReportMetric((after.stacks-before.stacks)/n, "stack-B/stream")
				b.ReportMetric((after.heap+after.stacks-before.heap-before.stacks)/n, "B/stream")
				b.ReportMetric((after.goroutines-before.goroutines)/n, "goroutines/stream")

				title := fmt.Sprintf("still-receiving-%d", time.Now().UnixNano())
				e.sendTitled(b, title)
				for i, c := range conns {
					if got := readUntil(c, []byte(title), 10*time.Second); !bytes.Contains(got, []byte(title)) {
						b.Fatalf("stream %d of %d did not receive the notification: %q", i, streams, got)
					}
				}
				for _, c := range conns {
					c.Close()
				}
			}
		})
	}
}

// The stream's own WebSocket side answers what a client may send: a ping
// with a pong, a data message with 1008, a close with a close; and a
// handshake it cannot accept with the contract's 400.
func TestStreamWebSocketControlFrames(t *testing.T) {
	e := newStreamEnv(t, nil)

	auth := http.Header{"Authorization": {"Bearer " + e.user}}
	ws := e.openWS(t, "", auth, nil)
	ctx, cancel := context.WithTimeout(context.Background(), streamWait)
	defer cancel()
	if err := ws.conn.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	want := e.sendTitled(t, "after the ping")
	if got := expectStreamIDs(t, ws, []string{want.ID}); len(got) != 1 {
		t.Fatalf("events after a ping: %v", got)
	}
	if err := ws.conn.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ws.done:
	case <-time.After(streamWait):
		t.Fatal("a data message did not end the stream")
	}
	if code := websocket.CloseStatus(ws.err); code != websocket.StatusPolicyViolation {
		t.Errorf("closed with %v (%v), want 1008", code, ws.err)
	}

	closing := e.openWS(t, "", auth, nil)
	if err := closing.conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close handshake: %v", err)
	}

	status, body := e.do(t, "GET", "/v1.0/me/notifications/stream", e.user,
		http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-WebSocket-Version": {"12"}, "Sec-WebSocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}, "")
	var er struct {
		Error struct{ Code string } `json:"error"`
	}
	if status != http.StatusBadRequest || json.Unmarshal(body, &er) != nil || er.Error.Code == "" {
		t.Errorf("handshake with version 12: %d %s", status, body)
	}
}
