package ui_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// A page that only listens (a notification badge) learns that its sign-in
// ended: the user signs this browser out from another device (DELETE
// /v1.0/me/sessions/{id}), the server ends the stream, and the SDK's
// reconnects meet 401 and a refused refresh. With tokens over SSE and over
// a WebSocket, and in cookie-session mode too, onSignedOut is called once and the stream stops asking, rather than reconnecting for
// ever with a sign-in the server no longer knows.
func TestSDKStreamEndsWhenItsSessionIsRevoked(t *testing.T) {
	for _, c := range []struct {
		name, transport string
		session         bool
	}{{"sse", "sse", false}, {"websocket", "websocket", false}, {"session-sse", "sse", true}, {"session-websocket", "websocket", true}} {
		t.Run(c.name, func(t *testing.T) { sdkRevokedStream(t, c.transport, c.session) })
	}
}

func sdkRevokedStream(t *testing.T, transport string, session bool) {
	n := testnode.Start(t, nil)
	admin := apiToken(t, n.URL, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}})
	apiJSON(t, n.URL, admin, "POST", "/v1.0/users", map[string]any{"userPrincipalName": aliceUP, "password": alicePW}, 201)

	target, _ := url.Parse(n.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	var refreshes atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sdk-refresh.html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, sdkRefreshPage)
			return
		case "/oauth2/v2.0/token", "/ui/session/refresh":
			refreshes.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	p := newBrowser(t).newPage("sdk-revoked", 1000, 700)
	// The revoked token's reconnects and refresh fail on purpose.
	p.expect("/favicon.ico", "/notifications/stream", "/oauth2/v2.0/token", "/ui/session/refresh")
	p.do("open the page", chromedp.Navigate(proxy.URL+"/sdk-refresh.html"))
	p.waitFor("the module", `window.ready === true`)
	p.do("sign in and listen", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`window.run('listening', async () => {
		  window.h = await Herald.signIn({ session: %t, username: %s, password: %s, onSignedOut: () => { window.signedOut++; } });
		  window.opens = 0;
		  window.live = window.h.stream({ transport: %s, onOpen: () => { window.opens++; }, onEvent: () => {} });
		  return true; })`, session, js(aliceUP), js(alicePW), js(transport))))
	p.waitFor("the stream open", `window.listening === true && window.opens === 1`)
	noErrors(t, p)

	// Alice, on another device, signs this browser out.
	other := apiToken(t, n.URL, url.Values{"grant_type": {"password"}, "username": {aliceUP}, "password": {alicePW}})
	var sessions struct {
		Value []struct {
			ID      string `json:"id"`
			Current bool   `json:"current"`
		} `json:"value"`
	}
	apiJSON(t, n.URL, other, "GET", "/v1.0/me/sessions", nil, 200).into(t, &sessions)
	revoked := 0
	for _, s := range sessions.Value {
		if !s.Current {
			apiJSON(t, n.URL, other, "DELETE", "/v1.0/me/sessions/"+s.ID, nil, 204)
			revoked++
		}
	}
	if revoked != 1 {
		t.Fatalf("revoked %d sessions, want the page's one", revoked)
	}
	before := refreshes.Load()
	p.waitFor("the page told it is signed out", `window.signedOut === 1`)
	if !eval[bool](p, "tokens forgotten", `!window.h.accessToken && !window.h.refreshToken && !window.h.user`) {
		t.Error("the SDK kept the revoked sign-in")
	}
	if got := refreshes.Load() - before; got != 1 {
		t.Errorf("%d refreshes with the revoked refresh token, want 1", got)
	}
	noErrors(t, p)
	p.checkClean()
}
