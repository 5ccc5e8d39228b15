package ui_test

// The screenshots in docs/screenshots/ come from this test. It runs only
// when asked, since it rewrites files in the repository:
//
//	HERALD_SCREENSHOTS=1 go test ./ui/ -run TestScreenshots

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// rest is a small API client for seeding data.
type rest struct {
	t    *testing.T
	base string
}

func (r rest) call(method, path, token string, body any, out any) {
	r.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, r.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e bytes.Buffer
		e.ReadFrom(resp.Body)
		r.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, e.String())
	}
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
}

func (r rest) token(user, password string) string {
	r.t.Helper()
	resp, err := http.PostForm(r.base+"/oauth2/v2.0/token", url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}})
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	if tok.AccessToken == "" {
		r.t.Fatalf("no token for %s: %d", user, resp.StatusCode)
	}
	return tok.AccessToken
}

type shooter struct {
	dir  string
	kind string // desktop or phone
}

func (s shooter) shot(p *page, name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	// Settle fonts and layout before the picture.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.fonts.ready.then(() => true)`, chromedp.EvalAwaitPromise)); err != nil {
		p.fail("wait for fonts", err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.fail("screenshot "+name, err)
	}
	file := filepath.Join(s.dir, fmt.Sprintf("%s-%s.png", name, s.kind))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("wrote %s", file)
}

func TestScreenshots(t *testing.T) {
	if os.Getenv("HERALD_SCREENSHOTS") == "" {
		t.Skip("set HERALD_SCREENSHOTS=1 to rewrite docs/screenshots/")
	}
	dir := filepath.Join("..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	// A webhook receiver that is down, so the delivery log has an error
	// to show; private addresses are allowed for it.
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	cfg := testnode.Config(t, t.TempDir())
	cfg.Webhook.AllowPrivate = true
	n := testnode.Start(t, &cfg)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)

	var alice, bob struct{ ID string }
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": "alice", "displayName": "Alice Example", "password": alicePW, "roles": []string{"user"}}, &alice)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": "bob", "displayName": "Bob Builder", "password": "bob-password", "roles": []string{"user"}}, &bob)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": "carol", "displayName": "Carol Ops", "password": "carol-password", "roles": []string{"admin"}}, nil)
	var dave struct{ ID string }
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": "dave", "displayName": "Dave (left)", "password": "dave-password", "roles": []string{"user"}}, &dave)
	api.call("PATCH", "/v1.0/users/dave", admin, map[string]any{"accountEnabled": false}, nil)
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Contoso Tasks", "targetHostName": appHost}, nil)
	var builds struct{ ID string }
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Fabrikam Builds", "targetHostName": "builds.fabrikam.com"}, &builds)
	api.call("POST", "/v1.0/applications/"+builds.ID+"/addPassword", admin, map[string]any{"displayName": "staging"}, nil)

	aliceTok := api.token("alice", alicePW)
	api.call("POST", "/v1.0/me/notificationSubscriptions", aliceTok, map[string]any{"targetHostName": "builds.fabrikam.com", "platformType": "android",
		"deviceName": "Alice's Pixel", "channel": map[string]any{"type": "fcm", "token": "fcm-device-token-0123456789"}}, nil)
	api.call("POST", "/v1.0/me/notificationSubscriptions", aliceTok, map[string]any{"targetHostName": appHost, "platformType": "windows",
		"deviceName": "Build server hook", "channel": map[string]any{"type": "webhook", "url": down.URL + "/herald"}}, nil)

	send := func(host, title, body string) string {
		var out struct{ ID string }
		api.call("POST", "/v1.0/users/alice/notifications", admin, map[string]any{"targetHostName": host,
			"payload": map[string]any{"visualContent": map[string]any{"title": title, "body": body}}}, &out)
		return out.ID
	}

	for _, kind := range []struct {
		name          string
		width, height int64
	}{{"desktop", 1280, 800}, {"phone", 390, 844}} {
		s := shooter{dir: dir, kind: kind.name}
		phone := kind.name == "phone"

		// The inbox first, so that its live subscription exists for the
		// console's views.
		inbox := b.newPage("inbox-"+kind.name, kind.width, kind.height)
		inbox.do("open the inbox", chromedp.Navigate(n.URL+"/ui/inbox/?app="+appHost))
		signIn(inbox, "alice", alicePW)
		inbox.do("go live", chromedp.WaitVisible(chromedp.CSS(`#live-status[data-state="live"]`)))
		if !phone {
			send(appHost, "Quarterly report due Friday", "The finance team needs your numbers by 17:00.")
			send(appHost, "Maria assigned you “Update onboarding docs”", "Due next Tuesday · Team Handbook")
			send(appHost, "Design review moved to 3 pm", "Room 4.12, or join online.")
			send(appHost, "Your export is ready", "contacts-2026-11.csv (2.4 MB) can be downloaded for 7 days.")
		}
		inbox.waitFor("see the feed", `document.querySelectorAll('#feed .notif').length >= 4`)
		eval[bool](inbox, "read one", `([...document.querySelectorAll('#feed .notif.is-unread [data-role="read"]')].pop().click(), true)`)
		inbox.waitFor("see it read", `document.querySelectorAll('#feed .notif.is-read').length >= 1`)
		s.shot(inbox, "inbox")

		empty := b.newPage("empty-"+kind.name, kind.width, kind.height)
		empty.do("open an empty inbox", chromedp.Navigate(n.URL+"/ui/inbox/?app="+appHost))
		signIn(empty, "bob", "bob-password")
		empty.do("see the empty state", chromedp.WaitVisible(chromedp.CSS("#empty")), chromedp.WaitVisible(chromedp.CSS(`#live-status[data-state="live"]`)))
		s.shot(empty, "inbox-empty")

		con := b.newPage("console-"+kind.name, kind.width, kind.height)
		con.do("open the console", chromedp.Navigate(n.URL+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#signin-username")))
		s.shot(con, "signin")
		signIn(con, "admin", testnode.AdminPassword)
		con.do("see the dashboard", chromedp.WaitVisible(chromedp.CSS("#rate-1m")))
		// Some traffic for the charts: a burst, a pause, a smaller burst.
		for _, burst := range []int{12, 0, 5, 9, 0, 3} {
			for i := range burst {
				send("builds.fabrikam.com", fmt.Sprintf("Build %d passed", 100+i), "main · 3m 12s")
			}
			// Wait for the dashboard's next sample of /metrics.
			seen := eval[string](con, "count samples", `document.querySelector('.dashboard').dataset.samples`)
			con.waitFor("take a sample", fmt.Sprintf(`document.querySelector('.dashboard').dataset.samples !== %s`, js(seen)))
		}
		con.waitFor("draw the rate", `document.querySelector('.chart-line').getAttribute('d').length > 20`)
		con.waitFor("draw the cluster", `document.querySelector('[data-node-id]') !== null`)
		s.shot(con, "dashboard")

		con.do("users", chromedp.Navigate(n.URL+"/ui/#/users"), chromedp.WaitVisible(chromedp.CSS(`tr[data-upn="dave"]`)))
		s.shot(con, "users")
		con.do("a user", chromedp.Navigate(n.URL+"/ui/#/users/alice"), chromedp.WaitVisible(chromedp.CSS("table.data")))
		s.shot(con, "user")

		host := strings.ToLower(fmt.Sprintf("notes-%s.contoso.com", kind.name))
		con.do("register an application",
			chromedp.Navigate(n.URL+"/ui/#/apps"),
			chromedp.WaitVisible(chromedp.CSS("#new-app-name")),
			chromedp.SendKeys(chromedp.CSS("#new-app-name"), "Contoso Notes"),
			chromedp.SendKeys(chromedp.CSS("#new-app-host"), host),
			chromedp.Click(chromedp.CSS("#new-app-submit")),
			chromedp.WaitVisible(chromedp.CSS("#secret-once")))
		eval[bool](con, "scroll up", `(window.scrollTo(0, 0), true)`)
		s.shot(con, "applications")

		con.do("compose",
			chromedp.Navigate(n.URL+"/ui/#/compose?user="+url.QueryEscape(alice.ID)+"&app="+appHost),
			chromedp.WaitVisible(chromedp.CSS("#compose-title")),
			chromedp.SendKeys(chromedp.CSS("#compose-title"), "Your order has shipped"),
			chromedp.SendKeys(chromedp.CSS("#compose-body"), "Parcel 1Z999 arrives Thursday between 9 and 12."))
		if phone {
			eval[bool](con, "show the preview", `(document.querySelector('.preview').scrollIntoView(), true)`)
		}
		s.shot(con, "composer")

		con.do("feed", chromedp.Navigate(n.URL+"/ui/#/feed?user="+url.QueryEscape(alice.ID)+"&targetHostName="+appHost),
			chromedp.WaitVisible(chromedp.CSS("table.data")))
		s.shot(con, "feed")

		last := eval[string](con, "pick a notification", `document.querySelector('tr[data-id]').dataset.id`)
		con.do("delivery log", chromedp.Navigate(n.URL+"/ui/#/deliveries?user="+url.QueryEscape(alice.ID)+"&n="+url.QueryEscape(last)),
			chromedp.WaitVisible(chromedp.CSS("tr[data-state]")))
		s.shot(con, "delivery-log")
		for _, p := range []*page{inbox, empty, con} {
			p.checkClean()
		}
	}
}
