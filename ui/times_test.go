package ui_test

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// An inbox left open keeps its relative times current: a notification that
// arrived "just now" says how long ago it came once time has passed. The
// test moves the page's clock two hours on and shows the tab again (which
// refreshes at once, as the 30 s timer would later).
func TestInboxRelativeTimesStayCurrent(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": aliceUP, "password": alicePW, "roles": []string{"user"}}, nil)
	api.call("POST", "/v1.0/applications", admin, map[string]any{"displayName": "Contoso Tasks", "targetHostName": appHost}, nil)

	p := b.newPage("inbox", 1280, 800)
	p.do("open the inbox", chromedp.Navigate(n.URL+"/ui/inbox/?app="+appHost))
	signIn(p, aliceUP, alicePW)
	p.do("go live", chromedp.WaitVisible(chromedp.CSS(`#live-status[data-state="live"]`)))
	var out struct{ ID string }
	api.call("POST", "/v1.0/users/alice/notifications", admin, map[string]any{"targetHostName": appHost,
		"payload": map[string]any{"visualContent": map[string]any{"title": "Standup moved"}}}, &out)
	timeOf := `document.querySelector(` + js(`.notif[data-id="`+out.ID+`"] time`) + `)`
	p.waitFor("receive it just now", timeOf+` !== null && `+timeOf+`.textContent === 'just now'`)

	eval[bool](p, "move the clock two hours on", `(() => {
		const real = Date.now.bind(Date);
		Date.now = () => real() + 2 * 3600 * 1000;
		document.dispatchEvent(new Event('visibilitychange'));
		return true;
	})()`)
	p.waitFor("say two hours ago", timeOf+`.textContent.includes('2') && `+timeOf+`.textContent.includes('hour')`)
	p.checkClean()
}
