package ui_test

// What an admin new to the console and a keyboard or screen-reader user of
// the inbox tripped over: times without a zone, a one-click Disable,
// dialogs without a name that dropped the focus, filters that threw the
// focus to the heading, a delete prompt only sighted users saw, a "Show
// older" button that lost the focus, and a dialog left over a sign-in form.

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/herald-notify/herald/internal/testnode"
)

// inZone makes the page's clock read in zone, before it loads anything.
func inZone(p *page, zone string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: zone}); err != nil {
		p.t.Fatalf("set the time zone: %v", err)
	}
}

// Exact times name their zone, and the audit log shows the exact time on
// the page, not only in a tooltip.
func TestTimesNameTheirZone(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": "gina", "password": "gina-password"}, nil)

	p := b.newPage("admin", 1280, 800)
	inZone(p, "Asia/Kolkata")
	p.do("open the audit log", chromedp.Navigate(n.URL+"/ui/#/audit"))
	signIn(p, "admin", testnode.AdminPassword)
	p.do("see gina's creation", chromedp.WaitVisible(chromedp.CSS(`tr[data-action="user.create"]`)))
	zone := regexp.MustCompile(`GMT\+5:30|IST`)
	row := eval[string](p, "read the row", `document.querySelector('tr[data-action="user.create"] td').innerText`)
	if !zone.MatchString(row) {
		t.Errorf("the audit log's When cell reads %q; want the exact time with its zone (GMT+5:30) on the page", row)
	}
	p.do("open the users", chromedp.Navigate(n.URL+"/ui/#/users"), chromedp.WaitVisible(chromedp.CSS(`tr[data-upn="gina"] time`)))
	if title := eval[string](p, "read the creation time", `document.querySelector('tr[data-upn="gina"] time').title`); !zone.MatchString(title) {
		t.Errorf("a user's creation time reads %q on hover; want its zone (GMT+5:30)", title)
	}
	p.checkClean()
}

// Disabling a user signs them out everywhere: the console asks first, in
// a dialog named by its question, and gives the focus back where the
// admin was, whether they cancel or confirm.
func TestDisablingAUserAsksFirst(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": "bob", "password": "bob-password", "roles": []string{"user"}}, nil)
	enabled := func() bool {
		var u struct{ AccountEnabled bool }
		api.call("GET", "/v1.0/users/bob", admin, nil, &u)
		return u.AccountEnabled
	}

	p := b.newPage("admin", 1280, 800)
	p.do("open the users", chromedp.Navigate(n.URL+"/ui/#/users"))
	signIn(p, "admin", testnode.AdminPassword)
	disable := `tr[data-upn="bob"] [aria-label="Disable bob"]`
	p.do("press Disable",
		chromedp.WaitVisible(chromedp.CSS(disable)),
		chromedp.Focus(chromedp.CSS(disable)),
		chromedp.KeyEvent("\r"),
	)
	p.waitFor("see a question", `document.querySelector('dialog[open]') !== null`)
	name := eval[string](p, "read the dialog's name", `(() => {
		const d = document.querySelector('dialog[open]');
		const id = d.getAttribute('aria-labelledby');
		return id && document.getElementById(id) ? document.getElementById(id).textContent : '';
	})()`)
	if !strings.Contains(name, "Disable bob") {
		t.Errorf("the dialog is named %q; want the question it asks", name)
	}
	if !enabled() {
		t.Fatal("bob was disabled before the admin confirmed")
	}
	p.do("cancel", chromedp.KeyEvent(kb.Escape))
	p.waitFor("be back on Disable", `document.querySelector('dialog') === null && document.activeElement === document.querySelector(`+js(disable)+`)`)
	if !enabled() {
		t.Fatal("bob was disabled after the admin cancelled")
	}

	p.do("press Disable again", chromedp.KeyEvent("\r"))
	p.do("confirm", chromedp.WaitVisible(chromedp.CSS(`dialog[open] button[type="submit"]`)), chromedp.Click(chromedp.CSS(`dialog[open] button[type="submit"]`)))
	p.waitFor("see bob disabled", `document.querySelector('dialog') === null && document.querySelector('tr[data-upn="bob"] .pill-bad') !== null`)
	if enabled() {
		t.Error("bob is still enabled after the admin confirmed")
	}
	p.waitFor("have the focus on Enable", `document.activeElement === document.querySelector('tr[data-upn="bob"] [aria-label="Enable bob"]')`)

	p.do("reset bob's password", chromedp.Click(chromedp.CSS(`[aria-label="Reset the password of bob"]`)))
	p.waitFor("see the reset dialog named", `(() => {
		const d = document.querySelector('dialog[open]');
		const l = d && document.getElementById(d.getAttribute('aria-labelledby'));
		return Boolean(l && l.textContent.includes('Reset the password of bob'));
	})()`)
	p.do("cancel it", chromedp.KeyEvent(kb.Escape))
	p.waitFor("be back on Reset password", `document.activeElement === document.querySelector('[aria-label="Reset the password of bob"]')`)
	p.checkClean()
}

// Changing a filter with the keyboard (an arrow key on a select changes it
// at once) keeps the focus on the filter, on the audit log and in the feed
// explorer, so the admin can go on to the next value.
func TestFiltersKeepTheKeyboardFocus(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": aliceUP, "password": alicePW}, nil)

	p := b.newPage("admin", 1280, 800)
	p.do("open the audit log", chromedp.Navigate(n.URL+"/ui/#/audit"))
	signIn(p, "admin", testnode.AdminPassword)
	p.do("step through the actions",
		chromedp.WaitVisible(chromedp.CSS(`tr[data-action]`)),
		chromedp.Focus(chromedp.CSS(`#audit-action`)),
		chromedp.KeyEvent(kb.ArrowDown),
	)
	p.waitFor("filter by the first action", `location.hash.includes('action=signIn')`)
	p.waitFor("keep the focus on the action filter", `document.activeElement && document.activeElement.id === 'audit-action'`)
	p.do("go on to the next action", chromedp.KeyEvent(kb.ArrowDown))
	p.waitFor("filter by the next action", `location.hash.includes('action=signInFailure')`)
	p.waitFor("still on the action filter", `document.activeElement && document.activeElement.id === 'audit-action' && document.activeElement.value === 'signInFailure'`)

	p.do("open alice's feed", chromedp.Navigate(n.URL+"/ui/#/feed?user=alice"))
	p.do("step through read states",
		chromedp.WaitVisible(chromedp.CSS(`select[name="readState"]`)),
		chromedp.Focus(chromedp.CSS(`select[name="readState"]`)),
		chromedp.KeyEvent(kb.ArrowDown),
	)
	p.waitFor("filter unread", `location.hash.includes('readState=unread')`)
	p.waitFor("keep the focus on the read filter", `document.activeElement && document.activeElement.name === 'readState' && document.activeElement.value === 'unread'`)
	p.checkClean()
}

// The inbox's Delete takes a second press; a screen reader user is told
// so, by the button's name and by an announcement.
func TestInboxDeletePromptIsAnnounced(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": aliceUP, "password": alicePW}, nil)
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Contoso Tasks", "targetHostName": appHost}, nil)
	var sent struct{ ID string }
	api.call("POST", "/v1.0/users/alice/notifications", admin, map[string]any{"targetHostName": appHost,
		"payload": map[string]any{"visualContent": map[string]any{"title": "Budget review"}}}, &sent)

	p := b.newPage("inbox", 1280, 800)
	p.do("open the inbox", chromedp.Navigate(n.URL+"/ui/inbox/?app="+appHost))
	signIn(p, aliceUP, alicePW)
	del := `.notif[data-id="` + sent.ID + `"] [data-role="delete"]`
	p.do("press Delete once",
		chromedp.WaitVisible(chromedp.CSS(del)),
		chromedp.Focus(chromedp.CSS(del)),
		chromedp.KeyEvent("\r"),
	)
	p.waitFor("be asked to press again", `document.querySelector(`+js(del)+`).dataset.armed === 'true'`)
	if name := eval[string](p, "read the button's name", `document.querySelector(`+js(del)+`).getAttribute('aria-label')`); !strings.Contains(name, "again") {
		t.Errorf("after one press the Delete button is named %q; a screen reader user is not told to press again", name)
	}
	p.waitFor("hear the prompt", `[...document.querySelectorAll('[aria-live] .toast, [role="status"] .toast')].some((x) => x.textContent.includes('again'))`)
	p.do("press it again", chromedp.KeyEvent("\r"))
	p.waitFor("see it deleted", `document.querySelector('.notif[data-id="`+sent.ID+`"]') === null`)
	p.checkClean()
}

// "Show older notifications" moves the focus to the first older card: the
// button goes away on the last page and must not take the focus with it.
func TestInboxShowOlderMovesTheFocusToTheOlderCards(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": aliceUP, "password": alicePW}, nil)
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Contoso Tasks", "targetHostName": appHost}, nil)
	var ids []string
	for i := range 51 { // the inbox reads 50 at a time
		var sent struct{ ID string }
		api.call("POST", "/v1.0/users/alice/notifications", admin, map[string]any{"targetHostName": appHost,
			"payload": map[string]any{"visualContent": map[string]any{"title": fmt.Sprintf("Notification %d", i+1)}}}, &sent)
		ids = append(ids, sent.ID)
	}

	p := b.newPage("inbox", 1280, 800)
	p.do("open the inbox", chromedp.Navigate(n.URL+"/ui/inbox/?app="+appHost))
	signIn(p, aliceUP, alicePW)
	p.waitFor("load the first page", `document.querySelectorAll('#feed .notif').length === 50`)
	p.do("show older ones",
		chromedp.WaitVisible(chromedp.CSS(`#show-older`)),
		chromedp.Focus(chromedp.CSS(`#show-older`)),
		chromedp.KeyEvent("\r"),
	)
	p.waitFor("see all 51", `document.querySelectorAll('#feed .notif').length === 51`)
	p.waitFor("have the focus on the oldest", `document.activeElement && document.activeElement.dataset.id === `+js(ids[0]))
	p.checkClean()
}

// A session that ends while a dialog is open (expired, or revoked from
// another device) closes the dialog: the sign-in form is not left under a
// modal whose action can no longer be done.
func TestSessionEndClosesTheOpenDialog(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": "bob", "password": "bob-password"}, nil)

	p := b.newPage("admin", 1280, 800)
	p.do("open the users", chromedp.Navigate(n.URL+"/ui/#/users"))
	signIn(p, "admin", testnode.AdminPassword)
	p.do("open the reset dialog",
		chromedp.WaitVisible(chromedp.CSS(`[aria-label="Reset the password of bob"]`)),
		chromedp.Click(chromedp.CSS(`[aria-label="Reset the password of bob"]`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open] input[name="password"]`)),
	)
	// Every other session of the admin ends, the browser's included.
	var sessions struct {
		Value []struct {
			ID      string
			Current bool
		}
	}
	api.call("GET", "/v1.0/me/sessions", admin, nil, &sessions)
	for _, s := range sessions.Value {
		if !s.Current {
			api.call("DELETE", "/v1.0/me/sessions/"+s.ID, admin, nil, nil)
		}
	}
	p.expect("401")
	p.do("submit the reset",
		chromedp.SendKeys(chromedp.CSS(`dialog[open] input[name="password"]`), "bob-new-password"),
		chromedp.Click(chromedp.CSS(`dialog[open] button[type="submit"]`)),
	)
	p.waitFor("see the sign-in form", `document.querySelector('#signin-username') !== null`)
	p.waitFor("see no dialog over it", `document.querySelector('dialog[open]') === null`)
	p.checkClean()
}
