package ui_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// sdkWorker is an app developer's service worker built on the SDK's helper.
// A message whose id starts with "settled-" is the test's marker: the
// helper handles one message at a time, so when its onMessage sees the
// marker every earlier push has been shown or closed, and the worker tells
// the page.
const sdkWorker = `import { handlePush } from '/sdk/herald.js';
handlePush(self, { url: '/sdk-test.html', onMessage: async (m) => {
  if (!m.id.startsWith('settled-')) return true;
  const cs = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  cs.forEach((c) => c.postMessage(m.id));
  return false;
} });
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));
`

// The SDK's service-worker helper in Chromium: a pushed message in the
// format Herald's Web Push sender encrypts is shown once as a notification
// tagged with its id (a repeat replaces it), and closed when it is read on
// another device. The push service is outside this machine, so the test
// hands the message to the worker through the DevTools protocol, as the
// browser does after decrypting it.
//
// The page reads the notifications only once the worker has handled every
// push: under load, Chromium lost a notification (n2, for good) when the
// page's getNotifications polls overlapped the worker showing it.
func TestSDKServiceWorkerHelperShowsAndClosesPushes(t *testing.T) {
	n := testnode.Start(t, nil)
	target, _ := url.Parse(n.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sdk-test.html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, `<!doctype html><meta charset="utf-8"><title>push test</title>`)
		case "/sdk-sw.js":
			w.Header().Set("Content-Type", "text/javascript")
			io.WriteString(w, sdkWorker)
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(proxy.Close)

	p := newBrowser(t).newPage("push", 800, 600)
	p.expect("/favicon.ico") // the test's page has no icon
	ctx := p.ctx
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
		Permission: &cdpbrowser.PermissionDescriptor{Name: "notifications"}, Setting: cdpbrowser.PermissionSettingGranted,
		Origin: proxy.URL, BrowserContextID: chromedp.FromContext(ctx).BrowserContextID}); err != nil {
		t.Fatalf("grant notifications: %v", err)
	}
	// The registration is taken from the DevTools events by its scope, and
	// the pushes wait until its version is activated. Every version change
	// is logged, so a failed step shows how far the worker got.
	var (
		mu      sync.Mutex
		reg     serviceworker.RegistrationID
		active  = map[serviceworker.RegistrationID]bool{}
		changed = make(chan struct{}, 1)
	)
	record := func(f func()) {
		mu.Lock()
		f()
		mu.Unlock()
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	regEvents := chromedp.Events(ctx, serviceworker.WorkerRegistrationUpdated)
	versionEvents := chromedp.Events(ctx, serviceworker.WorkerVersionUpdated)
	errorEvents := chromedp.Events(ctx, serviceworker.WorkerErrorReported)
	go func() {
		for ev, err := range regEvents {
			if err != nil {
				return
			}
			for _, r := range ev.Registrations {
				if !r.IsDeleted && r.ScopeURL == proxy.URL+"/" {
					record(func() { reg = r.RegistrationID })
				}
			}
		}
	}()
	go func() {
		for ev, err := range versionEvents {
			if err != nil {
				return
			}
			for _, v := range ev.Versions {
				p.note(false, fmt.Sprintf("service worker version %s: %s, %s", v.VersionID, v.Status, v.RunningStatus))
				if v.Status == serviceworker.VersionStatusActivated {
					record(func() { active[v.RegistrationID] = true })
				}
			}
		}
	}()
	go func() {
		for ev, err := range errorEvents {
			if err != nil {
				return
			}
			p.note(true, "service worker error: "+ev.ErrorMessage.ErrorMessage)
		}
	}()
	p.do("open the page", chromedp.Navigate(proxy.URL+"/sdk-test.html"))
	if _, err := chromedp.Call(ctx, serviceworker.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enable the ServiceWorker domain: %v", err)
	}
	p.do("register the worker", chromedp.Evaluate[chromedp.Void](
		`navigator.serviceWorker.onmessage = (e) => { window.settled = e.data; };
		navigator.serviceWorker.register('/sdk-sw.js', { type: 'module' }).then(() => navigator.serviceWorker.ready).then(() => { window.ready = true; }, (e) => { window.failed = String(e); })`))
	p.waitFor("the worker", `window.ready === true || window.failed !== undefined`)
	if f := eval[string](p, "registration", `window.failed || ''`); f != "" {
		t.Fatalf("register the worker: %s", f)
	}
	deadline := time.After(stepTimeout)
	for {
		mu.Lock()
		ok := reg != "" && active[reg]
		mu.Unlock()
		if ok {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no activated registration for %s/ in the DevTools events after %s", proxy.URL, stepTimeout)
		}
	}
	push := func(msg map[string]any) {
		t.Helper()
		b, _ := json.Marshal(msg)
		if _, err := chromedp.Call(ctx, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
			Origin: proxy.URL, RegistrationID: reg, Data: string(b)}); err != nil {
			t.Fatalf("deliver a push: %v", err)
		}
	}
	// settle waits until the worker has handled every push before it.
	settle := func(step string, k int) {
		t.Helper()
		id := fmt.Sprintf("settled-%d", k)
		push(map[string]any{"type": "created", "id": id, "title": "marker", "readState": "unread", "userActionState": "noInteraction"})
		p.waitFor(step, `window.settled === `+js(id))
	}
	// shown lists the worker's notifications as tag:title, refreshed on
	// every poll.
	shown := `(navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((ns) => {
	  window.shown = ns.map((n) => n.tag + ':' + n.title).sort().join(','); }), window.shown)`

	push(map[string]any{"type": "created", "id": "n1", "title": "Build done", "body": "all green", "readState": "unread", "userActionState": "noInteraction"})
	push(map[string]any{"type": "created", "id": "n1", "title": "Build done", "body": "all green", "readState": "unread", "userActionState": "noInteraction"})
	push(map[string]any{"type": "created", "id": "n2", "title": "Deploy started", "readState": "unread", "userActionState": "noInteraction"})
	settle("pushes shown", 1)
	p.waitFor("two notifications, the repeat replacing", shown+` === 'n1:Build done,n2:Deploy started'`)
	push(map[string]any{"type": "updated", "id": "n1", "title": "Build done", "readState": "read", "userActionState": "noInteraction"})
	push(map[string]any{"type": "deleted", "id": "n2", "reason": "deleted"})
	settle("pushes closed", 2)
	p.waitFor("both closed", shown+` === ''`)
	p.checkClean()
}

// sdkPushPage registers for Web Push the way the SDK's documentation
// says, on a first visit: registerWebPush with the worker script's URL.
// This machine has no push service, so the page stands one in where the
// browser would reach it: a subscribe that the browser itself let through
// (it checks the registration first) answers a subscription with real
// P-256 keys and a public endpoint.
const sdkPushPage = `<!doctype html>
<meta charset="utf-8">
<title>SDK Web Push registration</title>
<script type="module">
import { Herald } from '/sdk/herald.js';
const real = PushManager.prototype.subscribe;
PushManager.prototype.subscribe = async function (opts) {
  try {
    return await real.call(this, opts);
  } catch (e) {
    if (!/permission denied|push service/i.test(e.message)) throw e;
  }
  const pair = await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']);
  const b64 = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const keys = { p256dh: b64(await crypto.subtle.exportKey('raw', pair.publicKey)), auth: b64(crypto.getRandomValues(new Uint8Array(16))) };
  return { toJSON: () => ({ endpoint: 'https://push.example.com/send/test-device', keys }) };
};
window.register = (username, password, host) => (async () => {
  try {
    const herald = await Herald.signIn({ username, password });
    const sub = await herald.registerWebPush({ targetHostName: host, serviceWorker: '/sdk-sw.js', deviceName: 'first visit' });
    window.registered = sub.channel.type + ':' + sub.status;
  } catch (e) {
    window.registered = 'error: ' + e.message;
  }
})();
window.ready = true;
</script>`

// registerWebPush with the worker's URL, on a page that has no worker yet
// (any first visit), registers it and subscribes once it is active: the
// browser refuses a push subscription on a registration whose worker is
// still installing ("no active Service Worker"), which is all a fresh
// registration has while its worker precaches what it serves offline.
func TestSDKRegisterWebPushOnFirstVisit(t *testing.T) {
	n := testnode.Start(t, nil)
	admin := apiToken(t, n.URL, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}})
	apiJSON(t, n.URL, admin, "POST", "/v1.0/users", map[string]any{"userPrincipalName": aliceUP, "password": alicePW}, 201)
	apiJSON(t, n.URL, admin, "POST", "/v1.0/applications", map[string]any{"displayName": "Tasks", "targetHostName": appHost}, 201)
	target, _ := url.Parse(n.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sdk-push.html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, sdkPushPage)
		case "/sdk-sw.js":
			w.Header().Set("Content-Type", "text/javascript")
			// An app's worker precaches its files as it installs.
			io.WriteString(w, sdkWorker+"self.addEventListener('install', (e) => e.waitUntil(new Promise((r) => setTimeout(r, 1000))));\n")
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(proxy.Close)

	p := newBrowser(t).newPage("push-register", 800, 600)
	// Chromium says so of every push subscription in the test's own
	// browser context, which the page's stand-in push service answers.
	p.expect("/favicon.ico", "does not support the Push API in incognito mode")
	if _, err := chromedp.CallBrowser(p.ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
		Permission: &cdpbrowser.PermissionDescriptor{Name: "notifications"}, Setting: cdpbrowser.PermissionSettingGranted,
		Origin: proxy.URL, BrowserContextID: chromedp.FromContext(p.ctx).BrowserContextID}); err != nil {
		t.Fatalf("grant notifications: %v", err)
	}
	p.do("open the page", chromedp.Navigate(proxy.URL+"/sdk-push.html"))
	p.waitFor("the module", `window.ready === true`)
	p.do("register for Web Push", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.register(%s, %s, %s)`, js(aliceUP), js(alicePW), js(appHost))))
	p.waitFor("the registration", `window.registered !== undefined`)
	if got := eval[string](p, "the registration", `window.registered`); got != "webPush:active" {
		t.Fatalf("registerWebPush on a first visit: %s", got)
	}
	alice := apiToken(t, n.URL, url.Values{"grant_type": {"password"}, "username": {aliceUP}, "password": {alicePW}})
	var subs struct {
		Value []struct {
			DeviceName string `json:"deviceName"`
			Channel    struct {
				Type     string `json:"type"`
				Endpoint string `json:"endpoint"`
			} `json:"channel"`
		} `json:"value"`
	}
	apiJSON(t, n.URL, alice, "GET", "/v1.0/me/notificationSubscriptions", nil, 200).into(t, &subs)
	if len(subs.Value) != 1 || subs.Value[0].Channel.Type != "webPush" || subs.Value[0].DeviceName != "first visit" {
		t.Errorf("the server has %+v, want the one webPush subscription", subs.Value)
	}
	p.checkClean()
}
