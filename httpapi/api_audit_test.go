package httpapi_test

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/node"
)

// auditRecords reads the audit log with a query, all pages.
func (n *hnode) auditRecords(t *testing.T, query string) []map[string]any {
	t.Helper()
	items, _, _ := n.collect(t, n.admin, "/v1.0/admin/auditLog?"+query)
	return items
}

// awaitCounts waits until the aggregated records of action are one per
// target of want, with want's counts, and returns them.
func (n *hnode) awaitCounts(t *testing.T, action string, want map[string]int) []map[string]any {
	t.Helper()
	var last []map[string]any
	eventually(t, 10*time.Second, action+" records in the audit log", func() bool {
		last = n.auditRecords(t, "action="+action)
		got := map[string]int{}
		for _, r := range last {
			got[str(r, "target")] += int(r["count"].(float64))
		}
		return len(last) == len(want) && maps.Equal(got, want)
	})
	return last
}

func actorOf(rec map[string]any) map[string]any {
	a, _ := rec["actor"].(map[string]any)
	return a
}

// Every admin action is recorded with who did it, to what, when, from
// where and whether it worked, and no record holds a password, token or
// client secret.
func TestAuditRecordsEveryAdminAction(t *testing.T) {
	n := start(t, nil)
	var me struct {
		ID string `json:"id"`
	}
	n.get(t, n.admin, "/v1.0/me").expect(t, http.StatusOK).into(t, &me)

	dave := n.newUser(t, "dave")
	n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": "dave", "password": "whatever-pass"}).expect(t, http.StatusConflict)
	n.patch(t, n.admin, "/v1.0/users/dave", map[string]any{"roles": []string{"admin"}, "password": "dave-new-password",
		"accountEnabled": false, "displayName": "Dave D"}).expect(t, http.StatusOK)
	n.patch(t, n.admin, "/v1.0/users/dave", map[string]any{"accountEnabled": true}).expect(t, http.StatusOK)
	a := n.newApp(t, "audit.example.com")
	var cred struct {
		KeyID      string `json:"keyId"`
		SecretText string `json:"secretText"`
	}
	n.post(t, n.admin, "/v1.0/applications/"+a.ID+"/addPassword", map[string]any{"displayName": "ci"}).expect(t, http.StatusOK).into(t, &cred)
	n.post(t, n.admin, "/v1.0/applications/"+a.ID+"/removePassword", map[string]any{"keyId": cred.KeyID}).expect(t, http.StatusNoContent)
	n.patch(t, n.admin, "/v1.0/applications/"+a.ID, map[string]any{"displayName": "Audit App"}).expect(t, http.StatusOK)
	n.del(t, n.admin, "/v1.0/applications/"+a.ID).expect(t, http.StatusNoContent)
	n.del(t, n.admin, "/v1.0/users/dave").expect(t, http.StatusNoContent)
	n.get(t, n.admin, "/v1.0/admin/backup").expect(t, http.StatusOK)
	// A HEAD gives out no backup, so none is recorded (one record below).
	if r := n.call(t, http.MethodHead, "/v1.0/admin/backup", n.admin, nil); r.Status != http.StatusOK || len(r.Body) != 0 {
		t.Errorf("HEAD of the backup: %s", r)
	}
	// A membership change that fails (a lone node without a cluster key
	// takes no members) is recorded with its outcome.
	if r := n.post(t, n.admin, "/v1.0/admin/cluster/nodes", map[string]any{"id": "ghost", "raftAddr": "127.0.0.1:9", "httpAddr": "127.0.0.1:10"}); r.Status < 400 {
		t.Fatalf("adding a node to a keyless node: %s", r)
	}
	if r := n.del(t, n.admin, "/v1.0/admin/cluster/nodes/ghost"); r.Status < 400 {
		t.Fatalf("removing an unknown node: %s", r)
	}

	whole := n.get(t, n.admin, "/v1.0/admin/auditLog?$top=1000").expect(t, http.StatusOK)
	for _, secret := range []string{dave.Password, "dave-new-password", "whatever-pass", dave.Token, dave.Refresh, n.admin,
		a.Secret, cred.SecretText, a.Token, "argon2", "secretHash", "passwordHash"} {
		if strings.Contains(string(whole.Body), secret) {
			t.Errorf("the audit log holds a secret (%.12s…)", secret)
		}
	}

	cases := []struct {
		action, target, result, detail string
	}{
		{"user.create", "dave", "success", "roles user"},
		{"user.rolesChange", "dave", "success", "user → admin"},
		{"user.passwordReset", "dave", "success", ""},
		{"user.disable", "dave", "success", ""},
		{"user.enable", "dave", "success", ""},
		{"user.update", "dave", "success", `"Dave D"`},
		{"user.delete", "dave", "success", ""},
		{"application.create", "audit.example.com", "success", ""},
		{"application.addPassword", "audit.example.com", "success", cred.KeyID},
		{"application.removePassword", "audit.example.com", "success", cred.KeyID},
		{"application.update", "audit.example.com", "success", `"Audit App"`},
		{"application.delete", "audit.example.com", "success", ""},
		{"backup.download", "", "success", ""},
		{"cluster.addNode", "ghost", "failure", "127.0.0.1:9"},
		{"cluster.removeNode", "ghost", "failure", ""},
	}
	for _, c := range cases {
		recs := n.auditRecords(t, "action="+url.QueryEscape(c.action)+"&actor=admin")
		var found map[string]any
		for _, r := range recs {
			if str(r, "result") == c.result {
				found = r
			}
		}
		if found == nil {
			t.Errorf("%s: no %s record among %v", c.action, c.result, recs)
			continue
		}
		act := actorOf(found)
		if str(act, "type") != "user" || str(act, "id") != me.ID || str(act, "name") != "admin" ||
			!strings.Contains(str(found, "target"), c.target) || str(found, "clientAddress") != "127.0.0.1" ||
			!wireTime.MatchString(str(found, "dateTime")) || str(found, "id") == "" ||
			!strings.Contains(str(found, "detail"), c.detail) || str(found, "action") != c.action {
			t.Errorf("%s: record %v", c.action, found)
		}
	}
	if recs := n.auditRecords(t, "action=backup.download"); len(recs) != 1 {
		t.Errorf("%d backup.download records for one GET and one HEAD, want 1", len(recs))
	}
	// The refused duplicate is recorded as a failure, with the reason.
	creates := n.auditRecords(t, "action=user.create")
	if len(creates) != 2 || str(creates[0], "result") != "failure" || !strings.Contains(str(creates[0], "detail"), "userPrincipalName") {
		t.Errorf("user.create records, newest first: %v", creates)
	}
	// Sign-ins: the admin's and dave's, by themselves.
	for _, who := range []string{"admin", "dave"} {
		recs := n.auditRecords(t, "action=signIn&actor="+who)
		if len(recs) == 0 || str(actorOf(recs[0]), "type") != "user" || str(recs[0], "result") != "success" {
			t.Errorf("sign-in records of %s: %v", who, recs)
		}
	}
	// The application's sign-in is counted per minute, as services may take
	// tokens often.
	var appIns []map[string]any
	eventually(t, 10*time.Second, "the application's sign-in in the audit log", func() bool {
		appIns = n.auditRecords(t, "action=signIn&actor="+a.ID)
		return len(appIns) == 1
	})
	if r := appIns[0]; str(actorOf(r), "type") != "application" || str(actorOf(r), "name") != "audit.example.com" ||
		r["count"] != 1.0 || str(r, "result") != "success" || !strings.Contains(str(r, "detail"), "1 sign-in") {
		t.Errorf("the application's sign-in: %v", r)
	}

	// Only admins read it.
	bob := n.newUser(t, "bob")
	wantError(t, n.get(t, bob.Token, "/v1.0/admin/auditLog"), http.StatusForbidden, "accessDenied")
	wantError(t, n.get(t, "", "/v1.0/admin/auditLog"), http.StatusUnauthorized, "unauthenticated")
}

// The log pages newest first, and its filters and paging are checked.
func TestAuditLogPagesAndFilters(t *testing.T) {
	n := start(t, nil)
	// Applications: records without the cost of a password hash.
	for i := range 5 {
		n.post(t, n.admin, "/v1.0/applications", map[string]any{"displayName": "pager", "targetHostName": fmt.Sprintf("pager%d.example.com", i)}).
			expect(t, http.StatusCreated)
	}
	items, pages, _ := n.collect(t, n.admin, "/v1.0/admin/auditLog?action=application.create&$top=2")
	if len(items) != 5 || pages != 3 {
		t.Fatalf("%d records on %d pages, want 5 on 3", len(items), pages)
	}
	for i := range items {
		if want := fmt.Sprintf("pager%d.example.com", 4-i); !strings.Contains(str(items[i], "target"), want) {
			t.Errorf("record %d is for %s, want %s (newest first)", i, str(items[i], "target"), want)
		}
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if got := n.get(t, n.admin, "/v1.0/admin/auditLog?since="+future).expect(t, http.StatusOK).value(t); len(got) != 0 {
		t.Errorf("records since an hour from now: %v", got)
	}
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if got := n.get(t, n.admin, "/v1.0/admin/auditLog?action=application.create&since="+past).expect(t, http.StatusOK).value(t); len(got) != 5 {
		t.Errorf("records since an hour ago: %d", len(got))
	}
	wantInvalid(t, n.get(t, n.admin, "/v1.0/admin/auditLog?since=yesterday"), "since")
	wantInvalid(t, n.get(t, n.admin, "/v1.0/admin/auditLog?$top=0"), "$top")
	wantInvalid(t, n.get(t, n.admin, "/v1.0/admin/auditLog?$skiptoken=bm90LWFuLWlk"), "$skiptoken")
}

// Failed sign-ins make one record per name, address and minute, with the
// count, whatever the reason and wherever they were checked; the password
// tried is not in it.
func TestFailedSignInsAreAggregated(t *testing.T) {
	// Dated mid-minute, so that the attempts cannot straddle two minutes.
	fixed := time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)
	n := start(t, func(c *node.Config) { c.AuditClock = func() time.Time { return fixed } })
	n.tokenRequest(t, url.Values{"grant_type": {"password"}, "username": {"erin"}, "password": {"guess-one-two"}}).expect(t, http.StatusBadRequest)
	n.tokenRequest(t, url.Values{"grant_type": {"password"}, "username": {"mallory"}, "password": {"guess-one-two"}}).expect(t, http.StatusBadRequest)
	n.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {"no-such-app"}, "client_secret": {"guess-one-two"}}).expect(t, http.StatusUnauthorized)
	// The web UI's sign-in counts under the same record.
	n.post(t, "", "/ui/session", map[string]any{"username": "erin", "password": "guess-one-two"}).expect(t, http.StatusUnauthorized)

	want := map[string]int{"erin": 2, "mallory": 1, "no-such-app": 1}
	last := n.awaitCounts(t, "signInFailure", want)
	for _, r := range last {
		if str(r, "result") != "failure" || str(r, "clientAddress") != "127.0.0.1" || str(r, "dateTime") != fixed.Truncate(time.Minute).Format("2006-01-02T15:04:05.000Z") ||
			!strings.Contains(str(r, "detail"), fmt.Sprint(want[str(r, "target")])) {
			t.Errorf("aggregated record %v", r)
		}
	}
	if str(actorOf(last[0]), "type") == "" {
		t.Errorf("no actor type in %v", last[0])
	}
	if body := n.get(t, n.admin, "/v1.0/admin/auditLog?$top=1000").Body; strings.Contains(string(body), "guess-one-two") {
		t.Error("the audit log holds a password that was tried")
	}
}

// A refused refresh is counted like a failed sign-in, under its own action:
// of the user the token was issued to while it is on record, else of an
// unknown refresh token (one never issued, or gone with its session), so
// that a replayed token shows. The web console's refresh counts alike.
func TestRefusedRefreshesAreCountedInTheAuditLog(t *testing.T) {
	fixed := time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)
	n := start(t, func(c *node.Config) { c.AuditClock = func() time.Time { return fixed } })
	dana := n.newUser(t, "dana")
	refresh := func(token string) {
		t.Helper()
		wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}),
			http.StatusBadRequest, "invalid_grant")
	}
	refresh(dana.Token) // an access token is on record, but is no refresh token
	refresh("never-issued-" + dana.Refresh)
	var sessions struct {
		Value []struct {
			ID string `json:"id"`
		} `json:"value"`
	}
	n.get(t, dana.Token, "/v1.0/me/sessions").expect(t, http.StatusOK).into(t, &sessions)
	if len(sessions.Value) != 1 {
		t.Fatalf("sessions %+v", sessions.Value)
	}
	n.del(t, dana.Token, "/v1.0/me/sessions/"+sessions.Value[0].ID).expect(t, http.StatusNoContent)
	refresh(dana.Refresh) // gone with its session
	// The console's refresh, with a cookie that names no token.
	req, err := http.NewRequest(http.MethodPost, n.URL+"/ui/session/refresh", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: "herald_refresh", Value: "never-issued"})
	res, err := n.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("console refresh with an unknown token: %d, want 401", res.StatusCode)
	}
	// A password sign-in under the unknown token's name is not one of them.
	n.tokenRequest(t, url.Values{"grant_type": {"password"}, "username": {"(unknown refresh token)"}, "password": {"guess-one-two"}}).
		expect(t, http.StatusBadRequest)

	last := n.awaitCounts(t, "refreshFailure", map[string]int{"dana": 1, "(unknown refresh token)": 3})
	for _, r := range last {
		a := actorOf(r)
		if str(r, "result") != "failure" || str(a, "type") != "user" || (str(r, "target") == "dana") != (str(a, "id") == dana.ID) {
			t.Errorf("record %v", r)
		}
		if strings.Contains(fmt.Sprint(r), dana.Refresh) || strings.Contains(fmt.Sprint(r), dana.Token) {
			t.Errorf("a token in the audit log: %v", r)
		}
	}
	eventually(t, 10*time.Second, "the password attempt as a failed sign-in", func() bool {
		recs := n.auditRecords(t, "action=signInFailure")
		return len(recs) == 1 && str(recs[0], "target") == "(unknown refresh token)"
	})
}

// The leader's purge deletes records older than the retention and keeps
// the others. The clock that dates records is moved instead of waiting.
func TestAuditRetentionPrunesOldRecords(t *testing.T) {
	var offset atomic.Int64
	offset.Store(int64(-100 * 24 * time.Hour))
	n := start(t, func(c *node.Config) {
		c.AuditRetention = 90 * 24 * time.Hour
		c.AuditClock = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	n.newUser(t, "old-timer")
	offset.Store(0)
	n.newUser(t, "newcomer")
	eventually(t, 10*time.Second, "records past the retention pruned", func() bool {
		recs := n.auditRecords(t, "action=user.create")
		return len(recs) == 1 && str(recs[0], "target") == "newcomer"
	})
	if recs := n.auditRecords(t, "action=signIn&actor=newcomer"); len(recs) != 1 {
		t.Errorf("a record within the retention went: %v", recs)
	}
}
