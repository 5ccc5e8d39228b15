package ui_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// sdkWorker is an app developer's service worker built on the SDK's helper.
const sdkWorker = `import { handlePush } from '/sdk/herald.js';
handlePush(self, { url: '/sdk-test.html' });
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));
`

// The SDK's service-worker helper in Chromium: a pushed message in the
// format Herald's Web Push sender encrypts is shown once as a notification
// tagged with its id (a repeat replaces it), and closed when it is read on
// another device. The push service is outside this machine, so the test
// hands the message to the worker through the DevTools protocol, as the
// browser does after decrypting it.
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
	regs := make(chan serviceworker.RegistrationID, 16)
	events := chromedp.Events(ctx, serviceworker.WorkerRegistrationUpdated)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			for _, r := range ev.Registrations {
				if !r.IsDeleted {
					select {
					case regs <- r.RegistrationID:
					default:
					}
				}
			}
		}
	}()
	p.do("open the page", chromedp.Navigate(proxy.URL+"/sdk-test.html"))
	if _, err := chromedp.Call(ctx, serviceworker.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enable the ServiceWorker domain: %v", err)
	}
	p.do("register the worker", chromedp.Evaluate[chromedp.Void](
		`navigator.serviceWorker.register('/sdk-sw.js', { type: 'module' }).then(() => navigator.serviceWorker.ready).then(() => { window.ready = true; }, (e) => { window.failed = String(e); })`))
	p.waitFor("the worker", `window.ready === true || window.failed !== undefined`)
	if f := eval[string](p, "registration", `window.failed || ''`); f != "" {
		t.Fatalf("register the worker: %s", f)
	}
	var reg serviceworker.RegistrationID
	select {
	case reg = <-regs:
	case <-time.After(stepTimeout):
		t.Fatal("no registration event from the DevTools protocol")
	}
	push := func(msg map[string]any) {
		t.Helper()
		b, _ := json.Marshal(msg)
		if _, err := chromedp.Call(ctx, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
			Origin: proxy.URL, RegistrationID: reg, Data: string(b)}); err != nil {
			t.Fatalf("deliver a push: %v", err)
		}
	}
	// shown lists the worker's notifications as tag:title, refreshed on
	// every poll.
	shown := `(navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((ns) => {
	  window.shown = ns.map((n) => n.tag + ':' + n.title).sort().join(','); }), window.shown)`

	push(map[string]any{"type": "created", "id": "n1", "title": "Build done", "body": "all green", "readState": "unread", "userActionState": "noInteraction"})
	push(map[string]any{"type": "created", "id": "n1", "title": "Build done", "body": "all green", "readState": "unread", "userActionState": "noInteraction"})
	push(map[string]any{"type": "created", "id": "n2", "title": "Deploy started", "readState": "unread", "userActionState": "noInteraction"})
	p.waitFor("two notifications, the repeat replacing", shown+` === 'n1:Build done,n2:Deploy started'`)
	push(map[string]any{"type": "updated", "id": "n1", "title": "Build done", "readState": "read", "userActionState": "noInteraction"})
	push(map[string]any{"type": "deleted", "id": "n2", "reason": "deleted"})
	p.waitFor("both closed", shown+` === ''`)
	p.checkClean()
}
