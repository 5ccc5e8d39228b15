package httpapi_test

import (
	"net/http"
	"testing"
	"time"
)

// expiresIn checks that an answer's time property lies within a minute of
// now + d.
func expiresIn(t *testing.T, what string, m map[string]any, prop string, d time.Duration) {
	t.Helper()
	got, err := time.Parse(time.RFC3339Nano, str(m, prop))
	if want := time.Now().Add(d); err != nil || got.Before(want.Add(-time.Minute)) || got.After(want.Add(time.Minute)) {
		t.Errorf("%s: %s %q, want about %s", what, prop, str(m, prop), want.UTC().Format(time.RFC3339))
	}
}

// A time given as null is the property left out, its default, as
// encoding/json reads it and as clients that serialise an unset nullable
// property write it; the OpenAPI description says so too (every request
// here is checked against it).
func TestATimeGivenAsNullIsItsDefault(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	n := e.send(t, e.tasks, e.aliceTasks, visual("null expiry", "expirationDateTime", nil)).expect(t, http.StatusCreated).obj(t)
	expiresIn(t, "a send", n, "expirationDateTime", 7*24*time.Hour)

	s := e.post(t, e.alice.Token, "/v1.0/me/notificationSubscriptions", map[string]any{"targetHostName": e.tasks.Host,
		"platformType": "web", "channel": map[string]any{"type": "live"}, "expirationDateTime": nil}).
		expect(t, http.StatusCreated).obj(t)
	expiresIn(t, "a subscription", s, "expirationDateTime", 30*24*time.Hour)

	// In a PATCH, null renews nothing: the expiry stays as it was.
	p := e.patch(t, e.alice.Token, "/v1.0/me/notificationSubscriptions/"+str(s, "id"),
		map[string]any{"deviceName": "renamed", "expirationDateTime": nil}).expect(t, http.StatusOK).obj(t)
	if p["expirationDateTime"] != s["expirationDateTime"] || p["deviceName"] != "renamed" {
		t.Errorf("PATCH with expirationDateTime null: %v, want the expiry kept at %v", p, s["expirationDateTime"])
	}

	c := e.post(t, e.admin, "/v1.0/applications/"+e.tasks.ID+"/addPassword", map[string]any{"displayName": "ci", "endDateTime": nil}).
		expect(t, http.StatusOK).obj(t)
	expiresIn(t, "a client secret", c, "endDateTime", 2*365*24*time.Hour)
}
