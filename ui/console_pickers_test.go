package ui_test

import (
	"context"
	"testing"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// The pickers of users (Compose, Feed, Deliveries) hold the first 5,000
// users; a user past them that a link names can still be chosen. Making
// 5,000 users here would take minutes of password hashing, so the page's
// fetch leaves zed out of every listing, as the cap leaves out a large
// tenant's later users.
func TestConsolePickersTakeAUserPastTheListing(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	var zed struct{ ID string }
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": "zed", "password": "zed-password"}, &zed)
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Contoso Tasks", "targetHostName": appHost}, nil)

	p := b.newPage("admin", 1280, 800)
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	const hide = `(() => {
		const fetch0 = window.fetch;
		window.fetch = async (input, init) => {
			const r = await fetch0(input, init);
			const url = typeof input === 'string' ? input : input.url;
			if (!/\/v1\.0\/users\?/.test(url) || !r.ok) return r;
			const body = await r.json();
			body.value = body.value.filter((u) => u.userPrincipalName !== 'zed');
			return new Response(JSON.stringify(body), { status: r.status, headers: r.headers });
		};
	})();`
	if _, err := chromedp.Call(ctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: hide}); err != nil {
		t.Fatalf("add the script: %v", err)
	}
	p.do("open the composer for zed", chromedp.Navigate(n.URL+"/ui/#/compose?user="+zed.ID))
	signIn(p, "admin", testnode.AdminPassword)
	p.waitFor("see zed chosen", `(() => { const s = document.getElementById('compose-user'); return s !== null && s.value === `+js(zed.ID)+`; })()`)
	p.do("open zed's feed", chromedp.Navigate(n.URL+"/ui/#/feed?user="+zed.ID))
	p.waitFor("see zed chosen there", `(() => { const s = document.getElementById('feed-user'); return s !== null && s.value === `+js(zed.ID)+`; })()`)
}
