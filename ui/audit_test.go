package ui_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// The console's audit page shows the records: an admin's action with who
// did it and to what, and failed sign-ins counted, and filters by action.
// On a user's page the admin ends one of the user's sessions, whose token
// then fails, and the revocation shows in the log; the user ends another of
// their sessions from the inbox.
func TestAuditPageShowsRecords(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": "gina", "password": "gina-password"}, nil)
	res, err := http.PostForm(n.URL+"/oauth2/v2.0/token", url.Values{"grant_type": {"password"}, "username": {"mallory"}, "password": {"not-the-password"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	// Failed sign-ins reach the log within a second or so (audit.go).
	deadline := time.Now().Add(10 * time.Second)
	for {
		var log struct{ Value []any }
		api.call("GET", "/v1.0/admin/auditLog?action=signInFailure", admin, nil, &log)
		if len(log.Value) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed sign-in is not in the audit log")
		}
		time.Sleep(50 * time.Millisecond)
	}

	p := b.newPage("admin", 1280, 800)
	p.do("open the audit log", chromedp.Navigate(n.URL+"/ui/#/audit"))
	signIn(p, "admin", testnode.AdminPassword)
	p.do("see gina's creation", chromedp.WaitVisible(chromedp.CSS(`tr[data-action="user.create"]`)))
	row := eval[string](p, "read the row", `document.querySelector('tr[data-action="user.create"]').textContent`)
	for _, want := range []string{"admin", "gina", "127.0.0.1", "success"} {
		if !strings.Contains(row, want) {
			t.Errorf("the user.create row reads %q; it lacks %q", row, want)
		}
	}
	p.do("filter failed sign-ins",
		chromedp.SetValue(chromedp.CSS(`#audit-action`), "signInFailure"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#audit-action').dispatchEvent(new Event('change'))`),
	)
	p.waitFor("only failed sign-ins", `document.querySelectorAll('tr[data-action]').length === 1 && document.querySelector('tr[data-action="signInFailure"]') !== null`)
	row = eval[string](p, "read the failure", `document.querySelector('tr[data-action="signInFailure"]').textContent`)
	for _, want := range []string{"mallory", "1 failed sign-in", "failure"} {
		if !strings.Contains(row, want) {
			t.Errorf("the signInFailure row reads %q; it lacks %q", row, want)
		}
	}
	if strings.Contains(row, "not-the-password") {
		t.Error("the audit page shows a password that was tried")
	}

	gina := api.token("gina", "gina-password")
	p.do("end gina's session",
		chromedp.Navigate(n.URL+"/ui/#/users/gina"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-session] button`)),
		chromedp.Click(chromedp.CSS(`tr[data-session] button`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog button[type="submit"]`)),
		chromedp.Click(chromedp.CSS(`dialog button[type="submit"]`)),
	)
	p.waitFor("see no session", `document.querySelector('tr[data-session]') === null && document.querySelector('dialog') === null`)
	req, _ := http.NewRequest(http.MethodGet, n.URL+"/v1.0/me", nil)
	req.Header.Set("Authorization", "Bearer "+gina)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("gina's token after the admin ended her session: %s, want 401", res.Status)
	}
	p.do("see the revocation in the log",
		chromedp.Navigate(n.URL+"/ui/#/audit?action=session.revoke"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-action="session.revoke"]`)),
	)
	if row := eval[string](p, "read the revocation", `document.querySelector('tr[data-action="session.revoke"]').textContent`); !strings.Contains(row, "gina") {
		t.Errorf("the session.revoke row reads %q; it does not name gina", row)
	}
	p.checkClean()

	// Gina, signed in in her inbox and elsewhere, signs the other session
	// out from the inbox; its token stops working.
	elsewhere := api.token("gina", "gina-password")
	inbox := b.newPage("gina", 1280, 800)
	inbox.do("open the inbox", chromedp.Navigate(n.URL+"/ui/inbox/"))
	signIn(inbox, "gina", "gina-password")
	inbox.do("list the sessions",
		chromedp.Click(chromedp.CSS(`#sessions-open`)),
		chromedp.WaitVisible(chromedp.CSS(`#sessions li[data-current="false"] button`)),
	)
	if got := eval[int](inbox, "count the sessions", `document.querySelectorAll('#sessions li[data-session]').length`); got != 2 {
		t.Errorf("gina's inbox lists %d sessions, want 2 (this browser and the other)", got)
	}
	inbox.do("sign the other out", chromedp.Click(chromedp.CSS(`#sessions li[data-current="false"] button`)))
	inbox.waitFor("see one session left", `document.querySelectorAll('#sessions li[data-session]').length === 1 && document.querySelector('#sessions li[data-current="true"]') !== null`)
	req.Header.Set("Authorization", "Bearer "+elsewhere)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("the token of the session signed out from the inbox: %s, want 401", res.Status)
	}
	inbox.checkClean()
}
