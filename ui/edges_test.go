package ui_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// The rough edges a newcomer met (issue 9), on a phone: a signed-out page
// load logs nothing, inbox cards name the application by its display name,
// errors name the form's fields, the header keeps the signed-in name, the
// toast no longer covers the notice's buttons, and sign-out lets its
// requests finish (none is cancelled).
func TestUIEdgesOnAPhone(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": aliceUP, "displayName": "Alice Example", "password": alicePW, "roles": []string{"user"}}, nil)
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Contoso Tasks", "targetHostName": appHost}, nil)
	api.call("POST", "/v1.0/users/alice/notifications", admin, map[string]any{"targetHostName": appHost,
		"payload": map[string]any{"visualContent": map[string]any{"title": "Build 42 finished"}}}, nil)

	// Signed out: both pages load without a console error (checkClean
	// below fails on any).
	out := b.newPage("signed-out", 390, 844)
	for _, path := range []string{"/", "/ui/inbox/?app=" + appHost} {
		out.do("open "+path+" signed out", chromedp.Navigate(n.URL+path), chromedp.WaitVisible(chromedp.CSS("#signin-username")))
	}
	out.checkClean()

	inbox := b.newPage("inbox-phone", 390, 844)
	// The inbox's requests, sign-out's included, are watched at the
	// network level: none may be cancelled or fail (the page closes its
	// live stream on purpose).
	var mu sync.Mutex
	var failed []string
	urls := map[network.RequestID]string{}
	ctx, cancel := context.WithTimeout(inbox.ctx, stepTimeout)
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("watch the network: %v", err)
	}
	cancel()
	watch, unwatch := context.WithCancel(inbox.ctx)
	sent := chromedp.Events(watch, network.RequestWillBeSent)
	lost := chromedp.Events(watch, network.LoadingFailed)
	answered := chromedp.Events(watch, network.ResponseReceived)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for e, err := range sent {
			if err != nil {
				return
			}
			mu.Lock()
			urls[e.RequestID] = e.Request.Method + " " + e.Request.URL
			mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		for e, err := range lost {
			if err != nil {
				return
			}
			mu.Lock()
			// The live stream is closed by the page on purpose.
			if u := urls[e.RequestID]; !strings.Contains(u, "/notifications/stream") {
				failed = append(failed, u+": "+e.ErrorText)
			}
			mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		for e, err := range answered {
			if err != nil {
				return
			}
			if e.Response.Status >= 400 {
				mu.Lock()
				failed = append(failed, urls[e.RequestID]+": "+e.Response.StatusText)
				mu.Unlock()
			}
		}
	}()
	inbox.do("open the inbox", chromedp.Navigate(n.URL+"/ui/inbox/?app="+appHost))
	signIn(inbox, aliceUP, alicePW)
	inbox.do("go live", chromedp.WaitVisible(chromedp.CSS(`#live-status[data-state="live"]`)))
	inbox.waitFor("show the application's display name", `[...document.querySelectorAll('#feed .notif-app')].some((e) => e.textContent === 'Contoso Tasks')`)
	if got := eval[string](inbox, "read the card's sender", `[...document.querySelectorAll('#feed .notif-app')].map((e) => e.textContent).join('|')`); strings.Contains(got, appHost) {
		t.Errorf("inbox cards name the sender %q; want the display name, not the host", got)
	}
	if !eval[bool](inbox, "see the signed-in name", `(() => {
		const e = [...document.querySelectorAll('.whoami > .muted')].find((x) => x.textContent === 'Alice Example');
		if (!e) return false;
		const r = e.getBoundingClientRect();
		return r.width > 0 && r.height > 0 && r.right <= innerWidth;
	})()`) {
		t.Error("on a phone the inbox header does not show the signed-in name")
	}

	inbox.do("sign out",
		chromedp.Click(chromedp.CSS("#signout")),
		chromedp.WaitVisible(chromedp.CSS("#signin-username")),
	)
	unwatch()
	wg.Wait()
	mu.Lock()
	if len(failed) > 0 {
		t.Errorf("sign-out's requests failed or were cancelled: %v", failed)
	}
	mu.Unlock()
	inbox.checkClean()

	con := b.newPage("console-phone", 390, 844)
	con.do("open the users", chromedp.Navigate(n.URL+"/ui/#/users"))
	signIn(con, "admin", testnode.AdminPassword)
	con.expect("status of 400 (Bad Request) " + n.URL + "/v1.0/users")
	con.do("create a user with a bad name",
		chromedp.WaitVisible(chromedp.CSS("#new-user-upn")),
		chromedp.SendKeys(chromedp.CSS("#new-user-upn"), "not a name!"),
		chromedp.SendKeys(chromedp.CSS("#new-user-password"), "long-enough-password"),
		chromedp.Click(chromedp.CSS("#new-user-submit")),
		chromedp.WaitVisible(chromedp.CSS(".form-error")),
	)
	if msg := eval[string](con, "read the error", `document.querySelector('.form-error').textContent`); strings.Contains(msg, "userPrincipalName") || !strings.Contains(msg, "User name") {
		t.Errorf("the error reads %q; want the form's label “User name”, not the API's field name", msg)
	}

	// Send from the composer: the toast, if any, must not cover the
	// notice's buttons.
	con.do("compose", chromedp.Navigate(n.URL+"/ui/#/compose"), chromedp.WaitVisible(chromedp.CSS("#compose-title")))
	eval[bool](con, "choose alice and the app", `(() => {
		const s = document.querySelector('#compose-user');
		s.value = [...s.options].find((o) => o.text.includes('alice')).value;
		s.dispatchEvent(new Event('change', {bubbles: true}));
		return true;
	})()`)
	con.do("send",
		chromedp.SendKeys(chromedp.CSS("#compose-title"), "From a phone"),
		chromedp.Click(chromedp.CSS("#compose-send")),
		chromedp.WaitVisible(chromedp.CSS("#compose-result .notice-ok")),
		chromedp.ScrollIntoView(chromedp.CSS("#compose-deliveries")),
	)
	if covered := eval[string](con, "see the notice's buttons", `(() => {
		const toasts = [...document.querySelectorAll('.toast')].map((t) => t.getBoundingClientRect());
		for (const b of document.querySelectorAll('#compose-result a, #compose-result button')) {
			const r = b.getBoundingClientRect();
			for (const t of toasts) {
				if (r.left < t.right && t.left < r.right && r.top < t.bottom && t.top < r.bottom) return b.textContent;
			}
		}
		return '';
	})()`); covered != "" {
		t.Errorf("a toast covers the notice's %q button", covered)
	}
	con.checkClean()
}

// A user who is not an admin is turned away by the console, and following a
// console link (a change of the hash) leaves that page as it is: it threw
// and asked the API for the users list, which is the admins'.
func TestConsoleTurnsAwayAUserWhoIsNotAnAdmin(t *testing.T) {
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": aliceUP, "password": alicePW, "roles": []string{"user"}}, nil)

	p := newBrowser(t).newPage("not-an-admin", 1000, 700)
	p.do("open the console", chromedp.Navigate(n.URL+"/ui/"))
	signIn(p, aliceUP, alicePW)
	p.waitFor("turned away", `document.querySelector('h1') && document.querySelector('h1').textContent === 'This console is for admins'`)
	// A listener added after the console's runs after it, so once it has
	// run, the console's has too.
	p.do("follow a console link", chromedp.Evaluate[chromedp.Void](
		`window.addEventListener('hashchange', () => { window.hashSeen = true; }); location.hash = '#/users';`))
	p.waitFor("the hash change handled", `window.hashSeen === true`)
	if got := eval[string](p, "the page", `document.querySelector('h1').textContent`); got != "This console is for admins" {
		t.Fatalf("after the hash changed the page shows %q", got)
	}
	// What failed was an uncaught TypeError and a 403 for /v1.0/users,
	// which checkClean reports.
	p.checkClean()
}

// The console keeps its session when a refresh cannot reach the server: a
// 401 whose refresh meets a dropped connection shows the view's error and
// leaves the admin signed in (it ended the session and showed the sign-in
// form), and the next visit, with the server back, works.
func TestConsoleKeepsItsSessionWhenARefreshCannotReachTheServer(t *testing.T) {
	n := testnode.Start(t, nil)
	target, _ := url.Parse(n.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	var down, usersUnauthorized atomic.Bool
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/ui/session/refresh" && down.Load():
			dropConnection(w)
			return
		case r.URL.Path == "/v1.0/users" && usersUnauthorized.CompareAndSwap(true, false):
			unauthorized(w)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	p := newBrowser(t).newPage("console-refresh", 1200, 800)
	p.expect("/ui/session/refresh", "/v1.0/users")
	p.do("open the console", chromedp.Navigate(proxy.URL+"/ui/"))
	signIn(p, "admin", testnode.AdminPassword)
	p.waitFor("signed in", `!!document.querySelector('#main h1')`)
	down.Store(true)
	usersUnauthorized.Store(true)
	p.do("open the users", chromedp.Evaluate[chromedp.Void](`location.hash = '#/users'`))
	p.waitFor("the error shown", `document.body.textContent.includes('Herald could not be reached')`)
	if eval[bool](p, "still signed in", `!!document.querySelector('#signin-username') || !document.querySelector('#main')`) {
		t.Fatal("a refresh that could not reach the server signed the console out")
	}
	down.Store(false)
	p.do("back to the dashboard", chromedp.Evaluate[chromedp.Void](`location.hash = '#/dashboard'`))
	p.do("open the users again", chromedp.Evaluate[chromedp.Void](`location.hash = '#/users'`))
	p.waitFor("the users listed", `document.body.textContent.includes('admin') && !document.body.textContent.includes('Herald could not be reached')`)
	p.checkClean()
}

// A link whose address does not decode (a stray %) opens the console's
// default view: decoding it threw, and the console stayed blank.
func TestConsoleOpensAMalformedLink(t *testing.T) {
	n := testnode.Start(t, nil)
	p := newBrowser(t).newPage("malformed-link", 1200, 800)
	p.do("open a malformed link", chromedp.Navigate(n.URL+"/ui/#/%E0"))
	signIn(p, "admin", testnode.AdminPassword)
	p.waitFor("the dashboard", `document.querySelector('#main h1')?.textContent === 'Dashboard'`)
	p.checkClean()
}

// Long words that users, admins and applications choose (a group name, a
// title, a display name: a hash or a URL with no space in it) wrap inside
// their box. An application's one notification with a long group name
// made every card in a phone's inbox thousands of pixels wide, its text
// unreadable without scrolling sideways; the console's headings and lists
// widened its pages the same way.
func TestLongWordsDoNotWidenThePages(t *testing.T) {
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	long := strings.Repeat("W", 256)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": aliceUP, "displayName": long, "password": alicePW, "roles": []string{"user"}}, nil)
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": long, "targetHostName": appHost}, nil)
	var sent struct{ ID string }
	api.call("POST", "/v1.0/users/alice/notifications", admin, map[string]any{"targetHostName": appHost, "groupName": long,
		"payload": map[string]any{"visualContent": map[string]any{"title": strings.Repeat("T", 1000), "body": strings.Repeat("B", 2000)}}}, &sent)
	api.call("POST", "/v1.0/users/alice/notifications", admin, map[string]any{"targetHostName": appHost,
		"payload": map[string]any{"visualContent": map[string]any{"title": "Build 42 finished"}}}, nil)

	const fits = `document.documentElement.scrollWidth <= innerWidth`
	b := newBrowser(t)
	inbox := b.newPage("inbox-phone", 390, 844)
	inbox.do("open the inbox", chromedp.Navigate(n.URL+"/ui/inbox/?app="+appHost))
	signIn(inbox, aliceUP, alicePW)
	inbox.waitFor("load the feed", `document.querySelectorAll('#feed .notif').length === 2`)
	if !eval[bool](inbox, "measure", fits) {
		t.Errorf("the inbox is %d px wide on a %d px phone", eval[int](inbox, "width", `document.documentElement.scrollWidth`), 390)
	}
	inbox.checkClean()

	con := b.newPage("console", 390, 844)
	con.do("open the console", chromedp.Navigate(n.URL+"/ui/"))
	signIn(con, "admin", testnode.AdminPassword)
	con.waitFor("signed in", `!!document.querySelector('#main h1')`)
	for _, width := range []int64{390, 1280} {
		con.do("resize", chromedp.EmulateViewport(width, 844))
		for _, hash := range []string{"#/users/alice", "#/apps", "#/compose?user=alice", "#/deliveries?user=alice", "#/deliveries?user=alice&n=" + sent.ID} {
			con.do("open "+hash, chromedp.Evaluate[chromedp.Void](`location.hash = '#/dashboard'; location.hash = `+js(hash)))
			con.waitFor("load "+hash, `!!document.querySelector('#main h1') && !document.querySelector('#main .loading')`)
			if !eval[bool](con, "measure "+hash, fits) {
				t.Errorf("%s is %d px wide in a %d px window", hash, eval[int](con, "width", `document.documentElement.scrollWidth`), width)
			}
		}
	}
	con.checkClean()
}

// Cookies are not kept apart by port, and a sibling subdomain (or anyone
// on the path of a plain-HTTP request) can set them for Herald's host
// too: a page elsewhere plants the refresh cookie of the attacker's own
// session. The server cannot tell it from one it set for this browser, so
// the pages take a session only if this browser signed it in; they
// showed the attacker's inbox, signed in, instead of the sign-in form.
// An access cookie planted beside the browser's own, at a longer path so
// that it goes first, had the signed-in inbox read the attacker's feed;
// now the inbox says what is wrong, and shows nothing of the attacker's.
func TestPagesIgnoreASessionPlantedFromAnotherPort(t *testing.T) {
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	for _, u := range []string{aliceUP, "mallory"} {
		api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": u, "password": u + "-password", "roles": []string{"admin"}}, nil)
	}
	// Mallory signs in to the UI herself and keeps her refresh cookie.
	res, err := http.Post(n.URL+"/ui/session", "application/json", strings.NewReader(`{"username":"mallory","password":"mallory-password"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	planted := map[string]*http.Cookie{}
	for _, c := range res.Cookies() {
		planted[c.Name] = &http.Cookie{Name: c.Name, Value: c.Value, Path: c.Path, MaxAge: 3600}
	}
	if planted["herald_refresh"] == nil || planted["herald_session"] == nil {
		t.Fatalf("sign-in set no cookies: %v", res.Header.Values("Set-Cookie"))
	}
	planted["herald_session"].Path = "/v1.0/me/notifications"
	mallory := api.token("mallory", "mallory-password")
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Contoso Tasks", "targetHostName": appHost}, nil)
	api.call("POST", "/v1.0/users/mallory/notifications", mallory, map[string]any{"targetHostName": appHost,
		"payload": map[string]any{"visualContent": map[string]any{"title": "Mallory's bait"}}}, nil)
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, planted[r.URL.Query().Get("plant")])
		io.WriteString(w, "another service on the same host")
	}))
	t.Cleanup(elsewhere.Close)

	b := newBrowser(t)
	for _, path := range []string{"/ui/inbox/", "/ui/"} {
		p := b.newPage("victim "+path, 1200, 800)
		p.do("visit the other service", chromedp.Navigate(elsewhere.URL+"/?plant=herald_refresh"))
		p.do("open "+path, chromedp.Navigate(n.URL+path))
		p.waitFor("the sign-in form or a signed-in page", `!!document.querySelector('#signin-username') || !!document.querySelector('.whoami')`)
		if who := eval[string](p, "who", `document.querySelector('.whoami') ? document.querySelector('.whoami').textContent : ''`); who != "" {
			t.Fatalf("%s opened signed in with the planted cookie: %q", path, who)
		}
		// Signing in as oneself works as ever, and stays across a reload.
		signIn(p, aliceUP, aliceUP+"-password")
		p.waitFor("signed in", `!!document.querySelector('.whoami')`)
		p.do("reload", chromedp.Reload())
		p.waitFor("still signed in", `!!document.querySelector('.whoami') && document.querySelector('.whoami').textContent.includes('alice')`)
		p.checkClean()
	}

	p := b.newPage("victim's inbox", 1200, 800)
	p.do("open the inbox", chromedp.Navigate(n.URL+"/ui/inbox/"))
	signIn(p, aliceUP, aliceUP+"-password")
	p.waitFor("signed in", `document.querySelector('#feed')?.dataset.loaded === 'true'`)
	p.do("visit the other service", chromedp.Navigate(elsewhere.URL+"/?plant=herald_session"))
	p.expect("/v1.0/me/notifications")
	p.do("open the inbox again", chromedp.Navigate(n.URL+"/ui/inbox/"))
	p.waitFor("the reason shown", `document.body.textContent.includes('two Herald cookies')`)
	if eval[bool](p, "the feed", `document.body.textContent.includes("Mallory's bait")`) {
		t.Error("the inbox shows the planter's notification")
	}
	p.checkClean()
}

// A refresh cookie planted beside Herald's, at a longer path (its refresh
// endpoint's) or a shorter one ("/"), makes the refresh, or GET
// /ui/session that asks whether to refresh, refused with a 403 that says
// what is wrong. The pages took the refusal for an ended session, and
// the server called the cookies not refreshable: every hour, when the
// access cookie expired, the signed-in user was shown the sign-in form
// without a word, and signing in again lasted another hour. They show the
// server's words instead, as they do for a planted access cookie.
func TestPagesSayWhyARefreshWithAPlantedCookieIsRefused(t *testing.T) {
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	for _, u := range []string{aliceUP, "mallory"} {
		api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": u, "password": u + "-password", "roles": []string{"admin"}}, nil)
	}
	res, err := http.Post(n.URL+"/ui/session", "application/json", strings.NewReader(`{"username":"mallory","password":"mallory-password"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var mallory string
	for _, c := range res.Cookies() {
		if c.Name == "herald_refresh" {
			mallory = c.Value
		}
	}
	if mallory == "" {
		t.Fatalf("sign-in set no refresh cookie: %v", res.Header.Values("Set-Cookie"))
	}
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "herald_refresh", Value: mallory, Path: r.URL.Query().Get("path"), MaxAge: 3600})
		io.WriteString(w, "another service on the same host")
	}))
	t.Cleanup(elsewhere.Close)

	for _, planted := range []string{"/ui/session/refresh", "/"} {
		for _, path := range []string{"/ui/inbox/", "/ui/"} {
			p := newBrowser(t).newPage("victim "+path+" "+planted, 1200, 800)
			p.do("open "+path, chromedp.Navigate(n.URL+path))
			signIn(p, aliceUP, aliceUP+"-password")
			p.waitFor("signed in", `!!document.querySelector('.whoami')`)
			p.do("visit the other service", chromedp.Navigate(elsewhere.URL+"/?path="+url.QueryEscape(planted)))
			// The access cookie expires.
			ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
			_, err := chromedp.Call(ctx, network.DeleteCookies, network.DeleteCookiesParams{Name: "herald_session", URL: n.URL + "/"})
			cancel()
			if err != nil {
				t.Fatalf("delete the access cookie: %v", err)
			}
			p.expect("/ui/session")
			p.do("open "+path+" again", chromedp.Navigate(n.URL+path))
			p.waitFor("the reason or the sign-in form", `document.body.textContent.includes('two Herald cookies') || !!document.querySelector('#signin-username')`)
			if eval[bool](p, "the form", `!!document.querySelector('#signin-username')`) {
				t.Errorf("%s with a refresh cookie planted at %s showed the sign-in form, not why its refresh was refused", path, planted)
			}
			p.checkClean()
		}
	}
}
