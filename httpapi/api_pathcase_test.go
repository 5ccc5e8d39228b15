package httpapi_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// Microsoft Graph matches the fixed segments of its paths without regard to
// case, and code ported from it spells them as its authors did: the same
// resource answers, with no redirect, while ids and names in a path stay as
// given, and paths outside the API stay exact.
func TestAPIPathSegmentsMatchWithoutRegardToCase(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	me := e.get(t, e.alice.Token, "/v1.0/me").expect(t, http.StatusOK).Body
	for _, p := range []string{"/v1.0/ME", "/V1.0/me", "/BETA/Me", "/Beta/mE/"} {
		if got := e.get(t, e.alice.Token, p).expect(t, http.StatusOK).Body; string(got) != string(me) {
			t.Errorf("GET %s: %s, want %s", p, got, me)
		}
	}

	// A send (a POST: its body must not be lost on the way) and the reads
	// of the feed and subscriptions.
	sent := e.post(t, e.tasks.Token, "/V1.0/Me/NOTIFICATIONS", visual("shouted"), "X-UNS-ID", e.aliceTasks).
		expect(t, http.StatusCreated)
	id := str(sent.obj(t), "id")
	if loc := sent.Header.Get("Location"); loc != "/v1.0/me/notifications/"+id {
		t.Errorf("Location %q after a send to a mis-cased path", loc)
	}
	if got := ids(e.get(t, e.alice.Token, "/v1.0/me/Notifications").expect(t, http.StatusOK).value(t)); !slices.Equal(got, []string{id}) {
		t.Errorf("feed through /v1.0/me/Notifications: %v, want [%s]", got, id)
	}
	e.patch(t, e.alice.Token, "/v1.0/Me/Notifications/"+id, map[string]any{"readState": "read"}).expect(t, http.StatusOK)
	if got := ids(e.get(t, e.alice.Token, "/beta/Me/NotificationSubscriptions").expect(t, http.StatusOK).value(t)); len(got) != 2 {
		t.Errorf("subscriptions through /beta/Me/NotificationSubscriptions: %v", got)
	}
	// The UNSID is an id: its case is its own.
	e.get(t, e.alice.Token, "/V1.0/ME/NOTIFICATIONSUBSCRIPTIONS/"+e.aliceTasks).expect(t, http.StatusOK)
	if lower := strings.ToLower(e.aliceTasks); lower != e.aliceTasks {
		wantError(t, e.get(t, e.alice.Token, "/v1.0/me/notificationSubscriptions/"+lower), http.StatusNotFound, "itemNotFound")
	}
	e.get(t, e.admin, "/v1.0/Users/"+e.alice.ID).expect(t, http.StatusOK)
	e.get(t, e.admin, "/v1.0/ADMIN/Cluster").expect(t, http.StatusOK)
	e.post(t, e.admin, "/v1.0/Applications/"+e.tasks.ID+"/AddPassword", map[string]any{"displayName": "second"}).
		expect(t, http.StatusOK)
	e.get(t, e.alice.Token, "/v1.0/me/Sessions").expect(t, http.StatusOK)

	// Links in the answer name the path in its own spelling, and work.
	items, link := e.deltaRound(t, e.alice.Token, "/v1.0/Me/Notifications/Delta")
	if u, _ := url.Parse(link); len(items) != 1 || u == nil || u.Path != "/v1.0/me/notifications/delta" {
		t.Errorf("delta through a mis-cased path: %v items, deltaLink %q", ids(items), link)
	}

	// What is not a route stays 404, and another method on a route 405.
	for _, p := range []string{"/v1.0/Me/NoSuchThing", "/V1.0/users/" + e.alice.ID + "/Nothing", "/V2.0/me"} {
		wantError(t, e.get(t, e.admin, p), http.StatusNotFound, "itemNotFound")
	}
	r := e.call(t, http.MethodPut, "/V1.0/USERS", e.admin, nil)
	wantError(t, r, http.StatusMethodNotAllowed, "methodNotAllowed")
	if allow := r.Header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Errorf("PUT /V1.0/USERS: Allow %q", allow)
	}
	wantError(t, e.call(t, "TRACE", "/v1.0/ME", e.admin, nil), http.StatusMethodNotAllowed, "methodNotAllowed")

	// Outside the API, paths are exact: they are files and probes, not
	// Graph's.
	for _, p := range []string{"/HEALTHZ", "/OpenAPI.json", "/SDK/herald.js", "/UI/", "/Metrics"} {
		wantError(t, e.get(t, e.admin, p), http.StatusNotFound, "itemNotFound")
	}
	wantError(t, e.post(t, "", "/OAuth2/v2.0/token", "grant_type=password", "Content-Type", "application/x-www-form-urlencoded"),
		http.StatusNotFound, "itemNotFound")
}
