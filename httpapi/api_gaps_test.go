package httpapi_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// The small gaps of issue 8, item 7: each answer here was once a 200 or a
// 404 where the contract calls for a clear refusal or an answer.

func TestMalformedSkipTokenIs400NotAnEmptyPage(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	e.sendOK(t, e.tasks, e.aliceTasks, visual("n"))
	bad := []string{"!!", "%00", base64.RawURLEncoding.EncodeToString([]byte("zz\x00")),
		base64.RawURLEncoding.EncodeToString([]byte("a/b")), base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("a", 200))),
		base64.RawURLEncoding.EncodeToString([]byte("\xff\xfe"))}
	for _, path := range []string{"/v1.0/users", "/v1.0/applications", "/v1.0/me/notifications"} {
		for _, tok := range bad {
			wantInvalid(t, e.get(t, e.admin, path+"?$skiptoken="+url.QueryEscape(tok)), "$skiptoken")
		}
	}
	// The links the server makes still work.
	if items, pages, _ := e.collect(t, e.admin, "/v1.0/users?$top=1"); len(items) < 3 || pages < 3 {
		t.Errorf("paging users by one: %d items in %d pages", len(items), pages)
	}
}

func TestUnknownMethodOnAKnownPathIs405WithAllow(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	for _, c := range []struct{ method, path, allow string }{
		{"TRACE", "/v1.0/me/notifications", "DELETE, GET, HEAD, POST"},
		{"TRACE", "/v1.0/users/00000000-0000-4000-8000-000000000000", "DELETE, GET, HEAD, PATCH"},
		{"CONNECTX", "/beta/me", "GET, HEAD"},
		{"PROPFIND", "/oauth2/v2.0/token", "POST"},
		{"TRACE", "/healthz", "GET, HEAD"},
	} {
		r := n.call(t, c.method, c.path, n.admin, nil)
		wantError(t, r, http.StatusMethodNotAllowed, "methodNotAllowed")
		if got := r.Header.Get("Allow"); got != c.allow {
			t.Errorf("%s: Allow %q, want %q", r, got, c.allow)
		}
	}
	// An unknown path stays 404 whatever the method.
	wantError(t, n.call(t, "TRACE", "/v1.0/nothing/here", n.admin, nil), http.StatusNotFound, "itemNotFound")
}

func TestControlCharactersInNamesAre400(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	for _, field := range []string{"appNotificationId", "groupName"} {
		for _, v := range []string{"a\x00b", "\x00", "line\nbreak", "tab\there", "esc\x1b[31m", "del\x7f"} {
			wantInvalid(t, e.send(t, e.tasks, e.aliceTasks, visual("x", field, v)), field)
		}
		e.sendOK(t, e.tasks, e.aliceTasks, visual("x", field, "ok-ünïcödé "+field))
	}
	if got := len(e.get(t, e.alice.Token, feedAny).expect(t, http.StatusOK).value(t)); got != 2 {
		t.Errorf("%d notifications stored, want only the 2 valid ones", got)
	}
}

func TestInvalidUTF8InABodyIs400(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	for _, body := range []string{
		"{\"topic\":\"caf\xe9\",\"visualContent\":{\"title\":\"t\"}}",
		"{\"visualContent\":{\"title\":\"\xff\"}}",
		"{\"visualContent\":{\"title\":\"t\"}, \"groupName\":\"\xed\xa0\x80\"}", // an encoded surrogate
	} {
		e.send(t, e.tasks, e.aliceTasks, body).expect(t, http.StatusBadRequest)
		wantInvalid(t, e.send(t, e.tasks, e.aliceTasks, body), "")
	}
	wantInvalid(t, e.post(t, e.alice.Token, "/v1.0/me/notificationSubscriptions",
		"{\"targetHostName\":\"tasks.contoso.com\",\"platformType\":\"web\",\"deviceName\":\"\xc3\",\"channel\":{\"type\":\"live\"}}"), "")
	if got := len(e.get(t, e.alice.Token, feedAny).expect(t, http.StatusOK).value(t)); got != 0 {
		t.Errorf("%d notifications stored from invalid bodies", got)
	}
	// Valid UTF-8, U+FFFD itself included, is taken as sent.
	e.sendOK(t, e.tasks, e.aliceTasks, visual("café \ufffd ✓"))
}

func TestAdminReadsAnotherUsersDeliveriesThroughTheContractPath(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	nid := e.sendOK(t, e.tasks, e.aliceTasks, visual("n"))
	path := "/v1.0/me/notifications/" + nid + "/deliveries"
	var owner []string
	eventually(t, 10*time.Second, "alice's delivery records", func() bool {
		owner = subs(e.get(t, e.alice.Token, path).expect(t, http.StatusOK).value(t))
		return len(owner) > 0
	})
	eventually(t, 10*time.Second, "the admin to see alice's delivery records", func() bool {
		return slices.Equal(subs(e.get(t, e.admin, path).expect(t, http.StatusOK).value(t)), owner)
	})
	if got := subs(e.get(t, e.admin, "/v1.0/users/"+e.alice.ID+"/notifications/"+nid+"/deliveries").expect(t, http.StatusOK).value(t)); !slices.Equal(got, owner) {
		t.Errorf("admin by user path: %v, want %v", got, owner)
	}
	// Nobody else reads them, and an unknown id is 404 for the admin too.
	wantError(t, e.get(t, e.bob.Token, path), http.StatusNotFound, "itemNotFound")
	wantError(t, e.get(t, e.mail.Token, path, "X-UNS-ID", e.aliceMail), http.StatusNotFound, "itemNotFound")
	wantError(t, e.get(t, e.admin, "/v1.0/me/notifications/0000000000000000000000000000/deliveries"), http.StatusNotFound, "itemNotFound")
}

func subs(items []map[string]any) []string {
	var out []string
	for _, d := range items {
		out = append(out, str(d, "subscriptionId"))
	}
	slices.Sort(out)
	return out
}
