package httpapi_test

import (
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
)

// signInAs signs upn in with a User-Agent of its own, as a second device.
func (n *hnode) signInAs(t *testing.T, upn, password, agent string) tokens {
	t.Helper()
	var tk tokens
	form := url.Values{"grant_type": {"password"}, "username": {upn}, "password": {password}}
	n.call(t, http.MethodPost, "/oauth2/v2.0/token", "", form.Encode(),
		"Content-Type", "application/x-www-form-urlencoded", "User-Agent", agent).expect(t, http.StatusOK).into(t, &tk)
	return tk
}

// currentSession is the id of the session that token belongs to, from the
// owner's own list.
func (n *hnode) currentSession(t *testing.T, token string) string {
	t.Helper()
	for _, s := range n.get(t, token, "/v1.0/me/sessions").expect(t, http.StatusOK).value(t) {
		if s["current"] == true {
			return str(s, "id")
		}
	}
	t.Fatal("no session is marked current")
	return ""
}

// A user lists their sessions with what tells them apart, and never a
// token; ends one, whose access and refresh tokens fail at once while the
// other session goes on; refreshing keeps a session's id. Another user can
// neither see nor end them; an admin can do both.
func TestSessionsListedAndRevokedByTheirOwnerAndAnAdmin(t *testing.T) {
	n := start(t, nil)
	alice := n.newUser(t, "alice")
	bob := n.newUser(t, "bob")
	phone := n.signInAs(t, alice.UPN, alice.Password, "HeraldPhone/2.1 (Android 15)")

	list := n.get(t, alice.Token, "/v1.0/me/sessions").expect(t, http.StatusOK)
	for _, secret := range []string{alice.Token, alice.Refresh, phone.Access, phone.Refresh, alice.Password} {
		if strings.Contains(string(list.Body), secret) {
			t.Fatalf("the session list shows a token or password: %s", list)
		}
	}
	sessions := list.value(t)
	if len(sessions) != 2 {
		t.Fatalf("alice has %d sessions, want 2: %s", len(sessions), list)
	}
	var phoneID, laptopID string
	for _, s := range sessions {
		keys := make([]string, 0, len(s))
		for k := range s {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if want := []string{"clientAddress", "createdDateTime", "current", "id", "lastUsedDateTime", "userAgent"}; !slices.Equal(keys, want) {
			t.Errorf("session properties %v, want %v", keys, want)
		}
		if str(s, "clientAddress") != "127.0.0.1" || !wireTime.MatchString(str(s, "createdDateTime")) ||
			!wireTime.MatchString(str(s, "lastUsedDateTime")) || str(s, "id") == "" {
			t.Errorf("session %v lacks what tells it apart", s)
		}
		switch {
		case str(s, "userAgent") == "HeraldPhone/2.1 (Android 15)" && s["current"] == false:
			phoneID = str(s, "id")
		case s["current"] == true:
			laptopID = str(s, "id")
		}
	}
	if phoneID == "" || laptopID == "" || phoneID == laptopID {
		t.Fatalf("want one current session and the phone's: %s", list)
	}

	// Bob sees only his own, and cannot touch alice's.
	if got := ids(n.get(t, bob.Token, "/v1.0/me/sessions").expect(t, http.StatusOK).value(t)); len(got) != 1 || slices.Contains(got, phoneID) {
		t.Errorf("bob's sessions %v", got)
	}
	wantError(t, n.del(t, bob.Token, "/v1.0/me/sessions/"+phoneID), http.StatusNotFound, "itemNotFound")
	wantError(t, n.get(t, bob.Token, "/v1.0/users/alice/sessions"), http.StatusForbidden, "accessDenied")
	wantError(t, n.del(t, bob.Token, "/v1.0/users/alice/sessions/"+phoneID), http.StatusForbidden, "accessDenied")
	wantError(t, n.get(t, "", "/v1.0/me/sessions"), http.StatusUnauthorized, "unauthenticated")
	n.get(t, phone.Access, "/v1.0/me").expect(t, http.StatusOK)

	// Alice ends the phone's session: both its tokens fail at once.
	n.del(t, alice.Token, "/v1.0/me/sessions/"+phoneID).expect(t, http.StatusNoContent)
	wantError(t, n.get(t, phone.Access, "/v1.0/me"), http.StatusUnauthorized, "unauthenticated")
	n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {phone.Refresh}}).expect(t, http.StatusBadRequest)
	wantError(t, n.del(t, alice.Token, "/v1.0/me/sessions/"+phoneID), http.StatusNotFound, "itemNotFound")

	// The laptop goes on, and a refresh keeps its session (and moves its
	// last use on).
	before := n.get(t, alice.Token, "/v1.0/me/sessions/"+laptopID).expect(t, http.StatusOK).obj(t)
	var next tokens
	n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {alice.Refresh}}).expect(t, http.StatusOK).into(t, &next)
	after := n.get(t, next.Access, "/v1.0/me/sessions").expect(t, http.StatusOK).value(t)
	if len(after) != 1 || str(after[0], "id") != laptopID || after[0]["current"] != true ||
		str(after[0], "createdDateTime") != str(before, "createdDateTime") || str(after[0], "lastUsedDateTime") < str(before, "lastUsedDateTime") {
		t.Errorf("after a refresh: %v, before %v", after, before)
	}

	// An admin lists alice's sessions and ends the last one.
	adminView := n.get(t, n.admin, "/v1.0/users/alice/sessions").expect(t, http.StatusOK).value(t)
	if got := ids(adminView); !slices.Equal(got, []string{laptopID}) || adminView[0]["current"] != false {
		t.Errorf("the admin sees %v, want only %s, not current", adminView, laptopID)
	}
	n.del(t, n.admin, "/v1.0/users/"+alice.ID+"/sessions/"+laptopID).expect(t, http.StatusNoContent)
	wantError(t, n.get(t, next.Access, "/v1.0/me"), http.StatusUnauthorized, "unauthenticated")
	wantError(t, n.del(t, n.admin, "/v1.0/users/alice/sessions/"+laptopID), http.StatusNotFound, "itemNotFound")
	wantError(t, n.get(t, n.admin, "/v1.0/users/nobody/sessions"), http.StatusNotFound, "itemNotFound")
	if got := n.get(t, n.admin, "/v1.0/users/alice/sessions").expect(t, http.StatusOK).value(t); len(got) != 0 {
		t.Errorf("alice still has sessions %v", got)
	}
	n.get(t, bob.Token, "/v1.0/me").expect(t, http.StatusOK)

	// Both revocations are in the audit log, by whom they were made.
	revokes := n.get(t, n.admin, "/v1.0/admin/auditLog?action=session.revoke").expect(t, http.StatusOK).value(t)
	if len(revokes) != 2 {
		t.Fatalf("audit records of revocations: %v", revokes)
	}
	byActor := map[string]string{}
	for _, r := range revokes {
		byActor[str(r["actor"].(map[string]any), "name")] = str(r, "target")
	}
	if !strings.Contains(byActor["admin"], laptopID) || !strings.Contains(byActor["alice"], phoneID) {
		t.Errorf("revocations by actor: %v", byActor)
	}
}

// A password change ends every session of the user, and their records go
// with them.
func TestPasswordResetEndsEverySession(t *testing.T) {
	n := start(t, nil)
	carol := n.newUser(t, "carol")
	n.signInAs(t, carol.UPN, carol.Password, "second device")
	if got := n.get(t, n.admin, "/v1.0/users/carol/sessions").expect(t, http.StatusOK).value(t); len(got) != 2 {
		t.Fatalf("carol's sessions: %v", got)
	}
	n.patch(t, n.admin, "/v1.0/users/carol", map[string]any{"password": "another-password"}).expect(t, http.StatusOK)
	if got := n.get(t, n.admin, "/v1.0/users/carol/sessions").expect(t, http.StatusOK).value(t); len(got) != 0 {
		t.Errorf("sessions after a password reset: %v", got)
	}
}
