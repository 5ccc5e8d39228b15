package ui_test

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// An inbox left open keeps its relative times current: a notification that
// arrived "just now" says how long ago it came once time has passed. The
// test moves the page's clock two hours on and shows the tab again (which
// refreshes at once, as the 30 s timer would later).
func TestInboxRelativeTimesStayCurrent(t *testing.T) {
	b := newBrowser(t)
	n, send := aliceInbox(t)

	p := b.newPage("inbox", 1280, 800)
	p.do("open the inbox", chromedp.Navigate(n.URL+"/ui/inbox/?app="+appHost))
	signIn(p, aliceUP, alicePW)
	p.do("go live", chromedp.WaitVisible(chromedp.CSS(`#live-status[data-state="live"]`)))
	id := send("Standup moved")
	timeOf := `document.querySelector(` + js(`.notif[data-id="`+id+`"] time`) + `)`
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
