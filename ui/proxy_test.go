package ui_test

import (
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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
