package ui_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/herald-notify/herald/internal/testnode"
)

// statusOf answers the status of an authenticated request without a body.
func statusOf(t *testing.T, method, url, token string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// An admin offboards from the console: changes a user's role, deletes a
// user and an application, each asked first; the console cannot delete
// the admin who uses it, and says why.
func TestConsoleChangesRolesAndDeletes(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	for _, u := range []string{"bob", "carol"} {
		api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": u, "password": u + "-password", "roles": []string{"user"}}, nil)
	}
	var app struct{ ID string }
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Contoso Tasks", "targetHostName": appHost}, &app)
	carol := api.token("carol", "carol-password")
	var sub struct{ ID string }
	api.call("POST", "/v1.0/me/notificationSubscriptions", carol, map[string]any{"targetHostName": appHost, "platformType": "web",
		"deviceName": "carol's laptop", "channel": map[string]any{"type": "live"}}, &sub)
	roles := func(upn string) []string {
		var u struct{ Roles []string }
		api.call("GET", "/v1.0/users/"+upn, admin, nil, &u)
		return u.Roles
	}

	p := b.newPage("admin", 1280, 800)
	p.do("open the users", chromedp.Navigate(n.URL+"/ui/#/users"))
	signIn(p, "admin", testnode.AdminPassword)

	p.do("change carol's role",
		chromedp.WaitVisible(chromedp.CSS(`tr[data-upn="carol"] [aria-label="Change the role of carol"]`)),
		chromedp.Click(chromedp.CSS(`tr[data-upn="carol"] [aria-label="Change the role of carol"]`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open] select[name="role"]`)),
		chromedp.SetValue(chromedp.CSS(`dialog[open] select[name="role"]`), "admin"),
		chromedp.Click(chromedp.CSS(`dialog[open] button[type="submit"]`)),
	)
	p.waitFor("see carol an admin", `document.querySelector('dialog') === null && document.querySelector('tr[data-upn="carol"]').innerText.includes('admin')`)
	if r := roles("carol"); !slices.Contains(r, "admin") {
		t.Errorf("carol's roles after the change: %v", r)
	}

	del := `tr[data-upn="bob"] [aria-label="Delete bob"]`
	p.do("press Delete", chromedp.Click(chromedp.CSS(del)))
	p.waitFor("see the question", `(() => {
		const d = document.querySelector('dialog[open]');
		const l = d && document.getElementById(d.getAttribute('aria-labelledby'));
		return Boolean(l && l.textContent.includes('Delete bob?'));
	})()`)
	p.do("cancel", chromedp.KeyEvent(kb.Escape))
	p.waitFor("be back on Delete", `document.querySelector('dialog') === null && document.activeElement === document.querySelector(`+js(del)+`)`)
	if got := statusOf(t, "GET", n.URL+"/v1.0/users/bob", admin); got != http.StatusOK {
		t.Fatalf("bob after a cancelled delete: %d", got)
	}
	p.do("delete bob",
		chromedp.Click(chromedp.CSS(del)),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open] button[type="submit"]`)),
		chromedp.Click(chromedp.CSS(`dialog[open] button[type="submit"]`)),
	)
	p.waitFor("see bob gone", `document.querySelector('dialog') === null && document.querySelector('tr[data-upn="bob"]') === null && document.querySelector('tr[data-upn="carol"]') !== null`)
	if got := statusOf(t, "GET", n.URL+"/v1.0/users/bob", admin); got != http.StatusNotFound {
		t.Errorf("bob after the delete: %d, want 404", got)
	}

	p.expect("403") // the refusal below is the server's answer, shown in the dialog
	p.do("try to delete the signed-in admin",
		chromedp.Click(chromedp.CSS(`tr[data-upn="admin"] [aria-label="Delete admin"]`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open] button[type="submit"]`)),
		chromedp.Click(chromedp.CSS(`dialog[open] button[type="submit"]`)),
	)
	p.waitFor("see why not", `(() => {
		const d = document.querySelector('dialog[open]');
		return Boolean(d && d.innerText.includes('cannot delete themselves'));
	})()`)
	p.do("close it", chromedp.KeyEvent(kb.Escape))
	p.waitFor("the dialog closed", `document.querySelector('dialog') === null`)
	if got := statusOf(t, "GET", n.URL+"/v1.0/me", admin); got != http.StatusOK {
		t.Fatalf("the admin after the refused delete: %d", got)
	}

	card := `article[data-host="` + appHost + `"]`
	p.do("delete the application",
		chromedp.Navigate(n.URL+"/ui/#/apps"),
		chromedp.WaitVisible(chromedp.CSS(card+` [aria-label="Delete the application Contoso Tasks"]`)),
		chromedp.Click(chromedp.CSS(card+` [aria-label="Delete the application Contoso Tasks"]`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open] button[type="submit"]`)),
		chromedp.Click(chromedp.CSS(`dialog[open] button[type="submit"]`)),
	)
	p.waitFor("see the application gone", `document.querySelector('dialog') === null && document.querySelector(`+js(card)+`) === null`)
	if got := statusOf(t, "GET", n.URL+"/v1.0/applications/"+app.ID, admin); got != http.StatusNotFound {
		t.Errorf("the application after the delete: %d, want 404", got)
	}
	if got := statusOf(t, "GET", n.URL+"/v1.0/me/notificationSubscriptions/"+sub.ID, carol); got != http.StatusNotFound {
		t.Errorf("carol's subscription for the deleted application: %d, want 404", got)
	}
	p.checkClean()
}
