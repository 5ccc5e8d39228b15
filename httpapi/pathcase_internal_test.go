package httpapi

import "testing"

// The respelling touches fixed names only, in their places, and keeps an
// escaped id escaped (a %2F in an id is not a segment boundary).
func TestSegmentFoldRespellsFixedNamesOnly(t *testing.T) {
	f := newSegmentFold()
	for _, p := range []string{"/v1.0/users/{id}/sessions", "/v1.0/me/notifications/delta",
		"/v1.0/me/notifications/{id}", "/beta/me/notifications/{id}"} {
		f.add(p)
	}
	for _, c := range []struct {
		in      string
		escaped bool
		want    string
	}{
		{"/V1.0/Users/Alice/SESSIONS", false, "/v1.0/users/Alice/sessions"},
		{"/v1.0/users/Sessions/Sessions", false, "/v1.0/users/Sessions/sessions"},
		{"/V1.0/users/a%2FB/Sessions", true, "/v1.0/users/a%2FB/sessions"},
		{"/v1.0/m%45/Notifications/Delta", true, "/v1.0/me/notifications/delta"},
		{"/BETA/me/notifications/AbC", false, "/beta/me/notifications/AbC"},
		{"/v1.0/me/notifications/delta", false, "/v1.0/me/notifications/delta"},
		{"/V1.0/Nothing/Me", false, "/v1.0/Nothing/Me"},
		{"/HEALTHZ", false, "/HEALTHZ"},
		{"/UI/Index.html", false, "/UI/Index.html"},
		{"/", false, "/"},
	} {
		got, changed := f.respell(c.in, c.escaped)
		if got != c.want || changed != (c.in != c.want) {
			t.Errorf("respell(%q) = %q, %v; want %q", c.in, got, changed, c.want)
		}
	}
}
