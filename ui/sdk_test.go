package ui_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// sdkPage is an app developer's page: it imports the SDK from the server
// and keeps what it sees on window for the test to read.
const sdkPage = `<!doctype html>
<meta charset="utf-8">
<title>SDK test</title>
<script type="module">
import { Herald, HeraldError } from '/sdk/herald.js';
window.events = [];
window.errors = [];
window.run = async (step, fn) => {
  try { window[step] = await fn(); } catch (e) { window.errors.push(step + ': ' + (e && e.message)); }
};
window.start = (username, password, host, transport) => window.run('started', async () => {
  window.herald = await Herald.signIn({ username, password });
  const me = await window.herald.me();
  const sub = await window.herald.subscribe({ targetHostName: host, deviceName: 'sdk test page' });
  window.unsid = sub.id;
  const first = await window.herald.delta();
  window.deltaLink = first.deltaLink;
  window.live = window.herald.stream({
    transport,
    onEvent: (type, n, cursor) => window.events.push({ type, id: n.id, readState: n.readState,
      userActionState: n.userActionState, removed: !!n['@removed'], cursor }),
    onOpen: () => { window.opened = (window.opened || 0) + 1; },
  });
  return me.userPrincipalName;
});
// A stream asked to resume from a cursor the server never made is told to
// resync, and goes on live.
window.openStale = (transport) => {
  window.resyncs = 0;
  window.staleEvents = [];
  window.stale = window.herald.stream({
    transport,
    lastEventId: 'not-a-cursor',
    onResync: () => { window.resyncs++; },
    onOpen: () => { window.staleOpened = true; },
    onEvent: (type, n) => window.staleEvents.push(type + ':' + n.id),
  });
};
window.HeraldError = HeraldError;
window.ready = true;
</script>`

// The browser SDK in Chromium against a real node, as an app developer's
// page uses it: it signs in, registers the device, opens the live stream
// and takes a delta link; a notification the application sends arrives
// live; the page marks it read and dismisses it, and the server has both;
// over Server-Sent Events and over a WebSocket, the stream, cut off and
// refused for a while, comes back on its own from
// its last cursor with what was sent meanwhile; the delta link gives what
// changed; a stream asked to resume from a cursor the server does not
// know calls onResync and goes on live; an error comes back as a
// HeraldError with the API's code.
func TestSDKSignsInStreamsAndUpdates(t *testing.T) {
	for _, transport := range []string{"sse", "websocket"} {
		t.Run(transport, func(t *testing.T) { sdkWalk(t, transport) })
	}
}

func sdkWalk(t *testing.T, transport string) {
	n := testnode.Start(t, nil)
	admin := apiToken(t, n.URL, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}})
	apiJSON(t, n.URL, admin, "POST", "/v1.0/users", map[string]any{"userPrincipalName": aliceUP, "password": alicePW}, 201)
	var app struct {
		AppID string `json:"appId"`
		Creds []struct {
			Secret string `json:"secretText"`
		} `json:"passwordCredentials"`
	}
	apiJSON(t, n.URL, admin, "POST", "/v1.0/applications", map[string]any{"displayName": "Tasks", "targetHostName": appHost}, 201).into(t, &app)
	appTok := apiToken(t, n.URL, url.Values{"grant_type": {"client_credentials"}, "client_id": {app.AppID}, "client_secret": {app.Creds[0].Secret}})

	// The page's origin: the test page, and everything else passed to
	// the node. Streams can be cut and refused.
	target, _ := url.Parse(n.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	var refuse atomic.Bool
	var mu sync.Mutex
	var resumedFrom []string
	conns := map[net.Conn]bool{}
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sdk-test.html" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, sdkPage)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/notifications/stream") {
			if refuse.Load() {
				http.Error(w, "down for the test", http.StatusBadGateway)
				return
			}
			mu.Lock()
			resumedFrom = append(resumedFrom, r.URL.Query().Get("lastEventId"))
			mu.Unlock()
			// Over a WebSocket, the SDK asks over HTTP whether a
			// refused cursor is gone; the rest are upgrades.
			probe := r.URL.Query().Get("lastEventId") == "not-a-cursor"
			if got := r.Header.Get("Upgrade") != ""; !probe && got != (transport == "websocket") {
				t.Errorf("a stream request with Upgrade %q over %s", r.Header.Get("Upgrade"), transport)
			}
		}
		rp.ServeHTTP(w, r)
	}))
	proxy.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			conns[c] = true
		case http.StateClosed:
			// A hijacked connection (a WebSocket) stays listed, so
			// that the test can cut it too.
			delete(conns, c)
		}
	}
	proxy.Start()
	t.Cleanup(proxy.Close)

	p := newBrowser(t).newPage("sdk", 1000, 700)
	// The test's page has no icon; the test cuts and refuses the stream,
	// gives it a bad cursor and reads a notification that does not exist,
	// all on purpose.
	p.expect("/favicon.ico", "/v1.0/me/notifications/stream", "/v1.0/me/notifications/no-such-notification")
	p.do("open the page", chromedp.Navigate(proxy.URL+"/sdk-test.html"))
	p.waitFor("the module", `window.ready === true`)
	p.do("start", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.start(%s, %s, %s, %s)`, js(aliceUP), js(alicePW), js(appHost), js(transport))))
	p.waitFor("signed in and live", `window.started === 'alice' && window.opened === 1 || window.errors.length > 0`)
	noErrors(t, p)
	unsid := eval[string](p, "the UNSID", `window.unsid`)

	send := func(title string) string {
		var out struct {
			ID string `json:"id"`
		}
		apiJSON(t, n.URL, appTok, "POST", "/v1.0/me/notifications",
			map[string]any{"payload": map[string]any{"visualContent": map[string]any{"title": title}}}, 201, "X-UNS-ID", unsid).into(t, &out)
		return out.ID
	}
	first := send("Build done")
	p.waitFor("the notification live", fmt.Sprintf(`window.events.some(e => e.type === 'created' && e.id === %s)`, js(first)))

	p.do("mark read and dismiss", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`window.run('updated', async () => { await window.herald.markRead(%[1]s); return (await window.herald.dismiss(%[1]s)).userActionState; })`, js(first))))
	p.waitFor("both changes live", fmt.Sprintf(`window.updated === 'dismissed' && window.events.some(e => e.type === 'updated' && e.id === %s && e.readState === 'read' && e.userActionState === 'dismissed')`, js(first)))
	var stored struct {
		ReadState       string `json:"readState"`
		UserActionState string `json:"userActionState"`
	}
	alice := apiToken(t, n.URL, url.Values{"grant_type": {"password"}, "username": {aliceUP}, "password": {alicePW}})
	apiJSON(t, n.URL, alice, "GET", "/v1.0/me/notifications/"+first, nil, 200).into(t, &stored)
	if stored.ReadState != "read" || stored.UserActionState != "dismissed" {
		t.Errorf("the server has %+v after the SDK's markRead and dismiss", stored)
	}

	// Cut the stream and refuse it; what is sent meanwhile arrives once it
	// is back, resumed from the last cursor.
	lastCursor := eval[string](p, "the last cursor", `window.live.cursor()`)
	refuse.Store(true)
	mu.Lock()
	for c := range conns {
		c.Close()
	}
	mu.Unlock()
	second := send("Sent while away")
	refuse.Store(false)
	p.waitFor("the missed notification after the reconnect", fmt.Sprintf(`window.events.some(e => e.type === 'created' && e.id === %s)`, js(second)))
	mu.Lock()
	resumes := append([]string{}, resumedFrom...)
	mu.Unlock()
	t.Logf("stream opened with lastEventId %q", resumes)
	if len(resumes) < 2 || resumes[0] != "" || resumes[len(resumes)-1] != lastCursor {
		t.Errorf("stream opened with lastEventId %q, want first none and last %q", resumes, lastCursor)
	}
	if c := eval[int](p, "created events", fmt.Sprintf(`window.events.filter(e => e.id === %s && e.type === 'created').length`, js(second))); c != 1 {
		t.Errorf("the missed notification arrived %d times", c)
	}

	// Delta from the link taken at the start: both notifications, as they
	// are now.
	p.do("delta", chromedp.Evaluate[chromedp.Void](`window.run('delta', async () => (await window.herald.delta(window.deltaLink)).changes.map(c => c.id + ':' + (c.userActionState || 'removed')).sort().join(','))`))
	p.waitFor("the delta", `window.delta !== undefined || window.errors.length > 0`)
	noErrors(t, p)
	want := []string{first + ":dismissed", second + ":noInteraction"}
	if want[1] < want[0] {
		want[0], want[1] = want[1], want[0]
	}
	if got := eval[string](p, "the delta", `window.delta`); got != strings.Join(want, ",") {
		t.Errorf("delta changes %s, want %s", got, strings.Join(want, ","))
	}

	// A cursor the server does not know: resync, then live.
	p.do("open a stale stream", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.openStale(%s)`, js(transport))))
	p.waitFor("the resync and the stream live", `window.resyncs === 1 && window.staleOpened === true`)
	third := send("After the resync")
	p.waitFor("the notification on the resynced stream", fmt.Sprintf(`window.staleEvents.includes('created:' + %s)`, js(third)))
	p.do("close the stale stream", chromedp.Evaluate[chromedp.Void](`window.stale.close()`))

	// Errors carry the API's code.
	p.do("an error", chromedp.Evaluate[chromedp.Void](`window.run('failure', async () => {
	  try { await window.herald.markRead('no-such-notification'); return 'no error'; }
	  catch (e) { return (e instanceof window.HeraldError) + ':' + e.status + ':' + e.code; } })`))
	p.waitFor("the error", `window.failure !== undefined`)
	if got := eval[string](p, "the error", `window.failure`); got != "true:404:itemNotFound" {
		t.Errorf("markRead of an unknown id: %s", got)
	}
	p.do("close the stream", chromedp.Evaluate[chromedp.Void](`window.live.close()`))
	p.checkClean()
}

func noErrors(t *testing.T, p *page) {
	t.Helper()
	if errs := eval[[]string](p, "errors", `window.errors`); len(errs) > 0 {
		t.Fatalf("the page failed: %v", errs)
	}
}

type apiAnswer struct {
	body []byte
}

func (a apiAnswer) into(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

// apiJSON calls the API from the test and checks the status.
func apiJSON(t *testing.T, base, token, method, path string, body any, want int, hdr ...string) apiAnswer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, res.StatusCode, b, want)
	}
	return apiAnswer{body: b}
}

func apiToken(t *testing.T, base string, form url.Values) string {
	t.Helper()
	res, err := http.PostForm(base+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tk struct {
		Access string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tk); err != nil || tk.Access == "" {
		t.Fatalf("token: %d %v", res.StatusCode, err)
	}
	return tk.Access
}
