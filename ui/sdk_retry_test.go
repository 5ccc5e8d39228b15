package ui_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// A 503 does not always mean that nothing happened: during a leader change
// a node may answer that the write may have been committed, or that it was
// committed and this node has not caught up (docs/API-NOTES.md, "Writes
// during a leader change"). Retrying a create then makes a second one. The
// SDK retries a 503 after its Retry-After, which is right for a request
// that was not committed, and for a PATCH or DELETE either way; a POST
// whose 503 says the write may have been taken is answered as the error
// instead, so subscribe() never registers the device twice.
func TestSDKDoesNotRepeatACreateThatMayHaveBeenCommitted(t *testing.T) {
	n := testnode.Start(t, nil)
	admin := apiToken(t, n.URL, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}})
	apiJSON(t, n.URL, admin, "POST", "/v1.0/users", map[string]any{"userPrincipalName": aliceUP, "password": alicePW}, 201)
	apiJSON(t, n.URL, admin, "POST", "/v1.0/applications", map[string]any{"displayName": "Tasks", "targetHostName": appHost}, 201)

	target, _ := url.Parse(n.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	// message, when set, is what the next POST of a subscription is
	// answered after the node took it.
	var message atomic.Value
	message.Store("")
	var posts atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/sdk-refresh.html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, sdkRefreshPage)
			return
		case r.Method == http.MethodPost && r.URL.Path == "/v1.0/me/notificationSubscriptions":
			posts.Add(1)
			if m := message.Swap("").(string); m != "" {
				if !strings.HasPrefix(m, "The request was not committed") {
					rp.ServeHTTP(httptest.NewRecorder(), r) // the node takes it; the answer is lost
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, `{"error":{"code":"serviceNotAvailable","message":%q}}`, m)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	p := newBrowser(t).newPage("sdk-retry", 1000, 700)
	p.expect("/favicon.ico", "/v1.0/me/notificationSubscriptions")
	p.do("open the page", chromedp.Navigate(proxy.URL+"/sdk-refresh.html"))
	p.waitFor("the module", `window.ready === true`)
	p.do("sign in", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`window.run('signedIn', async () => { window.h = await Herald.signIn({ username: %s, password: %s }); return true; })`,
		js(aliceUP), js(alicePW))))
	p.waitFor("signed in", `window.signedIn === true`)
	type outcome struct {
		OK     string `json:"ok"`
		Status int    `json:"status"`
		Code   string `json:"code"`
	}
	subscribe := func(step string) outcome {
		t.Helper()
		p.do(step, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
			`window.attempt(%q, () => window.h.subscribe({ targetHostName: %s, deviceName: %q }))`, step, js(appHost), step)))
		p.waitFor(step, fmt.Sprintf(`window[%q] !== undefined`, step))
		return eval[outcome](p, step, fmt.Sprintf(`window[%q]`, step))
	}
	alice := apiToken(t, n.URL, url.Values{"grant_type": {"password"}, "username": {aliceUP}, "password": {alicePW}})
	count := func(device string) int {
		var subs struct {
			Value []struct {
				DeviceName string `json:"deviceName"`
			} `json:"value"`
		}
		apiJSON(t, n.URL, alice, "GET", "/v1.0/me/notificationSubscriptions", nil, 200).into(t, &subs)
		k := 0
		for _, s := range subs.Value {
			if s.DeviceName == device {
				k++
			}
		}
		return k
	}

	for _, m := range []string{
		"The write may have been committed: the leader stopped answering while taking it. Retrying is safe for a send with an appNotificationId and for a PATCH or DELETE; before repeating a create, check whether it exists.",
		"The write was committed, but this node has not caught up with it yet; read it again shortly.",
	} {
		device := fmt.Sprintf("laptop-%d", posts.Load())
		message.Store(m)
		before := posts.Load()
		o := subscribe(device)
		if o.Status != http.StatusServiceUnavailable || o.Code != "serviceNotAvailable" {
			t.Errorf("subscribe answered %q: %+v, want the 503", m, o)
		}
		if got := posts.Load() - before; got != 1 {
			t.Errorf("subscribe answered %q was sent %d times, want once", m, got)
		}
		if got := count(device); got != 1 {
			t.Errorf("after a 503 %q the server holds %d subscriptions of the device, want 1", m, got)
		}
	}

	// One that was not committed is retried, and registers once.
	message.Store("The request was not committed: the cluster has no leader right now (an election takes a second or two). Retry after the time in Retry-After.")
	before := posts.Load()
	if o := subscribe("phone"); o.OK == "" {
		t.Errorf("subscribe after a 503 that was not committed: %+v, want the subscription", o)
	}
	if got := posts.Load() - before; got != 2 {
		t.Errorf("subscribe after a 503 that was not committed was sent %d times, want twice", got)
	}
	if got := count("phone"); got != 1 {
		t.Errorf("the server holds %d subscriptions of the phone, want 1", got)
	}
	p.checkClean()
}
