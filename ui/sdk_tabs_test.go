package ui_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// sdkTabsPage holds two cookie-session Heralds, as two tabs of one browser
// have: the same cookies, and the BroadcastChannel between them.
const sdkTabsPage = `<!doctype html>
<meta charset="utf-8">
<title>SDK tabs test</title>
<script type="module">
import { Herald } from '/sdk/herald.js';
window.errors = [];
window.out = { a: 0, b: 0 };
window.run = async (step, fn) => {
  try { window[step] = await fn(); } catch (e) { window.errors.push(step + ': ' + (e && e.message)); }
};
window.a = new Herald({ session: true, onSignedOut: () => { window.out.a++; } });
window.b = new Herald({ session: true, onSignedOut: () => { window.out.b++; } });
window.ready = true;
</script>`

// Two tabs of one browser share its session cookies. When a second tab
// signs in as someone else (a shared computer: the tab still showed the
// sign-in form), the cookies are that user's now: the first tab's SDK
// must not go on as if its user were still signed in, reading and
// changing the other user's notifications under its own user's name. It
// ends its sign-in (onSignedOut), whether it hears of it from the tab
// (the SDK's sign-in) or finds out at its next refresh (a sign-in made
// without the SDK, such as the console's).
func TestSDKSessionEndsWhenAnotherTabSignsInAsSomeoneElse(t *testing.T) {
	n := testnode.Start(t, nil)
	admin := apiToken(t, n.URL, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}})
	apiJSON(t, n.URL, admin, "POST", "/v1.0/users", map[string]any{"userPrincipalName": aliceUP, "password": alicePW}, 201)
	apiJSON(t, n.URL, admin, "POST", "/v1.0/users", map[string]any{"userPrincipalName": "bob", "password": "bob-password"}, 201)

	target, _ := url.Parse(n.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sdk-tabs.html" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, sdkTabsPage)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	p := newBrowser(t).newPage("sdk-tabs", 1000, 700)
	// The refresh and the sign-out over another user's cookies fail on
	// purpose.
	p.expect("/favicon.ico", "/ui/session")
	p.do("open the page", chromedp.Navigate(proxy.URL+"/sdk-tabs.html"))
	p.waitFor("the module", `window.ready === true`)
	step := func(name, fn string) {
		t.Helper()
		p.do(name, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.run(%s, async () => { %s })`, js(name), fn)))
		p.waitFor(name, fmt.Sprintf(`window[%s] !== undefined || window.errors.length > 0`, js(name)))
		noErrors(t, p)
	}

	// Through the SDK in the other tab.
	step("alice", fmt.Sprintf(`return (await a.signIn({ username: %s, password: %s })).userPrincipalName;`, js(aliceUP), js(alicePW)))
	step("bob", `return (await b.signIn({ username: 'bob', password: 'bob-password' })).userPrincipalName;`)
	p.waitFor("the first tab signed out", `window.out.a === 1`)
	if !eval[bool](p, "state", `a.user === null && b.user && b.user.userPrincipalName === 'bob' && window.out.b === 0`) {
		t.Error("after bob's sign-in in the other tab, the first tab still holds a user, or bob's tab was signed out")
	}

	// Without the SDK (the console's sign-in form): found at the refresh.
	step("alice2", fmt.Sprintf(`return (await a.signIn({ username: %s, password: %s })).userPrincipalName;`, js(aliceUP), js(alicePW)))
	p.waitFor("bob's tab signed out by alice's sign-in", `window.out.b === 1`)
	step("otherSignIn", `const r = await fetch('/ui/session', { method: 'POST', headers: { 'Content-Type': 'application/json' },
	  body: JSON.stringify({ username: 'bob', password: 'bob-password' }) }); return r.status;`)
	step("refreshed", `return String(await a.refresh());`)
	if got := eval[string](p, "refresh", `window.refreshed`); got != "false" {
		t.Errorf("alice's tab refreshed onto bob's session: refresh() answered %s, want false", got)
	}
	if !eval[bool](p, "state", `a.user === null && window.out.a === 2`) {
		t.Errorf("alice's tab after its refresh found bob's session: user %v, signed out %v times",
			eval[any](p, "user", `a.user && a.user.userPrincipalName`), eval[int](p, "out", `window.out.a`))
	}

	// Signing out a tab whose cookies became another user's signs out
	// neither of them on the server: it ends its own sign-in only.
	step("alice3", fmt.Sprintf(`return (await a.signIn({ username: %s, password: %s })).userPrincipalName;`, js(aliceUP), js(alicePW)))
	step("otherSignIn2", `const r = await fetch('/ui/session', { method: 'POST', headers: { 'Content-Type': 'application/json' },
	  body: JSON.stringify({ username: 'bob', password: 'bob-password' }) }); return r.status;`)
	step("signedOut", `await a.signOut(); return true;`)
	step("still", `return (await (await fetch('/ui/session')).json()).user.userPrincipalName;`)
	if got := eval[string](p, "who", `window.still`); got != "bob" {
		t.Errorf("after alice's tab signed out over bob's cookies, the browser's session is %q's, want bob's", got)
	}
	if got := eval[int](p, "out", `window.out.a`); got != 3 {
		t.Errorf("alice's tab told of %d sign-outs, want 3", got)
	}
	p.checkClean()
}
