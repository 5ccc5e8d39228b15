package ui_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// sdkSessionPage uses the SDK in cookie-session mode, as a page served from
// Herald's own origin does.
const sdkSessionPage = `<!doctype html>
<meta charset="utf-8">
<title>SDK session test</title>
<script type="module">
import { Herald } from '/sdk/herald.js';
window.errors = [];
window.events = [];
window.signedOut = 0;
window.run = async (step, fn) => {
  try { window[step] = await fn(); } catch (e) { window.errors.push(step + ': ' + (e && e.message)); }
};
window.herald = new Herald({ session: true, onSignedOut: () => { window.signedOut++; } });
window.ready = true;
</script>`

// seen is one request as the proxy passed it on.
type seen struct {
	method, path, auth, csrf, lastEventID string
	status                                int
}

// statusWriter tells the status as soon as it is written: a stream's
// handler returns only when the stream ends.
type statusWriter struct {
	http.ResponseWriter
	wrote func(status int)
}

func (w *statusWriter) WriteHeader(code int) {
	w.wrote(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// The SDK's cookie-session mode in Chromium against a real node: restore
// answers null while signed out (without a failing request); signIn
// goes through POST /ui/session; a change carries X-CSRF-Token and no
// Authorization header; the live stream works on the cookie; with the
// access cookie gone, a call gets 401, refreshes once through
// /ui/session/refresh and succeeds; signOut ends the session on the server
// and calls onSignedOut; and a 401 that the refresh cannot cure (both
// cookies gone) calls onSignedOut and throws the 401.
func TestSDKCookieSessionMode(t *testing.T) {
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

	target, _ := url.Parse(n.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	var mu sync.Mutex
	var log []seen
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sdk-session.html" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, sdkSessionPage)
			return
		}
		i := func() int {
			mu.Lock()
			defer mu.Unlock()
			log = append(log, seen{method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization"),
				csrf: r.Header.Get("X-CSRF-Token"), lastEventID: r.Header.Get("Last-Event-ID")})
			return len(log) - 1
		}()
		rp.ServeHTTP(&statusWriter{ResponseWriter: w, wrote: func(status int) {
			mu.Lock()
			defer mu.Unlock()
			log[i].status = status
		}}, r)
	}))
	t.Cleanup(proxy.Close)
	find := func(method, path string) []seen {
		mu.Lock()
		defer mu.Unlock()
		var out []seen
		for _, s := range log {
			if s.method == method && s.path == path {
				out = append(out, s)
			}
		}
		return out
	}

	p := newBrowser(t).newPage("sdk-session", 1000, 700)
	p.expect("/favicon.ico")
	p.do("open the page", chromedp.Navigate(proxy.URL+"/sdk-session.html"))
	p.waitFor("the module", `window.ready === true`)
	step := func(name, fn string) {
		t.Helper()
		p.do(name, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.run(%s, async () => { %s })`, js(name), fn)))
		p.waitFor(name, fmt.Sprintf(`window[%s] !== undefined || window.errors.length > 0`, js(name)))
		noErrors(t, p)
	}
	str := func(expr string) string { return eval[string](p, expr, expr) }

	step("restored", `return String(await herald.restore());`)
	if got := str(`window.restored`); got != "null" {
		t.Errorf("restore while signed out: %s", got)
	}
	step("user", fmt.Sprintf(`return (await herald.signIn({ username: %s, password: %s })).userPrincipalName;`, js(aliceUP), js(alicePW)))
	if got := str(`window.user`); got != aliceUP {
		t.Errorf("signIn answered %q", got)
	}

	// A change: the CSRF header, no Authorization.
	step("unsid", fmt.Sprintf(`return (await herald.subscribe({ targetHostName: %s, deviceName: 'session test' })).id;`, js(appHost)))
	unsid := str(`window.unsid`)
	for _, s := range find("POST", "/v1.0/me/notificationSubscriptions") {
		if s.csrf == "" || s.auth != "" || s.status != 201 {
			t.Errorf("the SDK's POST went with X-CSRF-Token %q, Authorization %q and got %d", s.csrf, s.auth, s.status)
		}
	}

	// The live stream on the cookie.
	p.do("open the stream", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.live = herald.stream({ subscriptionId: %s,
	  onOpen: () => { window.opened = true; }, onEvent: (type, n, cursor) => window.events.push(type + ':' + n.id + ':' + cursor) })`, js(unsid))))
	p.waitFor("the stream open", `window.opened === true`)
	var sent struct {
		ID string `json:"id"`
	}
	apiJSON(t, n.URL, appTok, "POST", "/v1.0/me/notifications",
		map[string]any{"payload": map[string]any{"visualContent": map[string]any{"title": "Hello"}}}, 201, "X-UNS-ID", unsid).into(t, &sent)
	p.waitFor("the notification live", fmt.Sprintf(`window.events.some(e => e.startsWith('created:' + %s + ':'))`, js(sent.ID)))

	// The access cookie gone: one 401, one refresh, and the call succeeds.
	cookies := func() map[string]bool {
		ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
		defer cancel()
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{proxy.URL + "/", proxy.URL + "/ui/session/refresh"}})
		if err != nil {
			t.Fatalf("read the cookies: %v", err)
		}
		have := map[string]bool{}
		for _, c := range res.Cookies {
			have[c.Name] = true
		}
		return have
	}
	drop := func(name, path string) {
		ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
		defer cancel()
		if _, err := chromedp.Call(ctx, network.DeleteCookies, network.DeleteCookiesParams{Name: name, URL: proxy.URL + path}); err != nil {
			t.Fatalf("delete cookie %s: %v", name, err)
		}
	}
	if c := cookies(); !c["herald_session"] || !c["herald_refresh"] {
		t.Fatalf("cookies after sign-in: %v", c)
	}
	drop("herald_session", "/")
	if cookies()["herald_session"] {
		t.Fatal("the access cookie is still there")
	}
	subPath := "/v1.0/me/notificationSubscriptions/" + unsid
	p.expect(subPath) // its first answer is the 401 that starts the refresh
	step("again", `return (await herald.subscription(window.unsid)).id;`)
	if got := str(`window.again`); got != unsid {
		t.Errorf("the call after the refresh answered %q", got)
	}
	gets, refreshes := find("GET", subPath), find("POST", "/ui/session/refresh")
	if len(gets) != 2 || gets[0].status != 401 || gets[1].status != 200 || len(refreshes) != 1 || refreshes[0].status != 200 {
		t.Errorf("GET %s: %+v; refreshes %+v; want 401, one refresh, 200", subPath, gets, refreshes)
	}
	if !cookies()["herald_session"] {
		t.Error("no access cookie after the refresh")
	}
	if got := eval[int](p, "signed out", `window.signedOut`); got != 0 {
		t.Errorf("onSignedOut called %d times while the session went on", got)
	}

	// A cursor the server does not know: 410, onResync, and the stream
	// goes on live without a cursor.
	p.expect("/v1.0/me/notifications/stream") // the stale cursor's 410
	p.do("open a stale stream", chromedp.Evaluate[chromedp.Void](`window.resyncs = 0; window.stale = herald.stream({ lastEventId: 'not-a-cursor',
	  onResync: () => { window.resyncs++; }, onOpen: (o) => { window.staleFresh = o.resumed === false; },
	  onEvent: (type, n) => window.events.push('stale:' + type + ':' + n.id) })`))
	p.waitFor("the resync and the stream live", `window.resyncs === 1 && window.staleFresh === true`)
	apiJSON(t, n.URL, appTok, "POST", "/v1.0/me/notifications",
		map[string]any{"payload": map[string]any{"visualContent": map[string]any{"title": "After the resync"}}}, 201, "X-UNS-ID", unsid).into(t, &sent)
	p.waitFor("the notification on the resynced stream", fmt.Sprintf(`window.events.includes('stale:created:' + %s)`, js(sent.ID)))
	var cursors []string
	for _, s := range find("GET", "/v1.0/me/notifications/stream") {
		if s.auth != "" {
			t.Errorf("a stream request with Authorization %q", s.auth)
		}
		cursors = append(cursors, s.lastEventID+fmt.Sprintf("=%d", s.status))
	}
	if got := fmt.Sprint(cursors); got != "[=200 not-a-cursor=410 =200]" {
		t.Errorf("stream requests (Last-Event-ID=status): %s", got)
	}

	// Sign-out: the session ends on the server, the streams close, the
	// page is told.
	step("out", `await herald.signOut(); return String(herald.user);`)
	if got := eval[int](p, "signed out", `window.signedOut`); got != 1 {
		t.Errorf("onSignedOut called %d times after signOut", got)
	}
	del := find("DELETE", "/ui/session")
	if len(del) != 1 || del[0].status != 204 || del[0].csrf == "" {
		t.Errorf("sign-out requests %+v; want one DELETE /ui/session with X-CSRF-Token, 204", del)
	}
	if c := cookies(); c["herald_session"] || c["herald_refresh"] {
		t.Errorf("cookies after sign-out: %v", c)
	}
	step("after", `return String(await herald.restore());`)
	if got := str(`window.after`); got != "null" {
		t.Errorf("restore after signOut: %s", got)
	}

	// A 401 that one refresh cannot cure: onSignedOut, and the 401.
	step("user2", fmt.Sprintf(`return (await herald.signIn({ username: %s, password: %s })).userPrincipalName;`, js(aliceUP), js(alicePW)))
	drop("herald_session", "/")
	drop("herald_refresh", "/ui/session/refresh")
	p.expect("/ui/session/refresh")
	step("ended", `try { await herald.subscription(window.unsid); return 'no error'; } catch (e) { return e.status + ':' + e.code + ':' + String(herald.user); }`)
	if got := str(`window.ended`); got != "401:unauthenticated:null" {
		t.Errorf("a call whose refresh fails: %s", got)
	}
	if got := eval[int](p, "signed out", `window.signedOut`); got != 2 {
		t.Errorf("onSignedOut called %d times in all, want 2", got)
	}
	p.checkClean()
}
