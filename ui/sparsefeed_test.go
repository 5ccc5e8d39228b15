package ui_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// A page of a filtered feed reads at most 2,000 notifications, so one
// whose matches lie further back comes back empty with a nextLink. The
// inbox of an application and the console's feed explorer filtered by it
// go on past such pages rather than say there is nothing.
func TestPagesPassEmptyPagesOfAFilteredFeed(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	cfg.Limits.AppRate, cfg.Limits.UserRate = 0, 0
	n := testnode.Start(t, &cfg)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": aliceUP, "password": alicePW, "roles": []string{"user"}}, nil)
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Contoso Tasks", "targetHostName": appHost}, nil)
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Chatter", "targetHostName": "chatter.contoso.com"}, nil)
	send := func(host, title string) error {
		b, _ := json.Marshal(map[string]any{"targetHostName": host,
			"payload": map[string]any{"visualContent": map[string]any{"title": title}}})
		req, _ := http.NewRequest("POST", n.URL+"/v1.0/users/alice/notifications", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("send %q: %d", title, resp.StatusCode)
		}
		return nil
	}
	if err := send(appHost, "The one from Tasks"); err != nil {
		t.Fatal(err)
	}
	const others = 2100
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1); i <= others; i = next.Add(1) {
				if err := send("chatter.contoso.com", fmt.Sprintf("Chatter %d", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	b := newBrowser(t)
	inbox := b.newPage("inbox", 1280, 800)
	inbox.do("open the inbox of Tasks", chromedp.Navigate(n.URL+"/ui/inbox/?app="+appHost))
	signIn(inbox, aliceUP, alicePW)
	inbox.waitFor("show the one from Tasks", `document.querySelectorAll('#feed .notif').length === 1 && document.querySelector('#empty').hidden`)
	inbox.checkClean()

	con := b.newPage("console", 1280, 800)
	con.do("open the feed explorer on Tasks", chromedp.Navigate(n.URL+"/ui/#/feed?user=alice&targetHostName="+appHost))
	signIn(con, "admin", testnode.AdminPassword)
	con.waitFor("list the one from Tasks", `document.querySelectorAll('tr[data-id]').length === 1`)
	con.checkClean()
}
