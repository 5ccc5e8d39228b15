package ui_test

// What an admin new to the console and a keyboard or screen-reader user of
// the inbox tripped over: times without a zone, a one-click Disable,
// dialogs without a name that dropped the focus, filters that threw the
// focus to the heading, a delete prompt only sighted users saw, a "Show
// older" button that lost the focus, and a dialog left over a sign-in form.

import (
	"context"
	"regexp"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

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
