package ui_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testcerts"
	"github.com/herald-notify/herald/internal/testnode"
)

// Every UI response carries the headers that keep the pages from being
// framed, sniffed or given powers they never use, and over HTTPS the UI
// works in a real browser: sign-in (a Secure session cookie), the console's
// calls, and the inbox's live stream over HTTP/2.
func TestUIOverHTTPS(t *testing.T) {
	ca := testcerts.NewCA(t, "public")
	srv := ca.Server(t, "srv", "127.0.0.1")
	cfg := testnode.Config(t, t.TempDir())
	cfg.TLSCert, cfg.TLSKey = srv.Cert, srv.Key
	n := testnode.Start(t, &cfg)

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}}
	want := map[string]string{
		"Strict-Transport-Security": "max-age=31536000",
		"X-Content-Type-Options":    "nosniff",
		"X-Frame-Options":           "DENY",
		"Referrer-Policy":           "no-referrer",
	}
	for _, path := range []string{"/ui/", "/ui/inbox/", "/ui/js/inbox.js", "/ui/style.css", "/ui/no-such-file", "/ui/session"} {
		resp, err := c.Get(n.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		for h, v := range want {
			if got := resp.Header.Get(h); got != v {
				t.Errorf("GET %s (%d): %s %q, want %q", path, resp.StatusCode, h, got, v)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		if pp := resp.Header.Get("Permissions-Policy"); !strings.Contains(pp, "camera=()") {
			t.Errorf("GET %s: Permissions-Policy %q", path, pp)
		}
		if path == "/ui/" && resp.ProtoMajor != 2 {
			t.Errorf("GET %s over HTTPS used %s, want HTTP/2", path, resp.Proto)
		}
	}

	// The test CA is not the browser's; trusting any certificate is the
	// browser's only concession, the pages' own checks all run.
	b := newBrowser(t, chromedp.Flag("ignore-certificate-errors", true))
	admin := b.newPage("admin", 1280, 800)
	admin.do("open the console", chromedp.Navigate(n.URL+"/"))
	signIn(admin, "admin", testnode.AdminPassword)
	admin.do("see the dashboard", chromedp.WaitVisible(chromedp.CSS("#rate-1m")))
	if proto := eval[string](admin, "read the protocol", `performance.getEntriesByType('navigation')[0].nextHopProtocol`); proto != "h2" {
		t.Errorf("the console loaded over %q, want h2", proto)
	}
	res, err := chromedp.Call(admin.ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	cookies := res.Cookies
	if len(cookies) == 0 {
		t.Error("no session cookie after signing in")
	}
	for _, ck := range cookies {
		if !ck.Secure || !ck.HTTPOnly {
			t.Errorf("cookie %s: Secure %v, HttpOnly %v", ck.Name, ck.Secure, ck.HTTPOnly)
		}
	}
	admin.mu.Lock()
	for _, l := range admin.logs {
		if strings.Contains(l, "Permissions-Policy") {
			t.Errorf("the browser objects to the Permissions-Policy: %s", l)
		}
	}
	admin.mu.Unlock()
	admin.checkClean()

	// The inbox connects to a registered application (an unknown host would
	// be refused, which the page reports as an error).
	tok, err := c.PostForm(n.URL+"/oauth2/v2.0/token", url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}})
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(tok.Body).Decode(&tr)
	tok.Body.Close()
	req, _ := http.NewRequest("POST", n.URL+"/v1.0/applications", strings.NewReader(`{"displayName":"Contoso Tasks","targetHostName":"`+appHost+`"}`))
	req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	created, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	created.Body.Close()
	if created.StatusCode != http.StatusCreated {
		t.Fatalf("register the application: %d", created.StatusCode)
	}

	inbox := b.newPage("inbox", 1280, 800)
	inbox.do("open the inbox", chromedp.Navigate(n.URL+"/ui/inbox/?app="+appHost))
	signIn(inbox, "admin", testnode.AdminPassword)
	inbox.do("go live", chromedp.WaitVisible(chromedp.CSS(`#live-status[data-state="live"]`)))
	inbox.waitFor("load the feed", `document.querySelector('#feed').dataset.loaded === 'true'`)
	// In a secure context the inbox offers Web Push: the SDK fetched the
	// server's VAPID key and the service worker registered.
	inbox.waitFor("the desktop notifications offer", `document.querySelector('#push-enable') !== null`)
	inbox.checkClean()
}
