package ui_test

import (
	"context"
	"fmt"
	"io"
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

// sdkRefreshPage keeps every outcome on window: attempt stores what a call
// answered, or the HeraldError's status, code and retryAfter.
const sdkRefreshPage = `<!doctype html>
<meta charset="utf-8">
<title>SDK refresh test</title>
<script type="module">
import { Herald } from '/sdk/herald.js';
window.errors = [];
window.signedOut = 0;
window.sessionSignedOut = 0;
window.run = async (step, fn) => {
  try { window[step] = await fn(); } catch (e) { window.errors.push(step + ': ' + (e && e.message)); }
};
window.attempt = (step, fn) => window.run(step, async () => {
  try { return { ok: JSON.stringify(await fn()) }; } catch (e) { return { status: e.status, code: e.code, retryAfter: e.retryAfter }; }
});
window.Herald = Herald;
window.ready = true;
</script>`

// unauthorized answers as for an expired token.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	io.WriteString(w, `{"error":{"code":"unauthenticated","message":"expired for the test"}}`)
}

// dropConnection closes the connection without an answer: to the page, a
// network error.
func dropConnection(w http.ResponseWriter) {
	if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
		c.Close()
	}
}

// The proxy's faults, switched by the test.
const (
	passThrough int32 = iota
	unreachable       // the connection is dropped: the SDK sees a network error
	busy              // 429 with Retry-After: 1
)

// An outage of the token endpoint does not sign the SDK out: a refresh
// that could not reach the server, or was answered 429 (retried after its
// Retry-After), keeps the refresh token and surfaces its error, and the
// next call, once the server answers, refreshes with the same token. The
// same for the session mode's refresh. A sign-in refused with 429 carries
// retryAfter. signOut with tokens revokes the session on the server and
// calls onSignedOut. getAll stops at max.
func TestSDKKeepsItsSignInThroughATokenOutage(t *testing.T) {
	n := testnode.Start(t, nil)
	admin := apiToken(t, n.URL, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}})
	apiJSON(t, n.URL, admin, "POST", "/v1.0/users", map[string]any{"userPrincipalName": aliceUP, "password": alicePW}, 201)
	apiJSON(t, n.URL, admin, "POST", "/v1.0/applications", map[string]any{"displayName": "Tasks", "targetHostName": appHost}, 201)
	for i := range 5 {
		apiJSON(t, n.URL, admin, "POST", "/v1.0/users/"+aliceUP+"/notifications",
			map[string]any{"targetHostName": appHost, "payload": map[string]any{"rawContent": fmt.Sprint("n", i)}}, 201)
	}

	target, _ := url.Parse(n.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	var tokenFault, sessionFault, meUnauthorized, streamUnauthorized atomic.Int32
	var refreshTries atomic.Int32
	var mu sync.Mutex
	var streamCuts []context.CancelFunc
	cutStreams := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range streamCuts {
			c()
		}
		streamCuts = nil
	}
	fault := func(w http.ResponseWriter, f int32) bool {
		switch f {
		case unreachable:
			dropConnection(w)
			return true
		case busy:
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"code":"activityLimitReached","message":"busy for the test"}}`)
			return true
		}
		return false
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/sdk-refresh.html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, sdkRefreshPage)
			return
		case r.URL.Path == "/oauth2/v2.0/token":
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			form, _ := url.ParseQuery(string(body))
			if form.Get("grant_type") == "refresh_token" {
				refreshTries.Add(1)
			}
			// The fault hits a password sign-in only when it is
			// busy: that is the case the test asks about.
			if f := tokenFault.Load(); (form.Get("grant_type") == "refresh_token" || f == busy) && fault(w, f) {
				return
			}
		case r.URL.Path == "/ui/session/refresh":
			refreshTries.Add(1)
			if fault(w, sessionFault.Load()) {
				return
			}
		case strings.HasSuffix(r.URL.Path, "/notifications/stream") && streamUnauthorized.Load() == 0:
			ctx, cancel := context.WithCancel(r.Context())
			mu.Lock()
			streamCuts = append(streamCuts, cancel)
			mu.Unlock()
			rp.ServeHTTP(w, r.WithContext(ctx))
			return
		case strings.HasSuffix(r.URL.Path, "/notifications/stream") && streamUnauthorized.CompareAndSwap(1, 0):
			unauthorized(w)
			return
		case r.URL.Path == "/v1.0/me" && meUnauthorized.CompareAndSwap(1, 0):
			unauthorized(w)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	p := newBrowser(t).newPage("sdk-refresh", 1000, 700)
	p.expect("/favicon.ico", "/oauth2/v2.0/token", "/ui/session/refresh", "/v1.0/me", "/notifications/stream")
	p.do("open the page", chromedp.Navigate(proxy.URL+"/sdk-refresh.html"))
	p.waitFor("the module", `window.ready === true`)
	type outcome struct {
		OK         string `json:"ok"`
		Status     int    `json:"status"`
		Code       string `json:"code"`
		RetryAfter int    `json:"retryAfter"`
	}
	call := func(step, fn string) outcome {
		t.Helper()
		p.do(step, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window[%q] = undefined; window.attempt(%q, %s)`, step, step, fn)))
		p.waitFor(step, fmt.Sprintf(`window[%q] !== undefined`, step))
		return eval[outcome](p, step, fmt.Sprintf(`window[%q]`, step))
	}
	p.do("sign in", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`window.run('signedIn', async () => { window.h = await Herald.signIn({ username: %s, password: %s, onSignedOut: () => { window.signedOut++; } }); window.firstRefresh = window.h.refreshToken; return true; })`,
		js(aliceUP), js(alicePW))))
	p.waitFor("signed in", `window.signedIn === true`)

	// The access token is refused and the token endpoint cannot be reached.
	tokenFault.Store(unreachable)
	p.do("spoil the access token", chromedp.Evaluate[chromedp.Void](`window.h.accessToken = 'spoiled'`))
	if o := call("me while unreachable", `() => window.h.me()`); o.Status != 0 || o.Code != "network" {
		t.Fatalf("me while the token endpoint is unreachable: %+v, want a network error", o)
	}
	if !eval[bool](p, "kept", `window.h.refreshToken === window.firstRefresh && window.signedOut === 0`) {
		t.Fatal("a refresh that did not reach the server signed the SDK out or dropped its refresh token")
	}

	// The token endpoint answers 429: retried after Retry-After, then given up.
	tokenFault.Store(busy)
	refreshTries.Store(0)
	if o := call("me while busy", `() => window.h.me()`); o.Status != 429 || o.RetryAfter != 1 {
		t.Fatalf("me while the token endpoint is busy: %+v, want 429 with retryAfter 1", o)
	}
	if got := refreshTries.Load(); got != 4 {
		t.Fatalf("%d refresh tries while busy, want 4 (one and three retries)", got)
	}
	if !eval[bool](p, "kept", `window.h.refreshToken === window.firstRefresh && window.signedOut === 0`) {
		t.Fatal("a refresh answered 429 signed the SDK out or dropped its refresh token")
	}
	// A sign-in refused with 429 says when to come back.
	if o := call("sign-in while busy", fmt.Sprintf(`() => Herald.signIn({ username: %s, password: %s })`, js(aliceUP), js(alicePW))); o.Status != 429 || o.RetryAfter != 1 {
		t.Fatalf("sign-in while busy: %+v, want 429 with retryAfter 1", o)
	}

	// The server answers again: the kept refresh token works.
	tokenFault.Store(passThrough)
	if o := call("me again", `() => window.h.me()`); !strings.Contains(o.OK, aliceUP) {
		t.Fatalf("me once the token endpoint answers: %+v", o)
	}
	if eval[bool](p, "rotated", `window.h.refreshToken === window.firstRefresh`) {
		t.Fatal("the refresh token was not rotated by the refresh that worked")
	}

	// getAll stops at max, within a page.
	if o := call("getAll", `async () => (await window.h.getAll('/v1.0/me/notifications?$top=2', 3)).length`); o.OK != "3" {
		t.Fatalf("getAll(…, 3) answered %+v items, want 3", o)
	}

	// signOut revokes the session on the server and says so.
	rt := eval[string](p, "refresh token", `window.h.refreshToken`)
	if o := call("sign out", `() => window.h.signOut()`); o.Status != 0 || o.Code != "" {
		t.Fatalf("signOut: %+v", o)
	}
	if !eval[bool](p, "signed out", `window.signedOut === 1 && !window.h.refreshToken && !window.h.accessToken`) {
		t.Fatal("signOut with tokens did not call onSignedOut once or kept its tokens")
	}
	res, err := http.PostForm(n.URL+"/oauth2/v2.0/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("the signed-out session's refresh token answered %d, want 400", res.StatusCode)
	}

	// Session mode: a 401 whose refresh meets 429 keeps the session.
	p.do("session sign-in", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`window.run('sessionIn', async () => { window.s = new Herald({ session: true, onSignedOut: () => { window.sessionSignedOut++; } }); await window.s.signIn({ username: %s, password: %s }); return true; })`,
		js(aliceUP), js(alicePW))))
	p.waitFor("session signed in", `window.sessionIn === true`)
	sessionFault.Store(busy)
	meUnauthorized.Store(1)
	if o := call("session me while busy", `() => window.s.me()`); o.Status != 429 {
		t.Fatalf("session me while its refresh is busy: %+v, want 429", o)
	}
	if !eval[bool](p, "session kept", `window.s.user !== null && window.sessionSignedOut === 0`) {
		t.Fatal("a session refresh answered 429 ended the session")
	}
	sessionFault.Store(passThrough)
	meUnauthorized.Store(1)
	if o := call("session me again", `() => window.s.me()`); !strings.Contains(o.OK, aliceUP) {
		t.Fatalf("session me once the refresh answers: %+v", o)
	}

	// The session's live stream is refused (401) while its refresh cannot
	// reach the server: it waits and reconnects rather than end the
	// session, with no error left uncaught.
	p.do("open a stream", chromedp.Evaluate[chromedp.Void](
		`window.opens = 0; window.live = window.s.stream({ onOpen: () => { window.opens++; }, onEvent: () => {} });`))
	p.waitFor("the stream open", `window.opens === 1`)
	sessionFault.Store(unreachable)
	streamUnauthorized.Store(1)
	tries := refreshTries.Load()
	cutStreams()
	p.waitFor("back live", `window.opens === 2`)
	if refreshTries.Load() == tries {
		t.Fatal("the stream's 401 did not try a refresh")
	}
	if !eval[bool](p, "session kept", `window.s.user !== null && window.sessionSignedOut === 0`) {
		t.Fatal("a stream's 401 whose refresh could not reach the server ended the session")
	}
	p.do("close the stream", chromedp.Evaluate[chromedp.Void](`window.live.close()`))
	noErrors(t, p)
	p.checkClean()
}
