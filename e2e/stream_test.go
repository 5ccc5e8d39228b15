package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// streamEvent is one event of the live stream, from SSE or WebSocket.
type streamEvent struct {
	Type   string // created, updated, deleted, or another SSE event name
	Cursor string // the SSE id, or the WebSocket frame's cursor
	Data   string // the notification JSON
}

func (e streamEvent) notification(t testing.TB) notification {
	t.Helper()
	var n notification
	if err := json.Unmarshal([]byte(e.Data), &n); err != nil {
		t.Fatalf("event %s: data %q: %v", e.Type, e.Data, err)
	}
	return n
}

// stream is an open live stream whose events arrive on C; C is closed when
// the stream ends.
type stream struct {
	name string
	C    <-chan streamEvent
}

// next returns the next event, failing the test if none comes within
// eventTimeout or the stream ends.
func (s *stream) next(t testing.TB) streamEvent {
	t.Helper()
	select {
	case ev, ok := <-s.C:
		if !ok {
			t.Fatalf("%s: the stream ended while an event was awaited", s.name)
		}
		return ev
	case <-time.After(eventTimeout):
		t.Fatalf("%s: no event within %s", s.name, eventTimeout)
	}
	panic("unreachable")
}

// expect returns the next event and checks its type and notification id.
func (s *stream) expect(t testing.TB, typ, id string) streamEvent {
	t.Helper()
	ev := s.next(t)
	if ev.Type != typ {
		t.Fatalf("%s: got event %q (%s), want %q", s.name, ev.Type, ev.Data, typ)
	}
	if got := ev.notification(t).ID; got != id {
		t.Fatalf("%s: %s event for notification %q, want %q", s.name, typ, got, id)
	}
	if ev.Cursor == "" {
		t.Fatalf("%s: %s event without a cursor", s.name, typ)
	}
	return ev
}

// openSSE opens GET /v1.0/me/notifications/stream as Server-Sent Events,
// authenticated by the Authorization header, resuming after lastEventID
// when it is not empty. It returns once the server has answered 200, when
// the stream is registered for live events.
func openSSE(t testing.TB, baseURL, token, lastEventID string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", baseURL+"/v1.0/me/notifications/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	// The response header must come promptly; the body is read until the
	// test ends.
	timer := time.AfterFunc(eventTimeout, cancel)
	resp, err := http.DefaultClient.Do(req)
	timer.Stop()
	if err != nil {
		t.Fatalf("open SSE stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("open SSE stream: status %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		t.Fatalf("open SSE stream: Content-Type %q", ct)
	}
	ch := make(chan streamEvent, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		readSSE(ctx, resp.Body, ch)
	}()
	name := "SSE"
	if lastEventID != "" {
		name = "SSE resumed after " + lastEventID
	}
	return &stream{name: name, C: ch}
}

// readSSE parses an event stream (the WHATWG "event stream interpretation"
// of event, id and data fields, comment lines and blank-line dispatch) and
// sends each event on ch until the stream ends.
func readSSE(ctx context.Context, r io.Reader, ch chan<- streamEvent) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	var ev streamEvent
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(data) > 0 || ev.Type != "" {
				ev.Data = strings.Join(data, "\n")
				if ev.Type == "" {
					ev.Type = "message"
				}
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
			}
			ev, data = streamEvent{Cursor: ev.Cursor}, nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment: keep-alive
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.Type = value
		case "id":
			ev.Cursor = value
		case "data":
			data = append(data, value)
		}
	}
}

// openWebSocket opens the live stream as a WebSocket, authenticated by the
// access_token query parameter as a browser would.
func openWebSocket(t testing.TB, baseURL, token string) *stream {
	t.Helper()
	u := "ws" + strings.TrimPrefix(baseURL, "http") + "/v1.0/me/notifications/stream?access_token=" + url.QueryEscape(token)
	ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("open WebSocket stream: %v %s", err, status)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		rcancel()
		conn.CloseNow()
	})
	ch := make(chan streamEvent, 64)
	go func() {
		defer close(ch)
		for {
			typ, b, err := conn.Read(rctx)
			if err != nil {
				return
			}
			if typ != websocket.MessageText {
				continue
			}
			var f struct {
				Type         string          `json:"type"`
				Cursor       string          `json:"cursor"`
				Notification json.RawMessage `json:"notification"`
			}
			var ev streamEvent
			if err := json.Unmarshal(b, &f); err != nil {
				ev = streamEvent{Type: "malformed frame", Data: string(b)}
			} else {
				ev = streamEvent{Type: f.Type, Cursor: f.Cursor, Data: string(f.Notification)}
			}
			select {
			case ch <- ev:
			case <-rctx.Done():
				return
			}
		}
	}()
	return &stream{name: "WebSocket", C: ch}
}
