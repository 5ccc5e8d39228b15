package ui_test

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/raft"
)

// A page of the audit log reads a bounded stretch of records, so a
// filter's first pages may come back empty with a nextLink: the console
// passes them and shows the match rather than "No records match."
func TestAuditPagePassesEmptyPagesToAMatch(t *testing.T) {
	old := raft.AuditScanBound
	raft.AuditScanBound = 2
	t.Cleanup(func() { raft.AuditScanBound = old }) // after the node's cleanup stops it
	b := newBrowser(t)
	n := testnode.Start(t, nil)
	api := rest{t: t, base: n.URL}
	admin := api.token("admin", testnode.AdminPassword)
	api.call("POST", "/v1.0/users", admin, map[string]any{"userPrincipalName": "gina", "password": "gina-password"}, nil)
	for i := 0; i < 5; i++ { // signIn records, newer than gina's creation
		api.token("admin", testnode.AdminPassword)
	}

	p := b.newPage("admin", 1280, 800)
	p.do("open the audit log filtered", chromedp.Navigate(n.URL+"/ui/#/audit?action=user.create"))
	signIn(p, "admin", testnode.AdminPassword)
	p.waitFor("see gina's creation", `(() => {
		const r = document.querySelectorAll('tr[data-action]');
		return r.length >= 1 && [...r].every((e) => e.dataset.action === 'user.create') && document.body.textContent.includes('gina');
	})()`)
}
