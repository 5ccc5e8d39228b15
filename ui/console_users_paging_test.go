package ui_test

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// The console's user list shows a page of users at a time and loads the
// next on demand, so that users past the first pages stay reachable on a
// large tenant (it fetched at most 5,000, 25 requests, before it showed
// any, and left out the rest).
func TestConsoleUserListPagesThroughEveryUser(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	const extra = 205 // with the admin, one page of 200 and a second of 6
	for i := 0; i < extra; i++ {
		api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": fmt.Sprintf("user%03d", i),
			"password": "a-password", "roles": []string{"user"}}, nil)
	}

	p := b.newPage("admin", 1280, 800)
	p.do("open the users", chromedp.Navigate(n.URL+"/ui/#/users"))
	signIn(p, "admin", testnode.AdminPassword)
	p.waitFor("see the first page", `document.querySelectorAll('tr[data-upn]').length === 200 && !document.getElementById('users-more').hidden`)
	p.do("load more", chromedp.Click(chromedp.CSS(`#users-more`)))
	p.waitFor("see every user", fmt.Sprintf(`document.querySelectorAll('tr[data-upn]').length === %d && document.getElementById('users-more').hidden`, extra+1))
	p.waitFor("see the last one", `document.querySelector('tr[data-upn="user204"]') !== null`)
}
