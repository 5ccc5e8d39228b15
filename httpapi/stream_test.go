package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/resource"
)

// streamWait bounds every wait for something a stream should deliver.
const streamWait = 10 * time.Second

const streamHost = "tasks.contoso.com"

// streamEnv is a node with the application tasks.contoso.com, the user alice
// and her live subscriptions on web and iOS.
type streamEnv struct {
	node               *testnode.Node
	url                string
	client             *http.Client
	admin, user, app   string
	webSub, iosSub     string
	userID             string
	otherApp, otherSub string // a second application and alice's subscription to it
}

func newStreamEnv(t testing.TB, configure func(*node.Config)) *streamEnv {
	t.Helper()
	cfg := testnode.Config(t, t.TempDir())
	cfg.Limits.AppRate, cfg.Limits.UserRate = 0, 0
	cfg.Limits.MaxStreamsPerUser = 0
	if configure != nil {
		configure(&cfg)
	}
	n := testnode.Start(t, &cfg)
	return setUpStreamEnv(t, n, &http.Client{Timeout: 30 * time.Second})
}

// setUpStreamEnv makes n a streamEnv, through client.
func setUpStreamEnv(t testing.TB, n *testnode.Node, client *http.Client) *streamEnv {
	t.Helper()
	e := &streamEnv{node: n, url: n.URL, client: client}
	e.admin = e.token(t, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}})
	e.app = e.newApp(t, "Contoso Tasks", streamHost)
	e.otherApp = e.newApp(t, "Other", "other.example")
	var u struct{ ID string }
	e.mustDo(t, "POST", "/v1.0/users", e.admin, nil,
		`{"userPrincipalName":"alice","displayName":"Alice","password":"alice-password","roles":["user"]}`, http.StatusCreated, &u)
	e.userID = u.ID
	e.user = e.token(t, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-password"}})
	e.webSub = e.subscribe(t, streamHost, "web")
	e.iosSub = e.subscribe(t, streamHost, "iOS")
	e.otherSub = e.subscribe(t, "other.example", "web")
	return e
}

func (e *streamEnv) token(t testing.TB, form url.Values) string {
	t.Helper()
	resp, err := e.client.PostForm(e.url+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

func (e *streamEnv) newApp(t testing.TB, name, host string) string {
	t.Helper()
	var app struct {
		AppID string `json:"appId"`
		Creds []struct {
			Secret string `json:"secretText"`
		} `json:"passwordCredentials"`
	}
	e.mustDo(t, "POST", "/v1.0/applications", e.admin, nil,
		fmt.Sprintf(`{"displayName":%q,"targetHostName":%q}`, name, host), http.StatusCreated, &app)
	return e.token(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {app.AppID}, "client_secret": {app.Creds[0].Secret}})
}

func (e *streamEnv) subscribe(t testing.TB, host, platform string) string {
	t.Helper()
	var sub struct{ ID string }
	e.mustDo(t, "POST", "/v1.0/me/notificationSubscriptions", e.user, nil,
		fmt.Sprintf(`{"targetHostName":%q,"platformType":%q,"deviceName":"%s device","channel":{"type":"live"}}`, host, platform, platform),
		http.StatusCreated, &sub)
	return sub.ID
}

// do sends a JSON request and returns the status and body.
func (e *streamEnv) do(t testing.TB, method, path, token string, header http.Header, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

func (e *streamEnv) mustDo(t testing.TB, method, path, token string, header http.Header, body string, want int, out any) []byte {
	t.Helper()
	status, data := e.do(t, method, path, token, header, body)
	if status != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, status, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	return data
}

// streamSent is a notification as the POST answered it.
type streamSent struct {
	ID  string
	Raw []byte
}

// send posts a notification as the application through the subscription
// unsid (e.webSub when empty).
func (e *streamEnv) send(t testing.TB, appToken, unsid, body string, want int) streamSent {
	t.Helper()
	if appToken == "" {
		appToken = e.app
	}
	if unsid == "" {
		unsid = e.webSub
	}
	var n struct{ ID string }
	raw := e.mustDo(t, "POST", "/v1.0/me/notifications", appToken, http.Header{"X-Uns-Id": {unsid}}, body, want, &n)
	return streamSent{ID: n.ID, Raw: raw}
}

// sendTitled posts a plain notification titled title.
func (e *streamEnv) sendTitled(t testing.TB, title string) streamSent {
	t.Helper()
	return e.send(t, "", "", fmt.Sprintf(`{"payload":{"visualContent":{"title":%q,"body":"b"}}}`, title), http.StatusCreated)
}

// trySend is sendTitled for goroutines other than the test's.
func (e *streamEnv) trySend(title string) (streamSent, error) {
	body := fmt.Sprintf(`{"payload":{"visualContent":{"title":%q}}}`, title)
	req, err := http.NewRequest("POST", e.url+"/v1.0/me/notifications", strings.NewReader(body))
	if err != nil {
		return streamSent{}, err
	}
	req.Header.Set("Authorization", "Bearer "+e.app)
	req.Header.Set("X-UNS-ID", e.webSub)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return streamSent{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return streamSent{}, err
	}
	var n struct{ ID string }
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(raw, &n) != nil {
		return streamSent{}, fmt.Errorf("send: %d %s", resp.StatusCode, raw)
	}
	return streamSent{ID: n.ID, Raw: raw}, nil
}

// streamMsg is one stream event in a streamTransport-neutral form.
type streamMsg struct {
	Type   string
	Cursor string
	Data   json.RawMessage
}

func (m streamMsg) notificationID(t *testing.T) string {
	t.Helper()
	var v struct{ ID string }
	if err := json.Unmarshal(m.Data, &v); err != nil || v.ID == "" {
		t.Fatalf("event data without an id: %s (%v)", m.Data, err)
	}
	return v.ID
}

// streamConn is an open SSE or WebSocket stream.
type streamConn interface {
	// next returns the next event, failing the test after streamWait.
	next(t *testing.T) streamMsg
	// end waits for the server to end the stream and says how it ended.
	end(t *testing.T) string
	close()
}

type streamTransport string

const (
	trSSE streamTransport = "sse"
	trWS  streamTransport = "websocket"
)

var streamTransports = []streamTransport{trSSE, trWS}

// open opens a stream as alice with query (without the leading ?) and
// extra headers, and returns once the server has registered it.
func (e *streamEnv) open(t *testing.T, tr streamTransport, query string, header http.Header) streamConn {
	t.Helper()
	if header == nil {
		header = http.Header{}
	}
	if header.Get("Authorization") == "" && !strings.Contains(query, "access_token=") {
		header.Set("Authorization", "Bearer "+e.user)
	}
	if tr == trWS {
		return e.openWS(t, query, header, nil)
	}
	s, status, body := e.openSSE(t, query, header)
	if s == nil {
		t.Fatalf("SSE stream: %d %s", status, body)
	}
	return s
}

// ---- Server-Sent Events

type sseItem struct {
	event, id, data string
	comment         string
	isComment       bool
}

type sseStream struct {
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseItem
	done   chan struct{}
}

// openSSE connects; on a status other than 200 it returns nil with the
// status and body. On 200 it waits for the server's first comment, written
// once the stream's listener is registered.
func (e *streamEnv) openSSE(t *testing.T, query string, header http.Header) (*sseStream, int, []byte) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", e.url+"/v1.0/me/notifications/stream?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return nil, resp.StatusCode, b
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type = %q", ct)
	}
	s := &sseStream{resp: resp, cancel: cancel, events: make(chan sseItem, 4096), done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.close)
	ev, ok := s.nextAny(t)
	if !ok || !ev.isComment {
		t.Fatalf("first SSE item %+v (open %v), want the connected comment", ev, ok)
	}
	return s, http.StatusOK, nil
}

// read parses the stream line by line (the text/event-stream grammar,
// without the multi-line data this server never sends).
func (s *sseStream) read() {
	defer close(s.done)
	defer close(s.events)
	br := bufio.NewReader(s.resp.Body)
	var cur sseItem
	have := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line == "":
			if have {
				s.events <- cur
			}
			cur, have = sseItem{}, false
		case field == "":
			s.events <- sseItem{comment: value, isComment: true}
		case field == "event":
			cur.event, have = value, true
		case field == "id":
			cur.id, have = value, true
		case field == "data":
			if cur.data != "" {
				cur.data += "\n"
			}
			cur.data, have = cur.data+value, true
		}
	}
}

// nextAny returns the next event or comment; ok is false once the stream
// has ended.
func (s *sseStream) nextAny(t *testing.T) (sseItem, bool) {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		return ev, ok
	case <-time.After(streamWait):
		t.Fatal("no SSE event in time")
		return sseItem{}, false
	}
}

func (s *sseStream) next(t *testing.T) streamMsg {
	t.Helper()
	for {
		ev, ok := s.nextAny(t)
		if !ok {
			t.Fatal("SSE stream ended while an event was expected")
		}
		if ev.isComment {
			continue
		}
		if ev.event == "" && ev.data == "" {
			continue // a retry-only block
		}
		return streamMsg{Type: ev.event, Cursor: ev.id, Data: json.RawMessage(ev.data)}
	}
}

func (s *sseStream) end(t *testing.T) string {
	t.Helper()
	for {
		ev, ok := s.nextAny(t)
		if !ok {
			return "EOF"
		}
		if ev.event == "shutdown" {
			return "event: shutdown"
		}
		if !ev.isComment && ev.event != "" {
			t.Fatalf("SSE event %q while waiting for the end", ev.event)
		}
	}
}

func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}

// ---- WebSocket

type wsStream struct {
	conn   *websocket.Conn
	cancel context.CancelFunc
	frames chan streamMsg
	done   chan struct{}
	err    error // why reading stopped, set before done closes
}

func (e *streamEnv) wsURL(query string) string {
	return "ws" + strings.TrimPrefix(e.url, "http") + "/v1.0/me/notifications/stream?" + query
}

func (e *streamEnv) openWS(t *testing.T, query string, header http.Header, onPing func()) *wsStream {
	t.Helper()
	dctx, dcancel := context.WithTimeout(context.Background(), streamWait)
	defer dcancel()
	opts := &websocket.DialOptions{HTTPHeader: header}
	if onPing != nil {
		opts.OnPingReceived = func(context.Context, []byte) bool { onPing(); return true }
	}
	conn, resp, err := websocket.Dial(dctx, e.wsURL(query), opts)
	if err != nil {
		status := 0
		var body []byte
		if resp != nil {
			status = resp.StatusCode
			body, _ = io.ReadAll(resp.Body)
		}
		t.Fatalf("WebSocket dial: %v (%d %s)", err, status, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &wsStream{conn: conn, cancel: cancel, frames: make(chan streamMsg, 4096), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.frames)
		for {
			typ, b, err := conn.Read(ctx)
			if err != nil {
				s.err = err
				return
			}
			if typ != websocket.MessageText {
				s.err = fmt.Errorf("frame of type %v", typ)
				return
			}
			var f struct {
				Type         string          `json:"type"`
				Cursor       string          `json:"cursor"`
				Notification json.RawMessage `json:"notification"`
			}
			if err := json.Unmarshal(b, &f); err != nil {
				s.err = fmt.Errorf("frame %s: %w", b, err)
				return
			}
			s.frames <- streamMsg{Type: f.Type, Cursor: f.Cursor, Data: f.Notification}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *wsStream) next(t *testing.T) streamMsg {
	t.Helper()
	select {
	case m, ok := <-s.frames:
		if !ok {
			t.Fatalf("WebSocket ended while an event was expected: %v", s.err)
		}
		return m
	case <-time.After(streamWait):
		t.Fatal("no WebSocket frame in time")
		return streamMsg{}
	}
}

func (s *wsStream) end(t *testing.T) string {
	t.Helper()
	for {
		select {
		case m, ok := <-s.frames:
			if !ok {
				if st := websocket.CloseStatus(s.err); st != -1 {
					return fmt.Sprintf("close %d", st)
				}
				return fmt.Sprintf("error %v", s.err)
			}
			t.Fatalf("WebSocket frame %q while waiting for the end", m.Type)
		case <-time.After(streamWait):
			t.Fatal("the WebSocket did not end in time")
			return ""
		}
	}
}

func (s *wsStream) close() {
	s.conn.Close(websocket.StatusNormalClosure, "")
	s.cancel()
	<-s.done
}

// ---- assertions

func streamJSONEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v in %s", what, err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: %v in %s", what, err, want)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

// expectStreamIDs reads len(want) events and checks they are created events of
// those notification sentIDs, in order; it returns their cursors.
func expectStreamIDs(t *testing.T, s streamConn, want []string) []string {
	t.Helper()
	var got, cursors []string
	for range want {
		m := s.next(t)
		if m.Type != "created" {
			t.Fatalf("event %q, want created", m.Type)
		}
		got = append(got, m.notificationID(t))
		cursors = append(cursors, m.Cursor)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stream delivered\n %v\nwant\n %v", got, want)
	}
	return cursors
}

func sentIDs(ns []streamSent) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

func streamErrorCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	return e.Error.Code
}

// ---- tests

func TestStreamDeliversCreatedUpdatedDeleted(t *testing.T) {
	e := newStreamEnv(t, nil)
	for _, tr := range streamTransports {
		t.Run(string(tr), func(t *testing.T) {
			s := e.open(t, tr, "", nil)
			cursors := map[string]bool{}
			check := func(m streamMsg, typ string, data []byte) {
				t.Helper()
				if m.Type != typ {
					t.Errorf("event %q, want %q", m.Type, typ)
				}
				if m.Cursor == "" || cursors[m.Cursor] {
					t.Errorf("cursor %q is empty or repeated", m.Cursor)
				}
				cursors[m.Cursor] = true
				streamJSONEqual(t, typ+" data", m.Data, data)
			}

			n := e.send(t, "", "", `{"appNotificationId":"build-`+string(tr)+`","groupName":"builds",`+
				`"payload":{"visualContent":{"title":"Build finished","body":"All tests passed."}},"displayTimeToLive":"60"}`, http.StatusCreated)
			check(s.next(t), "created", n.Raw)

			patched := e.mustDo(t, "PATCH", "/v1.0/me/notifications/"+n.ID, e.user, nil, `{"readState":"read"}`, http.StatusOK, nil)
			check(s.next(t), "updated", patched)

			// The same appNotificationId replaces the content: an update.
			replaced := e.send(t, "", "", `{"appNotificationId":"build-`+string(tr)+`",`+
				`"payload":{"visualContent":{"title":"Build finished again"}}}`, http.StatusOK)
			if replaced.ID != n.ID {
				t.Fatalf("replace changed the id: %s → %s", n.ID, replaced.ID)
			}
			check(s.next(t), "updated", replaced.Raw)

			e.mustDo(t, "DELETE", "/v1.0/me/notifications/"+n.ID, e.user, nil, "", http.StatusNoContent, nil)
			check(s.next(t), "deleted", []byte(`{"id":"`+n.ID+`","@removed":{"reason":"deleted"}}`))
			for c := range cursors {
				if strings.Contains(c, n.ID) {
					t.Errorf("cursor %q carries the notification id", c)
				}
			}
		})
	}
}

func TestStreamResumesAfterCursorWithoutGapsOrDuplicates(t *testing.T) {
	e := newStreamEnv(t, nil)
	cases := []struct {
		name  string
		tr    streamTransport
		query func(cursor string) string
		hdr   func(cursor string) http.Header
	}{
		{"sse Last-Event-ID", trSSE, func(string) string { return "" },
			func(c string) http.Header { return http.Header{"Last-Event-Id": {c}} }},
		{"sse lastEventId", trSSE, func(c string) string { return "lastEventId=" + url.QueryEscape(c) },
			func(string) http.Header { return nil }},
		{"websocket lastEventId", trWS, func(c string) string { return "lastEventId=" + url.QueryEscape(c) },
			func(string) http.Header { return nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			first := e.open(t, tc.tr, "", nil)
			var all []streamSent
			for i := range 3 {
				all = append(all, e.sendTitled(t, fmt.Sprintf("before %d", i)))
			}
			cursors := expectStreamIDs(t, first, sentIDs(all))
			first.close()
			for i := range 2 {
				all = append(all, e.sendTitled(t, fmt.Sprintf("offline %d", i)))
			}

			// Post while the stream connects and replays ...
			var during []streamSent
			sendErr := make(chan error, 1)
			go func() {
				defer close(sendErr)
				for i := range 20 {
					n, err := e.trySend(fmt.Sprintf("during %d", i))
					if err != nil {
						sendErr <- err
						return
					}
					during = append(during, n)
				}
			}()
			resumed := e.open(t, tc.tr, tc.query(cursors[0]), tc.hdr(cursors[0]))
			if err := <-sendErr; err != nil {
				t.Fatal(err)
			}
			all = append(all, during...)
			// ... and after it went live.
			for i := range 3 {
				all = append(all, e.sendTitled(t, fmt.Sprintf("after %d", i)))
			}
			got := expectStreamIDs(t, resumed, sentIDs(all[1:]))
			if got[0] != cursors[1] || got[1] != cursors[2] {
				t.Errorf("replayed cursors %v differ from the live ones %v", got[:2], cursors[1:])
			}
			// Nothing more: the next event is the next notification.
			last := e.sendTitled(t, "sentinel")
			expectStreamIDs(t, resumed, []string{last.ID})

			// Resuming from the newest cursor replays nothing.
			latest := e.open(t, tc.tr, tc.query(got[len(got)-1]), tc.hdr(got[len(got)-1]))
			expectStreamIDs(t, latest, []string{last.ID})
			next := e.sendTitled(t, "after the sentinel")
			expectStreamIDs(t, latest, []string{next.ID})
		})
	}
}

func TestStreamWithoutCursorStartsLive(t *testing.T) {
	e := newStreamEnv(t, nil)
	for _, tr := range streamTransports {
		t.Run(string(tr), func(t *testing.T) {
			e.sendTitled(t, "old")
			s := e.open(t, tr, "", nil)
			n := e.sendTitled(t, "new")
			expectStreamIDs(t, s, []string{n.ID})
		})
	}
}

func TestStreamRefusesUnknownCursorWith410(t *testing.T) {
	e := newStreamEnv(t, nil)
	s := e.open(t, trSSE, "", nil)
	n := e.sendTitled(t, "one")
	good := expectStreamIDs(t, s, []string{n.ID})[0]
	seq, ok := resource.ParseCursor(good)
	if !ok {
		t.Fatalf("the server's cursor %q does not parse", good)
	}
	bad := []string{"bogus", "c", "c!", "c-1", "C" + good[1:], "c0" + good[1:],
		"czzzzzzzzzzzzzzzzzzzzzzzz", resource.FormatCursor(seq + 1000)}
	for _, cur := range bad {
		for _, where := range []string{"header", "query"} {
			var q string
			hdr := http.Header{"Authorization": {"Bearer " + e.user}}
			if where == "header" {
				hdr.Set("Last-Event-ID", cur)
			} else {
				q = "lastEventId=" + url.QueryEscape(cur)
			}
			t.Run(fmt.Sprintf("sse %s %q", where, cur), func(t *testing.T) {
				st, status, body := e.openSSE(t, q, hdr)
				if st != nil {
					st.close()
					t.Fatalf("cursor %q accepted", cur)
				}
				if status != http.StatusGone || streamErrorCode(t, body) != resource.CodeResyncRequired {
					t.Fatalf("%d %s, want 410 resyncRequired", status, body)
				}
			})
			t.Run(fmt.Sprintf("websocket %s %q", where, cur), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), streamWait)
				defer cancel()
				conn, resp, err := websocket.Dial(ctx, e.wsURL(q), &websocket.DialOptions{HTTPHeader: hdr})
				if err == nil {
					conn.CloseNow()
					t.Fatalf("cursor %q accepted", cur)
				}
				if resp == nil {
					t.Fatalf("no response: %v", err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusGone || streamErrorCode(t, body) != resource.CodeResyncRequired {
					t.Fatalf("%d %s, want 410 resyncRequired", resp.StatusCode, body)
				}
			})
		}
	}
}

func TestStreamRefusesTrimmedCursorWith410(t *testing.T) {
	e := newStreamEnv(t, func(c *node.Config) {
		c.Limits.ChangeRetention = 200 * time.Millisecond
		c.PurgeInterval = 50 * time.Millisecond
	})
	s := e.open(t, trSSE, "", nil)
	n := e.sendTitled(t, "one")
	cur := expectStreamIDs(t, s, []string{n.ID})[0]
	e.sendTitled(t, "two")
	hdr := http.Header{"Authorization": {"Bearer " + e.user}, "Last-Event-Id": {cur}}
	deadline := time.Now().Add(streamWait)
	for {
		st, status, body := e.openSSE(t, "", hdr)
		if st == nil {
			if status != http.StatusGone || streamErrorCode(t, body) != resource.CodeResyncRequired {
				t.Fatalf("%d %s, want 410 resyncRequired", status, body)
			}
			return
		}
		st.close()
		if time.Now().After(deadline) {
			t.Fatal("the cursor is still accepted after its changes were due for trimming")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStreamSendsHeartbeats(t *testing.T) {
	e := newStreamEnv(t, func(c *node.Config) { c.StreamHeartbeat = 100 * time.Millisecond })
	t.Run("sse comment", func(t *testing.T) {
		s := e.open(t, trSSE, "", nil).(*sseStream)
		for {
			ev, ok := s.nextAny(t)
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.isComment {
				return
			}
		}
	})
	t.Run("websocket ping", func(t *testing.T) {
		pinged := make(chan struct{}, 1)
		e.openWS(t, "", http.Header{"Authorization": {"Bearer " + e.user}}, func() {
			select {
			case pinged <- struct{}{}:
			default:
			}
		})
		select {
		case <-pinged:
		case <-time.After(streamWait):
			t.Fatal("no ping")
		}
	})
}

// Streams opened together must not beat together: a node whose clients
// all reconnect at once would otherwise start thousands of heartbeats in one
// sweep, every interval, and queue every delivery behind them. Without the
// first beat's random phase, every first beat comes at least seven eighths
// of an interval after its stream opened; a busy machine only delays beats,
// so the check below cannot pass by load.
func TestStreamsOpenedTogetherBeatApart(t *testing.T) {
	t.Parallel()
	const beat = 4 * time.Second
	e := newStreamEnv(t, func(c *node.Config) { c.StreamHeartbeat = beat })
	const n = 30
	lags := make(chan time.Duration, n)
	for range n {
		s, _, _ := e.openSSE(t, "", http.Header{"Authorization": {"Bearer " + e.user}})
		opened := time.Now()
		go func() {
			for ev := range s.events {
				if ev.isComment {
					lags <- time.Since(opened)
					return
				}
			}
		}()
	}
	early := 0
	deadline := time.After(2*beat + streamWait)
	for range n {
		select {
		case lag := <-lags:
			if lag > 2*beat {
				t.Errorf("a first heartbeat came %v after the stream opened, interval %v", lag, beat)
			}
			if lag < 4*beat/5 {
				early++
			}
		case <-deadline:
			t.Fatal("a stream had no heartbeat")
		}
	}
	// Half to one interval at random: about 60 % come before 0.8 of it.
	if early < 5 {
		t.Fatalf("%d of %d streams opened together had their first heartbeat before %v, want them spread over half to one interval", early, n, 4*beat/5)
	}
}

func TestStreamSubscriptionIDLimitsToThatSubscription(t *testing.T) {
	e := newStreamEnv(t, nil)
	for _, tr := range streamTransports {
		t.Run(string(tr), func(t *testing.T) {
			s := e.open(t, tr, "subscriptionId="+e.webSub, nil)
			all := e.open(t, tr, "", nil)
			iosOnly := e.send(t, "", e.iosSub, `{"payload":{"rawContent":"x"},"targetPolicy":{"platformTypes":["iOS"]}}`, http.StatusCreated)
			webOnly := e.send(t, "", e.iosSub, `{"payload":{"rawContent":"x"},"targetPolicy":{"platformTypes":["webPush"]}}`, http.StatusCreated)
			other := e.send(t, e.otherApp, e.otherSub, `{"payload":{"rawContent":"x"}}`, http.StatusCreated)
			everyone := e.send(t, "", "", `{"payload":{"rawContent":"x"}}`, http.StatusCreated)
			notWeb := e.send(t, "", "", `{"payload":{"rawContent":"x"},"targetPolicy":{"platformTypes":["windows","android","ios"]}}`, http.StatusCreated)
			last := e.send(t, "", "", `{"payload":{"rawContent":"x"},"targetPolicy":{"platformTypes":["web"]}}`, http.StatusCreated)

			got := expectStreamIDs(t, s, []string{webOnly.ID, everyone.ID, last.ID})
			expectStreamIDs(t, all, sentIDs([]streamSent{iosOnly, webOnly, other, everyone, notWeb, last}))

			// A replay is filtered the same way.
			replay := e.open(t, tr, "subscriptionId="+e.webSub+"&lastEventId="+url.QueryEscape(got[0]), nil)
			expectStreamIDs(t, replay, []string{everyone.ID, last.ID})
		})
	}
	t.Run("unknown subscription", func(t *testing.T) {
		_, status, body := e.openSSE(t, "subscriptionId=nope", http.Header{"Authorization": {"Bearer " + e.user}})
		if status != http.StatusNotFound {
			t.Fatalf("%d %s, want 404", status, body)
		}
	})
}

func TestStreamAccessTokenQueryParameter(t *testing.T) {
	e := newStreamEnv(t, nil)
	for _, tr := range streamTransports {
		t.Run(string(tr)+" accepted", func(t *testing.T) {
			s := e.open(t, tr, "access_token="+url.QueryEscape(e.user), http.Header{})
			n := e.sendTitled(t, "via query token")
			expectStreamIDs(t, s, []string{n.ID})
		})
	}
	for name, q := range map[string]string{"missing": "", "unknown": "access_token=not-a-token", "empty": "access_token="} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.url+"/v1.0/me/notifications/stream?"+q, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusUnauthorized || streamErrorCode(t, body) != resource.CodeUnauthenticated {
				t.Fatalf("%d %s, want 401 unauthenticated", resp.StatusCode, body)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}

			ctx, cancel := context.WithTimeout(context.Background(), streamWait)
			defer cancel()
			conn, wresp, err := websocket.Dial(ctx, e.wsURL(q), nil)
			if err == nil {
				conn.CloseNow()
				t.Fatal("WebSocket accepted without a valid token")
			}
			if wresp == nil || wresp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("WebSocket: %v", err)
			}
		})
	}
	t.Run("application token", func(t *testing.T) {
		_, status, body := e.openSSE(t, "access_token="+url.QueryEscape(e.app), http.Header{})
		if status != http.StatusForbidden {
			t.Fatalf("%d %s, want 403", status, body)
		}
	})
}

func TestStreamTwoDevicesOfOneUserBothSeeEachChange(t *testing.T) {
	e := newStreamEnv(t, nil)
	laptop := e.open(t, trSSE, "subscriptionId="+e.webSub, nil)
	phone := e.open(t, trWS, "subscriptionId="+e.iosSub, nil)
	n := e.send(t, "", "", `{"payload":{"visualContent":{"title":"Meeting in 5 minutes"}}}`, http.StatusCreated)
	for name, s := range map[string]streamConn{"laptop": laptop, "phone": phone} {
		m := s.next(t)
		if m.Type != "created" {
			t.Fatalf("%s: %q", name, m.Type)
		}
		streamJSONEqual(t, name+" created", m.Data, n.Raw)
	}
	// Dismissed on the laptop: the phone hears of it, and so does the laptop.
	patched := e.mustDo(t, "PATCH", "/v1.0/me/notifications/"+n.ID, e.user, nil, `{"userActionState":"Dismissed"}`, http.StatusOK, nil)
	for name, s := range map[string]streamConn{"laptop": laptop, "phone": phone} {
		m := s.next(t)
		if m.Type != "updated" {
			t.Fatalf("%s: %q", name, m.Type)
		}
		streamJSONEqual(t, name+" updated", m.Data, patched)
		var v struct{ UserActionState string }
		json.Unmarshal(m.Data, &v)
		if v.UserActionState != resource.ActionDismissed {
			t.Errorf("%s: userActionState %q", name, v.UserActionState)
		}
	}
}

func TestNodeCloseEndsOpenStreams(t *testing.T) {
	e := newStreamEnv(t, nil)
	s := e.open(t, trSSE, "", nil)
	w := e.open(t, trWS, "", nil)
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*streamWait)
		defer cancel()
		closed <- e.node.Close(ctx)
	}()
	if how := s.end(t); how != "event: shutdown" && how != "EOF" {
		t.Errorf("SSE ended with %s", how)
	}
	if how := w.end(t); how != fmt.Sprintf("close %d", websocket.StatusServiceRestart) {
		t.Errorf("WebSocket ended with %s, want a close frame with status %d", how, websocket.StatusServiceRestart)
	}
	select {
	case err := <-closed:
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(2 * streamWait):
		t.Fatal("Close did not return")
	}
}
