package ui_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// Behind a proxy that terminates TLS (the hardening SECURITY.md advises),
// the node sees plain HTTP and, without --public-url, names its nextLinks
// http://. The pages follow them on their own origin all the same: the
// inbox's "Show older notifications" and the console's "Load more" show
// the next page rather than an error.
func TestPagesFollowNextLinksBehindATLSProxy(t *testing.T) {
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": aliceUP, "password": alicePW, "roles": []string{"user"}}, nil)
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Contoso Tasks", "targetHostName": appHost}, nil)
	const sent = 55 // a page more than the inbox's and the feed explorer's 50
	for i := range sent {
		api.call("POST", "/v1.0/users/alice/notifications", admin, map[string]any{"targetHostName": appHost,
			"payload": map[string]any{"visualContent": map[string]any{"title": fmt.Sprintf("Build %d", i)}}}, nil)
	}
	target, _ := url.Parse(n.URL)
	proxy := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(proxy.Close)

	b := newBrowser(t, chromedp.Flag("ignore-certificate-errors", true))
	inbox := b.newPage("inbox", 1280, 800)
	inbox.do("open the inbox", chromedp.Navigate(proxy.URL+"/ui/inbox/"))
	signIn(inbox, aliceUP, alicePW)
	inbox.waitFor("load the feed", `document.querySelector('#feed')?.dataset.loaded === 'true'`)
	inbox.do("show older notifications", chromedp.Evaluate[chromedp.Void](
		`[...document.querySelectorAll('button')].find((b) => b.textContent === 'Show older notifications').click()`))
	inbox.waitFor("show all of them", fmt.Sprintf(`document.querySelectorAll('#feed .notif').length === %d`, sent))
	inbox.checkClean()

	con := b.newPage("console", 1280, 800)
	con.do("open the feed explorer", chromedp.Navigate(proxy.URL+"/ui/#/feed?user=alice"))
	signIn(con, "admin", testnode.AdminPassword)
	con.waitFor("list a page", `document.querySelectorAll('tr[data-id]').length === 50`)
	con.do("load more", chromedp.Evaluate[chromedp.Void](
		`[...document.querySelectorAll('button')].find((b) => b.textContent === 'Load more').click()`))
	con.waitFor("list all of them", fmt.Sprintf(`document.querySelectorAll('tr[data-id]').length === %d`, sent))
	con.checkClean()
}

// sdkPrefixPage is an app's page that reaches Herald under a path of its
// own origin, as a proxy that routes /herald/ to the node does.
const sdkPrefixPage = `<!doctype html>
<meta charset="utf-8">
<title>SDK behind a path prefix</title>
<script type="module">
import { Herald } from '/herald/sdk/herald.js';
window.errors = [];
window.run = async (step, fn) => {
  try { window[step] = await fn(); } catch (e) { window.errors.push(step + ': ' + (e && e.message)); }
};
window.Herald = Herald;
window.ready = true;
</script>`

// Behind a proxy that serves the node under a path (--public-url
// https://NAME/herald), the node's nextLinks carry that path, and an SDK
// given baseUrl https://NAME/herald follows them there: not at
// /herald/herald/..., which the proxy does not know.
func TestSDKFollowsNextLinksUnderAPathPrefix(t *testing.T) {
	rp := &httputil.ReverseProxy{}
	proxy := httptest.NewUnstartedServer(nil)
	cfg := testnode.Config(t, t.TempDir())
	cfg.PublicURL = "http://" + proxy.Listener.Addr().String() + "/herald"
	n := testnode.Start(t, &cfg)
	target, _ := url.Parse(n.URL)
	rp.Rewrite = func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/herald")
		pr.Out.URL.RawPath = ""
	}
	proxy.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/app.html" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, sdkPrefixPage)
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/herald/") {
			http.NotFound(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	})
	proxy.Start()
	t.Cleanup(proxy.Close)

	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": aliceUP, "password": alicePW, "roles": []string{"user"}}, nil)
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Contoso Tasks", "targetHostName": appHost}, nil)
	const sent = 3
	for i := range sent {
		api.call("POST", "/v1.0/users/alice/notifications", admin, map[string]any{"targetHostName": appHost,
			"payload": map[string]any{"visualContent": map[string]any{"title": fmt.Sprintf("Build %d", i)}}}, nil)
	}

	p := newBrowser(t).newPage("sdk-prefix", 1000, 700)
	p.expect("/favicon.ico")
	p.do("open the page", chromedp.Navigate(proxy.URL+"/app.html"))
	p.waitFor("the module", `window.ready === true`)
	p.do("list the feed a page of one at a time", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.run('titles', async () => {
	  const h = await Herald.signIn({ baseUrl: location.origin + '/herald', username: %s, password: %s });
	  const out = [];
	  for await (const n of h.allNotifications({ top: 1 })) out.push(n.id);
	  return out.length;
	})`, js(aliceUP), js(alicePW))))
	p.waitFor("the feed", `window.titles !== undefined || window.errors.length > 0`)
	noErrors(t, p)
	if got := eval[int](p, "count", `window.titles`); got != sent {
		t.Errorf("the SDK listed %d notifications page by page, want %d", got, sent)
	}
	p.checkClean()
}
