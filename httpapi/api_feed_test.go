package httpapi_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/node"
)

func TestFeedListsNewestFirstAndFilters(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	t1 := e.sendOK(t, e.tasks, e.aliceTasks, visual("t1", "groupName", "g1"))
	t2 := e.sendOK(t, e.tasks, e.aliceTasks, visual("t2", "groupName", "g2"))
	m1 := e.sendOK(t, e.mail, e.aliceMail, visual("m1", "groupName", "g1"))
	t3 := e.sendOK(t, e.tasks, e.aliceTasks, visual("t3", "groupName", "g1"))
	e.sendOK(t, e.tasks, e.bobTasks, visual("bob's"))

	feed := e.get(t, e.alice.Token, "/v1.0/me/notifications").expect(t, http.StatusOK).value(t)
	if got := ids(feed); !slices.Equal(got, []string{t3, m1, t2, t1}) {
		t.Fatalf("feed %v, want newest first %v", got, []string{t3, m1, t2, t1})
	}
	for i := 1; i < len(feed); i++ {
		if str(feed[i-1], "createdDateTime") < str(feed[i], "createdDateTime") {
			t.Errorf("feed not newest first by createdDateTime: %v", feed)
		}
	}

	e.patch(t, e.alice.Token, "/v1.0/me/notifications/"+t2, map[string]any{"readState": "read"}).expect(t, http.StatusOK)
	e.patch(t, e.alice.Token, "/v1.0/me/notifications/"+m1, map[string]any{"userActionState": "dismissed"}).expect(t, http.StatusOK)
	e.del(t, e.alice.Token, "/v1.0/me/notifications/"+t1).expect(t, http.StatusNoContent)

	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", []string{t3, m1, t2}},
		{"?readState=read", []string{t2}},
		{"?readState=unread", []string{t3, m1}},
		{"?userActionState=dismissed", []string{m1}},
		{"?userActionState=noInteraction", []string{t3, t2}},
		{"?targetHostName=mail.contoso.com", []string{m1}},
		{"?targetHostName=tasks.contoso.com", []string{t3, t2}},
		{"?groupName=g1", []string{t3, m1}},
		{"?groupName=g1&targetHostName=tasks.contoso.com", []string{t3}},
		{"?status=active", []string{t3, m1, t2}},
		{"?status=deleted", []string{t1}},
		{"?status=any", []string{t3, m1, t2, t1}},
		{"?status=any&groupName=g1&readState=unread", []string{t3, m1, t1}},
		{"?$top=2", []string{t3, m1}},
	} {
		got := ids(e.get(t, e.alice.Token, "/v1.0/me/notifications"+c.query).expect(t, http.StatusOK).value(t))
		if !slices.Equal(got, c.want) {
			t.Errorf("feed%s = %v, want %v", c.query, got, c.want)
		}
	}
	for _, c := range []struct{ query, target string }{
		{"readState=maybe", "readState"}, {"userActionState=clicked", "userActionState"}, {"status=gone", "status"},
		{"$top=0", "$top"}, {"$top=1001", "$top"}, {"$top=ten", "$top"}, {"$skiptoken=!!", "$skiptoken"},
		// base64url of "hello": decodes, but names no notification.
		{"$skiptoken=aGVsbG8", "$skiptoken"},
	} {
		wantInvalid(t, e.get(t, e.alice.Token, "/v1.0/me/notifications?"+c.query), c.target)
	}
	// Nor is it a user's or an application's id, after which those lists go on.
	wantInvalid(t, e.get(t, e.admin, "/v1.0/users?$skiptoken=aGVsbG8"), "$skiptoken")
	wantInvalid(t, e.get(t, e.admin, "/v1.0/applications?$skiptoken=aGVsbG8"), "$skiptoken")
	if got := len(e.get(t, e.alice.Token, "/v1.0/me/notifications?$top=1000").expect(t, 200).value(t)); got != 3 {
		t.Errorf("$top=1000 gave %d items", got)
	}
	// The feed is the user's own.
	if got := ids(e.get(t, e.bob.Token, "/v1.0/me/notifications?status=any").expect(t, 200).value(t)); len(got) != 1 {
		t.Errorf("bob's feed %v", got)
	}
	wantError(t, e.get(t, e.bob.Token, "/v1.0/me/notifications/"+t3), http.StatusNotFound, "itemNotFound")
	wantError(t, e.get(t, e.alice.Token, "/v1.0/me/notifications/"+"nonexistent"), http.StatusNotFound, "itemNotFound")
}

func TestFeedPagesThroughNextLinkToTheEnd(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	var want []string
	for i := range 7 {
		group := "even"
		if i%2 == 1 {
			group = "odd"
		}
		want = append([]string{e.sendOK(t, e.tasks, e.aliceTasks, visual("n", "groupName", group))}, want...)
	}
	for _, base := range []string{"/v1.0", "/beta"} {
		items, pages, last := e.collect(t, e.alice.Token, base+"/me/notifications?$top=3")
		if got := ids(items); pages != 3 || !slices.Equal(got, want) {
			t.Errorf("%s: %d pages of %v, want 3 pages of %v", base, pages, got, want)
		}
		if _, ok := last["@odata.nextLink"]; ok {
			t.Errorf("%s: the last page has a nextLink", base)
		}
	}
	first := e.get(t, e.alice.Token, "/v1.0/me/notifications?$top=3&groupName=even").expect(t, 200).obj(t)
	next := str(first, "@odata.nextLink")
	u, err := url.Parse(next)
	if err != nil || !u.IsAbs() || u.Path != "/v1.0/me/notifications" || u.Query().Get("$skiptoken") == "" ||
		u.Query().Get("groupName") != "even" || u.Query().Get("$top") != "3" {
		t.Fatalf("nextLink %q: want an absolute URL of the same query with a $skiptoken", next)
	}
	items, _, _ := e.collect(t, e.alice.Token, next)
	if len(items) != 1 || items[0]["groupName"] != "even" {
		t.Errorf("second page of the filtered feed: %v", items)
	}
	// Another user cannot read alice's feed with her skiptoken.
	if got := e.get(t, e.bob.Token, next).expect(t, 200).value(t); len(got) != 0 {
		t.Errorf("bob read %v through alice's nextLink", ids(got))
	}
}

func TestPatchNotificationChangesOnlyReadAndActionState(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	id := e.sendOK(t, e.tasks, e.aliceTasks, visual("patch me"))
	path := "/v1.0/me/notifications/" + id
	orig := e.get(t, e.alice.Token, path).expect(t, 200).obj(t)

	p := e.patch(t, e.alice.Token, path, map[string]any{"readState": "read"}).expect(t, http.StatusOK).obj(t)
	if p["readState"] != "read" || p["userActionState"] != "noInteraction" || p["id"] != id ||
		str(p, "lastModifiedDateTime") < str(orig, "lastModifiedDateTime") {
		t.Errorf("PATCH readState answer %v", p)
	}
	p = e.patch(t, e.alice.Token, path, map[string]any{"userActionState": "Dismissed", "readState": "unread"}).expect(t, http.StatusOK).obj(t)
	if p["readState"] != "unread" || p["userActionState"] != "dismissed" {
		t.Errorf("PATCH both answer %v", p)
	}
	for _, s := range []string{"activated", "snoozed", "noInteraction"} {
		if got := e.patch(t, e.alice.Token, path, map[string]any{"userActionState": s}).expect(t, 200).obj(t); got["userActionState"] != s {
			t.Errorf("userActionState %v, want %s", got["userActionState"], s)
		}
	}

	before := e.snapshot(t, e.alice.Token, path)
	for _, c := range []struct {
		body   any
		target string
	}{
		{map[string]any{"readState": "read", "payload": map[string]any{"rawContent": "hacked"}}, "payload"},
		{map[string]any{"readState": "read", "status": "deleted"}, "status"},
		{map[string]any{"priority": "Low"}, "priority"},
		{map[string]any{"readState": "maybe"}, "readState"},
		{map[string]any{"userActionState": "clicked"}, "userActionState"},
		{map[string]any{"readState": 1}, "readState"},
	} {
		wantInvalid(t, e.patch(t, e.alice.Token, path, c.body), c.target)
	}
	wantError(t, e.patch(t, e.alice.Token, path, map[string]any{}), http.StatusBadRequest, "invalidRequest")
	wantError(t, e.patch(t, e.alice.Token, path, `[{"readState":"read"}]`), http.StatusBadRequest, "invalidRequest")
	wantError(t, e.patch(t, e.bob.Token, path, map[string]any{"readState": "read"}), http.StatusNotFound, "itemNotFound")
	wantError(t, e.patch(t, e.alice.Token, "/v1.0/me/notifications/nonexistent", map[string]any{"readState": "read"}), http.StatusNotFound, "itemNotFound")
	sameSnapshot(t, "notification", before, e.snapshot(t, e.alice.Token, path))

	e.del(t, e.alice.Token, path).expect(t, http.StatusNoContent)
	wantError(t, e.patch(t, e.alice.Token, path, map[string]any{"readState": "read"}), http.StatusNotFound, "itemNotFound")
}

func TestDeletedNotificationStaysVisibleAsDeleted(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	keep := e.sendOK(t, e.tasks, e.aliceTasks, visual("keep"))
	gone := e.sendOK(t, e.tasks, e.aliceTasks, visual("gone"))

	e.del(t, e.alice.Token, "/v1.0/me/notifications/"+gone).expect(t, http.StatusNoContent)
	if got := ids(e.get(t, e.alice.Token, "/v1.0/me/notifications").expect(t, 200).value(t)); !slices.Equal(got, []string{keep}) {
		t.Errorf("active feed %v, want [%s]", got, keep)
	}
	del := e.get(t, e.alice.Token, "/v1.0/me/notifications?status=deleted").expect(t, 200).value(t)
	if len(del) != 1 || str(del[0], "id") != gone || del[0]["status"] != "deleted" {
		t.Errorf("status=deleted %v", del)
	}
	// The tombstone keeps no content (rules level 4): what the user
	// deleted is gone from the server, and a sender that deletes what it
	// sends cannot fill the disk with copies until the expiry.
	if p, _ := del[0]["payload"].(map[string]any); len(p) != 0 || del[0]["fallbackPolicy"] != nil {
		t.Errorf("the tombstone holds %v", del[0])
	}
	if got := ids(e.get(t, e.alice.Token, "/v1.0/me/notifications?status=any").expect(t, 200).value(t)); !slices.Equal(got, []string{gone, keep}) {
		t.Errorf("status=any %v", got)
	}
	// The sending application sees the deletion too.
	if got := e.get(t, e.tasks.Token, "/v1.0/me/notifications/"+gone, "X-UNS-ID", e.aliceTasks).expect(t, 200).obj(t); got["status"] != "deleted" {
		t.Errorf("the application's view %v", got)
	}
	e.del(t, e.alice.Token, "/v1.0/me/notifications/"+gone).expect(t, http.StatusNoContent)
	wantError(t, e.del(t, e.alice.Token, "/v1.0/me/notifications/nonexistent"), http.StatusNotFound, "itemNotFound")
	wantError(t, e.del(t, e.bob.Token, "/v1.0/me/notifications/"+keep), http.StatusNotFound, "itemNotFound")
	if got := e.get(t, e.alice.Token, "/v1.0/me/notifications/"+keep).expect(t, 200).obj(t); got["status"] != "active" {
		t.Errorf("bob's delete touched alice's notification: %v", got)
	}
}

// deltaRound follows a delta link (or starts one) through its nextLinks and
// returns every item and the deltaLink that ends it.
func (n *hnode) deltaRound(t *testing.T, token, path string) ([]map[string]any, string) {
	t.Helper()
	items, _, last := n.collect(t, token, path)
	dl := str(last, "@odata.deltaLink")
	if dl == "" {
		t.Fatalf("delta round from %s ended without a deltaLink: %v", path, last)
	}
	u, err := url.Parse(dl)
	if err != nil || !u.IsAbs() || u.Query().Get("$deltatoken") == "" {
		t.Fatalf("deltaLink %q: want an absolute URL with a $deltatoken", dl)
	}
	return items, dl
}

func byID(items []map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, m := range items {
		out[str(m, "id")] = m
	}
	return out
}

func removedReason(m map[string]any) string {
	r, _ := m["@removed"].(map[string]any)
	return str(r, "reason")
}

func TestDeltaEnumeratesThenReportsOnlyChanges(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	var sent []string
	for range 5 {
		sent = append(sent, e.sendOK(t, e.tasks, e.aliceTasks, visual("n")))
	}
	e.del(t, e.alice.Token, "/v1.0/me/notifications/"+sent[0]).expect(t, http.StatusNoContent)
	e.sendOK(t, e.tasks, e.bobTasks, visual("bob's"))

	// Initial round, paged by two: every active notification, once.
	items, pages, _ := e.collect(t, e.alice.Token, "/v1.0/me/notifications/delta?$top=2")
	_, link := e.deltaRound(t, e.alice.Token, "/v1.0/me/notifications/delta?$top=2")
	got := ids(items)
	slices.Sort(got)
	want := slices.Clone(sent[1:])
	slices.Sort(want)
	if pages != 2 || !slices.Equal(got, want) {
		t.Fatalf("initial delta: %d pages of %v, want 2 pages of %v", pages, got, want)
	}

	// Nothing changed: an empty round.
	items, link = e.deltaRound(t, e.alice.Token, link)
	if len(items) != 0 {
		t.Fatalf("delta with no changes: %v", items)
	}

	created := e.sendOK(t, e.tasks, e.aliceTasks, visual("new"))
	e.patch(t, e.alice.Token, "/v1.0/me/notifications/"+sent[1], map[string]any{"readState": "read"}).expect(t, 200)
	e.del(t, e.alice.Token, "/v1.0/me/notifications/"+sent[2]).expect(t, http.StatusNoContent)
	e.sendOK(t, e.tasks, e.bobTasks, visual("bob's again"))

	items, next := e.deltaRound(t, e.alice.Token, link)
	m := byID(items)
	if len(items) != 3 || len(m) != 3 {
		t.Fatalf("delta after three changes: %v", items)
	}
	if c := m[created]; c == nil || c["status"] != "active" || c["payload"] == nil {
		t.Errorf("created notification in delta: %v", c)
	}
	if u := m[sent[1]]; u == nil || u["readState"] != "read" {
		t.Errorf("updated notification in delta: %v", u)
	}
	if d := m[sent[2]]; d == nil || removedReason(d) != "deleted" || len(d) != 2 {
		t.Errorf("deleted notification in delta: %v, want {id, @removed: {reason: deleted}}", d)
	}

	// The same round again, one item per page, through nextLinks.
	byOne, _ := url.Parse(link)
	q := byOne.Query()
	q.Set("$top", "1")
	byOne.RawQuery = q.Encode()
	paged, pages, _ := e.collect(t, e.alice.Token, byOne.String())
	if pages != 3 || len(byID(paged)) != 3 {
		t.Errorf("delta by one: %d pages, items %v", pages, ids(paged))
	}
	// A link is reusable, and the new one reports nothing new.
	if again, _ := e.deltaRound(t, e.alice.Token, link); len(again) != 3 {
		t.Errorf("replaying the deltaLink gave %v", ids(again))
	}
	if items, _ := e.deltaRound(t, e.alice.Token, next); len(items) != 0 {
		t.Errorf("delta after catching up: %v", items)
	}
	// Applications use their own list, not the user's delta.
	wantError(t, e.get(t, e.tasks.Token, "/v1.0/me/notifications/delta", "X-UNS-ID", e.aliceTasks), http.StatusForbidden, "accessDenied")
}

func TestDeltaReportsExpiredNotificationsAsRemoved(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	soon := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)
	short := e.sendOK(t, e.tasks, e.aliceTasks, visual("short-lived", "expirationDateTime", soon))
	long := e.sendOK(t, e.tasks, e.aliceTasks, visual("long-lived"))
	_, link := e.deltaRound(t, e.alice.Token, "/v1.0/me/notifications/delta")

	var removed map[string]any
	eventually(t, 15*time.Second, "the expired notification in delta", func() bool {
		items, _ := e.deltaRound(t, e.alice.Token, link)
		removed = byID(items)[short]
		return removed != nil
	})
	if removedReason(removed) != "expired" || len(removed) != 2 {
		t.Errorf("expired notification in delta: %v, want {id, @removed: {reason: expired}}", removed)
	}
	if got := ids(e.get(t, e.alice.Token, "/v1.0/me/notifications?status=any").expect(t, 200).value(t)); !slices.Equal(got, []string{long}) {
		t.Errorf("feed after expiry %v, want [%s]", got, long)
	}
	wantError(t, e.get(t, e.alice.Token, "/v1.0/me/notifications/"+short), http.StatusNotFound, "itemNotFound")
	// A fresh enumeration leaves it out.
	if items, _ := e.deltaRound(t, e.alice.Token, "/v1.0/me/notifications/delta"); !slices.Equal(ids(items), []string{long}) {
		t.Errorf("initial delta after expiry: %v", ids(items))
	}
}

func TestDeltaWithAnUnknownTokenIs410AndAMalformedOne400(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	e.sendOK(t, e.tasks, e.aliceTasks, visual("n"))
	// Well formed, but no node handed it out: the client must start again.
	wantError(t, e.get(t, e.alice.Token, "/v1.0/me/notifications/delta?$deltatoken="+
		base64.RawURLEncoding.EncodeToString([]byte("d.999999999"))), http.StatusGone, "resyncRequired")
	// Not a token at all: the client's mistake, named.
	for _, tok := range []string{
		"garbage",
		"!!",
		base64.RawURLEncoding.EncodeToString([]byte("x.1")),
		base64.RawURLEncoding.EncodeToString([]byte("i.1.")),
		base64.RawURLEncoding.EncodeToString([]byte("i.1.a\x00b")),
		base64.RawURLEncoding.EncodeToString([]byte("d.1.2")),
		base64.RawURLEncoding.EncodeToString([]byte("d.-1")),
	} {
		wantInvalid(t, e.get(t, e.alice.Token, "/v1.0/me/notifications/delta?$deltatoken="+url.QueryEscape(tok)), "$deltatoken")
		wantInvalid(t, e.get(t, e.alice.Token, "/v1.0/me/notifications/delta?$skiptoken="+url.QueryEscape(tok)), "$skiptoken")
	}
	wantInvalid(t, e.get(t, e.alice.Token, "/v1.0/me/notifications/delta?$top=0"), "$top")
	_, link := e.deltaRound(t, e.alice.Token, "/v1.0/me/notifications/delta")
	if !strings.Contains(link, "/v1.0/me/notifications/delta?") {
		t.Errorf("deltaLink %q is not a delta URL", link)
	}
}

// deltaTokenOf is the raw text of the $skiptoken or $deltatoken of a link.
func deltaTokenOf(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	tok := u.Query().Get("$skiptoken") + u.Query().Get("$deltatoken")
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatalf("token of %s: %v", link, err)
	}
	return string(b)
}

// A delta token is plain text that a client can write by hand. One the
// server did not make for this user, or cannot honour, is 410 (too old,
// ahead of the log, continuing after no notification of the user's) or 400
// (no server's shape): never a page that silently leaves notifications out,
// never a 500. The server's own links keep working, a deleted notification
// as the place to continue after included.
func TestDeltaRefusesForgedTokens(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	var sent []string
	for range 3 {
		sent = append(sent, e.sendOK(t, e.tasks, e.aliceTasks, visual("n")))
	}
	bobs := e.sendOK(t, e.tasks, e.bobTasks, visual("bob's"))
	first := e.get(t, e.alice.Token, "/v1.0/me/notifications/delta?$top=1").expect(t, http.StatusOK).obj(t)
	next := str(first, "@odata.nextLink")
	parts := strings.Split(deltaTokenOf(t, next), ".")
	if len(parts) != 3 || parts[0] != "i" || parts[2] != sent[2] {
		t.Fatalf("the first page's nextLink carries %v; want i.<seq>.%s", parts, sent[2])
	}
	seq, _ := strconv.ParseUint(parts[1], 10, 64)
	at := func(s uint64) string { return strconv.FormatUint(s, 10) }

	forged := func(param, tok string) *resp {
		return e.get(t, e.alice.Token, "/v1.0/me/notifications/delta?"+param+"="+base64.RawURLEncoding.EncodeToString([]byte(tok)))
	}
	for _, param := range []string{"$skiptoken", "$deltatoken"} {
		for _, tok := range []string{
			"i." + at(seq+1) + "." + sent[2],    // ahead of the log
			"i." + at(seq+1000) + "." + sent[2], // far ahead
			"d." + at(seq+1),                    // a deltaLink from the future
		} {
			wantError(t, forged(param, tok), http.StatusGone, "resyncRequired")
		}
		// A well-formed id is a position in the caller's own feed, as a
		// real nextLink's is once its notification is purged: a made-up
		// one moves the caller within its own notifications and never
		// reaches another user's.
		for tok, want := range map[string][]string{
			"i." + at(seq) + ".00000000000000000000000000": nil,                         // below all
			"i." + at(seq) + ".vvvvvvvvvvvvvvvvvvvvvvvvvv": {sent[2], sent[1], sent[0]}, // above all
			"i." + at(seq) + "." + bobs:                    nil,                         // another user's: a position only
		} {
			items, _, _ := e.collect(t, e.alice.Token, "/v1.0/me/notifications/delta?"+param+"="+
				base64.RawURLEncoding.EncodeToString([]byte(tok)))
			got := ids(items)
			if slices.Contains(got, bobs) {
				t.Errorf("%s %s listed another user's notification: %v", param, tok, got)
			}
			if want != nil && !slices.Equal(got, want) {
				t.Errorf("%s %s: %v, want %v", param, tok, got, want)
			}
		}
		// Continuing after something that is not a notification id is no
		// token of any server.
		for _, tok := range []string{"i." + at(seq) + ".0", "i." + at(seq) + ".zzzz", "i." + at(seq) + "." + e.alice.ID} {
			wantInvalid(t, forged(param, tok), param)
		}
	}

	// The real nextLink still leads on, though the notification it
	// continues after was deleted meanwhile.
	e.del(t, e.alice.Token, "/v1.0/me/notifications/"+sent[2]).expect(t, http.StatusNoContent)
	items, _, last := e.collect(t, e.alice.Token, next)
	if got := ids(items); !slices.Equal(got, []string{sent[1], sent[0]}) {
		t.Errorf("following the real nextLink: %v, want [%s %s]", got, sent[1], sent[0])
	}
	if changes, _ := e.deltaRound(t, e.alice.Token, str(last, "@odata.deltaLink")); len(changes) != 1 || removedReason(changes[0]) != "deleted" {
		t.Errorf("the round after: %v, want the deletion", changes)
	}
}

// A real nextLink of the first round goes on after its notification has
// expired and been purged between two pages: the id it carries is a
// position, not a notification that must still be there.
func TestDeltaNextLinkOutlivesItsPurgedNotification(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, func(c *node.Config) { c.PurgeInterval = 50 * time.Millisecond })
	older := []string{e.sendOK(t, e.tasks, e.aliceTasks, visual("a")), e.sendOK(t, e.tasks, e.aliceTasks, visual("b"))}
	brief := e.sendOK(t, e.tasks, e.aliceTasks, visual("brief",
		"expirationDateTime", time.Now().Add(1500*time.Millisecond).UTC().Format(time.RFC3339Nano)))
	first := e.get(t, e.alice.Token, "/v1.0/me/notifications/delta?$top=1").expect(t, http.StatusOK)
	if got := ids(first.value(t)); !slices.Equal(got, []string{brief}) {
		t.Fatalf("first page %v, want [%s]", got, brief)
	}
	eventually(t, 15*time.Second, "the brief notification purged", func() bool {
		_, found, err := e.Store().Notification(e.alice.ID, brief)
		return err == nil && !found
	})
	items, _, _ := e.collect(t, e.alice.Token, str(first.obj(t), "@odata.nextLink"))
	if got := ids(items); !slices.Equal(got, []string{older[1], older[0]}) {
		t.Errorf("following the nextLink after the purge: %v, want [%s %s]", got, older[1], older[0])
	}
}

// A token older than the change log's retention is 410, the server's own
// deltaLink and one written by hand alike.
func TestDeltaTokenOlderThanRetentionIs410(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, func(c *node.Config) {
		c.Limits.ChangeRetention = 200 * time.Millisecond
		c.PurgeInterval = 50 * time.Millisecond
	})
	e.sendOK(t, e.tasks, e.aliceTasks, visual("one"))
	_, link := e.deltaRound(t, e.alice.Token, "/v1.0/me/notifications/delta")
	e.sendOK(t, e.tasks, e.aliceTasks, visual("two"))
	eventually(t, 15*time.Second, "the deltaLink refused once its changes are trimmed", func() bool {
		return e.get(t, e.alice.Token, link).Status == http.StatusGone
	})
	wantError(t, e.get(t, e.alice.Token, link), http.StatusGone, "resyncRequired")
	wantError(t, e.get(t, e.alice.Token, "/v1.0/me/notifications/delta?$deltatoken="+base64.RawURLEncoding.EncodeToString([]byte("d.0"))),
		http.StatusGone, "resyncRequired")
}

// feedExamined is the most notifications one page of the feed reads
// (docs/API-NOTES.md, "Sending and the feed").
const feedExamined = 2000

// A filter that matches a few notifications of a large feed reads at most
// feedExamined of them a page: pages end short, even empty, with a nextLink
// that goes on after the last one read, and following the nextLinks to the
// end returns every match once, newest first. Pages that every
// notification fills are as they were: full.
func TestFilteredFeedReadsABoundedPartEachPage(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, func(c *node.Config) { c.Limits.AppRate, c.Limits.UserRate = 0, 0 })
	const total = 5000
	rare := map[string]bool{}
	mail := map[string]bool{}
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < total; i = int(next.Add(1)) - 1 {
				// Two of groupName rare, far apart, and five of mail's.
				a, unsid, body := e.tasks, e.aliceTasks, visual(fmt.Sprint(i))
				if i == 100 || i == total-100 {
					body["groupName"] = "rare"
				}
				if i%1000 == 500 {
					a, unsid = e.mail, e.aliceMail
				}
				r := e.send(t, a, unsid, body)
				var n struct{ ID string }
				if err := json.Unmarshal(r.Body, &n); r.Status != http.StatusCreated || err != nil || n.ID == "" {
					errs <- fmt.Errorf("%s", r)
					return
				}
				mu.Lock()
				if body["groupName"] == "rare" {
					rare[n.ID] = true
				}
				if a.Host == e.mail.Host {
					mail[n.ID] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// The whole feed, in full pages: its order is the one every walk
	// below must keep.
	all, pages, _ := e.collect(t, e.alice.Token, "/v1.0/me/notifications?status=any&$top=1000")
	if len(all) != total || pages != total/1000 {
		t.Fatalf("the whole feed: %d notifications in %d pages, want %d in %d full pages", len(all), pages, total, total/1000)
	}
	pos := map[string]int{}
	var wantRare, wantMail []string
	for i, n := range all {
		id := str(n, "id")
		pos[id] = i
		if rare[id] {
			wantRare = append(wantRare, id)
		}
		if mail[id] {
			wantMail = append(wantMail, id)
		}
	}
	if len(wantRare) != 2 || len(wantMail) != total/1000 {
		t.Fatalf("%d rare and %d of mail's in the feed", len(wantRare), len(wantMail))
	}

	// walk follows the nextLinks from path and returns the ids, the pages
	// and how many of them were empty with a nextLink. A nextLink's
	// $skiptoken names where its page stopped reading: no further than
	// feedExamined notifications beyond where it started.
	walk := func(token, path string, hdr ...string) (got []string, pages, empty int) {
		t.Helper()
		start := -1
		for link := path; link != ""; {
			if pages++; pages > total {
				t.Fatalf("paging from %s did not end", path)
			}
			r := e.get(t, token, link, hdr...).expect(t, http.StatusOK)
			items := r.value(t)
			got = append(got, ids(items)...)
			link = str(r.obj(t), "@odata.nextLink")
			if link == "" {
				break
			}
			if len(items) == 0 {
				empty++
			}
			u, err := url.Parse(link)
			if err != nil {
				t.Fatal(err)
			}
			after, err := base64.RawURLEncoding.DecodeString(u.Query().Get("$skiptoken"))
			stop, ok := pos[string(after)]
			if err != nil || !ok || stop <= start || stop-start > feedExamined {
				t.Fatalf("%s: a page that started after %d stopped at %q (%d, %v): more than %d notifications read",
					path, start, after, stop, ok, feedExamined)
			}
			start = stop
		}
		return got, pages, empty
	}
	aliceFeed := "/v1.0/users/" + e.alice.ID + "/notifications"
	for _, c := range []struct {
		name, token, path string
		hdr               []string
		want              []string
	}{
		{"groupName", e.alice.Token, "/v1.0/me/notifications?groupName=rare&$top=2", nil, wantRare},
		{"targetHostName", e.alice.Token, "/v1.0/me/notifications?targetHostName=mail.contoso.com&$top=2", nil, wantMail},
		{"an application's own", e.mail.Token, "/v1.0/me/notifications?$top=2", []string{"X-UNS-ID", e.aliceMail}, wantMail},
		{"an admin's view", e.admin, aliceFeed + "?groupName=rare&$top=2", nil, wantRare},
	} {
		got, pages, empty := walk(c.token, c.path, c.hdr...)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		if pages < total/feedExamined+1 {
			t.Errorf("%s: %d pages over %d notifications", c.name, pages, total)
		}
		// 4,800 notifications lie between the two rare ones: at least
		// one page reads only them.
		if c.want[0] == wantRare[0] && empty == 0 {
			t.Errorf("%s: no page was empty with a nextLink", c.name)
		}
	}
}
