package httpapi_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/credential"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
)

// wantOAuthError checks an RFC 6749 §5.2 error answer of the token endpoint.
func wantOAuthError(t *testing.T, r *resp, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: want %d %s", r, status, code)
	}
	var body map[string]any
	r.into(t, &body)
	if body["error"] != code {
		t.Errorf("%s: error %v, want %s", r, body["error"], code)
	}
	for k := range body {
		if k != "error" && k != "error_description" && k != "error_uri" {
			t.Errorf("%s: property %q is not in RFC 6749's error body", r, k)
		}
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", r, cc)
	}
}

func TestTokenPasswordGrantIssuesUserTokensThatAreNotCached(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	r := n.tokenRequest(t, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {"test-admin-password"}}).
		expect(t, http.StatusOK)
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var tk tokens
	r.into(t, &tk)
	if tk.Type != "Bearer" || tk.Expires != 3600 || tk.Access == "" || tk.Refresh == "" || tk.Access == tk.Refresh {
		t.Fatalf("token response %s", r.Body)
	}
	me := n.get(t, tk.Access, "/v1.0/me").expect(t, http.StatusOK).obj(t)
	if me["userPrincipalName"] != "admin" || !slices.Equal(toStrings(me["roles"]), []string{"admin"}) || me["accountEnabled"] != true {
		t.Errorf("/me = %v", me)
	}
	for _, k := range []string{"id", "userPrincipalName", "displayName", "roles", "accountEnabled", "createdDateTime"} {
		if _, ok := me[k]; !ok {
			t.Errorf("/me lacks %s: %v", k, me)
		}
	}
	if strings.Contains(strings.ToLower(string(mustJSON(me))), "password") {
		t.Errorf("/me shows a password: %v", me)
	}
	if !wireTime.MatchString(str(me, "createdDateTime")) {
		t.Errorf("createdDateTime %v is not RFC 3339 with milliseconds", me["createdDateTime"])
	}
}

// A refresh token rotates at each use. The used one works again for a
// minute (raft.RefreshReuseGrace: the client may have lost the answer),
// until a token of its rotation is used, and not after; the sign-in goes
// on with the newest tokens.
func TestRefreshTokenRotatesWithAMinuteOfGrace(t *testing.T) {
	t.Parallel()
	clock := &movableClock{}
	n := start(t, func(c *node.Config) { c.TokenClock = clock.now })
	n.atRules(t, 2)
	first := n.login(t, "admin", "test-admin-password")

	var second tokens
	r := n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.Refresh}}).expect(t, http.StatusOK)
	r.into(t, &second)
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("refresh answer Cache-Control %q", r.Header.Get("Cache-Control"))
	}
	if second.Refresh == "" || second.Refresh == first.Refresh || second.Access == first.Access {
		t.Fatalf("refresh did not rotate: %s", r.Body)
	}
	n.get(t, second.Access, "/v1.0/me").expect(t, http.StatusOK)

	// Again within the minute: a lost answer's retry gets tokens too.
	var retried tokens
	n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.Refresh}}).expect(t, http.StatusOK).into(t, &retried)
	n.get(t, retried.Access, "/v1.0/me").expect(t, http.StatusOK)
	// The client has its answer once it uses a token of it.
	var third tokens
	n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {second.Refresh}}).expect(t, http.StatusOK).into(t, &third)
	n.get(t, third.Access, "/v1.0/me").expect(t, http.StatusOK)
	wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.Refresh}}),
		http.StatusBadRequest, "invalid_grant")

	// Past the minute, the used token is unknown; the newest go on.
	clock.forward(2 * time.Minute)
	wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {second.Refresh}}),
		http.StatusBadRequest, "invalid_grant")
	n.get(t, third.Access, "/v1.0/me").expect(t, http.StatusOK)
	n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {third.Refresh}}).expect(t, http.StatusOK)
}

func TestClientCredentialsGrantAcceptsFormAndHTTPBasic(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "tasks.contoso.com")

	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {a.AppID}, "client_secret": {a.Secret}}
	var tk tokens
	r := n.tokenRequest(t, form).expect(t, http.StatusOK)
	r.into(t, &tk)
	if tk.Type != "Bearer" || tk.Access == "" || tk.Refresh != "" || r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("client_credentials answer %s (Cache-Control %q)", r.Body, r.Header.Get("Cache-Control"))
	}

	var basic tokens
	n.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}}, a.AppID+":"+a.Secret).expect(t, http.StatusOK).into(t, &basic)
	if basic.Access == "" || basic.Access == tk.Access {
		t.Errorf("HTTP Basic answer %+v", basic)
	}
	// An application token is not a user's.
	wantError(t, n.get(t, basic.Access, "/v1.0/me"), http.StatusForbidden, "accessDenied")

	wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {a.AppID},
		"client_secret": {"wrong"}}), http.StatusUnauthorized, "invalid_client")
	wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}}, a.AppID+":wrong"),
		http.StatusUnauthorized, "invalid_client")
	wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {"no-such-app"},
		"client_secret": {a.Secret}}), http.StatusUnauthorized, "invalid_client")
}

func TestTokenEndpointErrorsAreRFC6749Bodies(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	cases := []struct {
		name   string
		form   url.Values
		status int
		code   string
	}{
		{"no grant_type", url.Values{"username": {"admin"}}, 400, "invalid_request"},
		{"grant_type twice", url.Values{"grant_type": {"password", "password"}, "username": {"admin"}, "password": {"test-admin-password"}}, 400, "invalid_request"},
		{"unknown grant_type", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, 400, "unsupported_grant_type"},
		{"password without username", url.Values{"grant_type": {"password"}, "password": {"x"}}, 400, "invalid_request"},
		{"wrong password", url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {"wrong-password"}}, 400, "invalid_grant"},
		{"unknown user", url.Values{"grant_type": {"password"}, "username": {"nobody"}, "password": {"whatever-pw"}}, 400, "invalid_grant"},
		{"refresh without token", url.Values{"grant_type": {"refresh_token"}}, 400, "invalid_request"},
		{"unknown refresh token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"not-a-token"}}, 400, "invalid_grant"},
		{"client_credentials without secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {"x"}}, 400, "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantOAuthError(t, n.tokenRequest(t, c.form), c.status, c.code)
		})
	}
	t.Run("access token used as refresh token", func(t *testing.T) {
		wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {n.admin}}),
			400, "invalid_grant")
	})
	t.Run("JSON instead of a form", func(t *testing.T) {
		wantOAuthError(t, n.post(t, "", "/oauth2/v2.0/token", map[string]string{"grant_type": "password"}),
			400, "invalid_request")
	})
}

func TestRequestsWithoutAValidTokenGet401WithBearerChallenge(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	before := n.snapshot(t, n.admin, "/v1.0/users")
	for _, auth := range []string{"", "Bearer not-a-token", "Basic YWRtaW46eA==", "Bearer " + strings.Repeat("x", 43)} {
		for _, c := range []struct{ method, path string }{
			{"GET", "/v1.0/me"}, {"GET", "/v1.0/users"}, {"POST", "/v1.0/users"}, {"GET", "/v1.0/me/notifications"},
			{"POST", "/v1.0/me/notifications"}, {"GET", "/v1.0/me/notifications/delta"}, {"GET", "/beta/me/notificationSubscriptions"},
		} {
			var body any
			if c.method == "POST" {
				body = map[string]any{"userPrincipalName": "mallory", "password": "mallory-password"}
			}
			r := n.call(t, c.method, c.path, "", body, "Authorization", auth)
			wantError(t, r, http.StatusUnauthorized, "unauthenticated")
		}
	}
	sameSnapshot(t, "users", before, n.snapshot(t, n.admin, "/v1.0/users"))
}

func TestMeReturnsTheCallingUserAlsoUnderBeta(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	u := n.newUser(t, "alice@contoso.com")
	for _, base := range []string{"/v1.0", "/beta"} {
		me := n.get(t, u.Token, base+"/me").expect(t, http.StatusOK).obj(t)
		if me["id"] != u.ID || me["userPrincipalName"] != u.UPN || !slices.Equal(toStrings(me["roles"]), []string{"user"}) {
			t.Errorf("%s/me = %v, want alice", base, me)
		}
	}
}

func TestUsersCRUDByIDAndByUserPrincipalName(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	r := n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": "alice", "displayName": "Alice",
		"password": "alice-password", "roles": []string{"user"}}).expect(t, http.StatusCreated)
	created := r.obj(t)
	id := str(created, "id")
	if id == "" || created["userPrincipalName"] != "alice" || created["displayName"] != "Alice" || created["accountEnabled"] != true {
		t.Fatalf("created user %v", created)
	}
	if strings.Contains(strings.ToLower(string(r.Body)), "password") {
		t.Errorf("create answer shows a password: %s", r.Body)
	}
	if loc := r.Header.Get("Location"); !strings.HasSuffix(loc, "/users/"+id) {
		t.Errorf("Location %q", loc)
	}

	byID := n.get(t, n.admin, "/v1.0/users/"+id).expect(t, http.StatusOK).obj(t)
	byUPN := n.get(t, n.admin, "/v1.0/users/alice").expect(t, http.StatusOK).obj(t)
	if string(mustJSON(byID)) != string(mustJSON(created)) || string(mustJSON(byUPN)) != string(mustJSON(created)) {
		t.Errorf("GET by id %v / by UPN %v differ from created %v", byID, byUPN, created)
	}
	if !slices.Contains(ids(n.get(t, n.admin, "/v1.0/users").expect(t, 200).value(t)), id) {
		t.Errorf("list lacks alice")
	}

	// PATCH by UPN: display name, then password.
	p := n.patch(t, n.admin, "/v1.0/users/alice", map[string]any{"displayName": "Alice A."}).expect(t, http.StatusOK).obj(t)
	if p["displayName"] != "Alice A." || p["id"] != id {
		t.Errorf("patched %v", p)
	}
	n.patch(t, n.admin, "/v1.0/users/"+id, map[string]any{"password": "new-alice-password"}).expect(t, http.StatusOK)
	wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-password"}}),
		400, "invalid_grant")
	alice := n.login(t, "Alice", "new-alice-password") // sign-in names are case-insensitive
	n.get(t, n.admin, "/v1.0/users/ALICE").expect(t, http.StatusOK)

	// roles: a user becomes an admin and may list users.
	wantError(t, n.get(t, alice.Access, "/v1.0/users"), http.StatusForbidden, "accessDenied")
	n.patch(t, n.admin, "/v1.0/users/alice", map[string]any{"roles": []string{"user", "admin"}}).expect(t, http.StatusOK)
	n.get(t, alice.Access, "/v1.0/users").expect(t, http.StatusOK)

	// accountEnabled false: no sign-in, and the token in hand stops working.
	n.patch(t, n.admin, "/v1.0/users/alice", map[string]any{"accountEnabled": false}).expect(t, http.StatusOK)
	wantError(t, n.get(t, alice.Access, "/v1.0/me"), http.StatusUnauthorized, "unauthenticated")
	wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"new-alice-password"}}),
		400, "invalid_grant")
	n.patch(t, n.admin, "/v1.0/users/alice", map[string]any{"accountEnabled": true}).expect(t, http.StatusOK)
	n.login(t, "alice", "new-alice-password")

	// Invalid patches change nothing.
	before := n.snapshot(t, n.admin, "/v1.0/users/alice")
	wantInvalid(t, n.patch(t, n.admin, "/v1.0/users/alice", map[string]any{"password": "short"}), "password")
	wantInvalid(t, n.patch(t, n.admin, "/v1.0/users/alice", map[string]any{"roles": []string{"root"}}), "roles")
	wantInvalid(t, n.patch(t, n.admin, "/v1.0/users/alice", map[string]any{"userPrincipalName": "bob"}), "userPrincipalName")
	wantInvalid(t, n.patch(t, n.admin, "/v1.0/users/alice", map[string]any{"displayName": "ok", "mail": "a@b"}), "mail")
	sameSnapshot(t, "alice", before, n.snapshot(t, n.admin, "/v1.0/users/alice"))
	wantError(t, n.patch(t, n.admin, "/v1.0/users/nobody", map[string]any{"displayName": "x"}), http.StatusNotFound, "itemNotFound")

	// DELETE by UPN.
	n.del(t, n.admin, "/v1.0/users/alice").expect(t, http.StatusNoContent)
	wantError(t, n.get(t, n.admin, "/v1.0/users/"+id), http.StatusNotFound, "itemNotFound")
	wantError(t, n.get(t, n.admin, "/v1.0/users/alice"), http.StatusNotFound, "itemNotFound")
	wantError(t, n.del(t, n.admin, "/v1.0/users/alice"), http.StatusNotFound, "itemNotFound")
}

func TestCreateUserRejectsInvalidAndDuplicateUsersWithoutStoringThem(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": "alice", "password": "alice-password"}).
		expect(t, http.StatusCreated)
	before := n.snapshot(t, n.admin, "/v1.0/users")

	e := wantError(t, n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": "alice", "password": "other-password"}),
		http.StatusConflict, "nameAlreadyExists")
	if e.target() != "userPrincipalName" {
		t.Errorf("409 target %q", e.target())
	}
	// As in Graph, userPrincipalName is unique without regard to case.
	wantError(t, n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": "ALICE", "password": "other-password"}),
		http.StatusConflict, "nameAlreadyExists")
	for _, c := range []struct {
		name   string
		body   any
		target string
	}{
		{"short password", map[string]any{"userPrincipalName": "bob", "password": "1234567"}, "password"},
		{"no password", map[string]any{"userPrincipalName": "bob"}, "password"},
		{"bad UPN", map[string]any{"userPrincipalName": "bob smith", "password": "bob-password"}, "userPrincipalName"},
		{"unknown role", map[string]any{"userPrincipalName": "bob", "password": "bob-password", "roles": []string{"root"}}, "roles"},
		{"unknown property", map[string]any{"userPrincipalName": "bob", "password": "bob-password", "mail": "bob@x"}, "mail"},
		{"wrong type", map[string]any{"userPrincipalName": "bob", "password": "bob-password", "accountEnabled": "yes"}, "accountEnabled"},
		{"array body", `[{"userPrincipalName":"bob","password":"bob-password"}]`, ""},
		{"malformed JSON", `{"userPrincipalName":"bob","password":`, ""},
		{"trailing data", `{"userPrincipalName":"bob","password":"bob-password"} {}`, ""},
		{"not an object", `"bob"`, ""},
		{"empty body", ``, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantInvalid(t, n.post(t, n.admin, "/v1.0/users", c.body), c.target)
		})
	}
	sameSnapshot(t, "users", before, n.snapshot(t, n.admin, "/v1.0/users"))
}

func TestUsersListPagesThroughNextLink(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	want := []string{}
	for _, upn := range []string{"u1", "u2", "u3", "u4"} {
		var u map[string]any
		n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": upn, "password": "password-" + upn}).
			expect(t, http.StatusCreated).into(t, &u)
		want = append(want, str(u, "id"))
	}
	items, pages, last := n.collect(t, n.admin, "/v1.0/users?$top=2")
	if pages != 3 || len(items) != 5 {
		t.Fatalf("paged %d items over %d pages, want 5 over 3", len(items), pages)
	}
	if _, ok := last["@odata.nextLink"]; ok {
		t.Errorf("last page has a nextLink")
	}
	got := ids(items)
	for _, id := range want {
		if !slices.Contains(got, id) {
			t.Errorf("paging missed %s", id)
		}
	}
	slices.Sort(got)
	if len(slices.Compact(got)) != 5 {
		t.Errorf("paging repeated items: %v", got)
	}
	for _, bad := range []string{"$top=0", "$top=1001", "$top=two", "$skiptoken=%25%25"} {
		wantError(t, n.get(t, n.admin, "/v1.0/users?"+bad), http.StatusBadRequest, "invalidRequest")
	}
}

func TestDeletingAUserRemovesItsTokensSubscriptionsAndNotifications(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "tasks.contoso.com")
	alice := n.newUser(t, "alice")
	bob := n.newUser(t, "bob")
	sub := n.subscribe(t, alice, a.Host)
	bobSub := n.subscribe(t, bob, a.Host)
	nid := n.sendOK(t, a, sub, visual("for alice"))
	bobNid := n.sendOK(t, a, bobSub, visual("for bob"))

	n.del(t, n.admin, "/v1.0/users/alice").expect(t, http.StatusNoContent)

	st := n.Store()
	for _, tok := range []string{alice.Token, alice.Refresh} {
		if _, found, err := st.Token(credential.HashToken(tok)); err != nil || found {
			t.Errorf("token of the deleted user still stored (found=%v, err=%v)", found, err)
		}
	}
	if _, found, _ := st.Subscription(sub); found {
		t.Errorf("subscription of the deleted user still stored")
	}
	if _, found, _ := st.Notification(alice.ID, nid); found {
		t.Errorf("notification of the deleted user still stored")
	}
	if page, _ := st.ListNotifications(alice.ID, "", 10, nil); len(page.Items) != 0 {
		t.Errorf("deleted user still has %d notifications", len(page.Items))
	}
	wantError(t, n.get(t, alice.Token, "/v1.0/me"), http.StatusUnauthorized, "unauthenticated")
	wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {alice.Refresh}}), 400, "invalid_grant")
	wantError(t, n.send(t, a, sub, visual("again")), http.StatusForbidden, "accessDenied")
	wantError(t, n.get(t, n.admin, "/v1.0/users/alice/notificationSubscriptions"), http.StatusNotFound, "itemNotFound")

	// Bob is untouched.
	n.get(t, bob.Token, "/v1.0/me/notifications/"+bobNid).expect(t, http.StatusOK)
	n.get(t, bob.Token, "/v1.0/me/notificationSubscriptions/"+bobSub).expect(t, http.StatusOK)

	// Admins cannot delete themselves.
	wantError(t, n.del(t, n.admin, "/v1.0/users/admin"), http.StatusForbidden, "accessDenied")
	n.get(t, n.admin, "/v1.0/me").expect(t, http.StatusOK)
}

func TestUsersWithRoleUserAndApplicationsGet403OnAdminEndpoints(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "tasks.contoso.com")
	u := n.newUser(t, "alice")
	users := n.snapshot(t, n.admin, "/v1.0/users")
	apps := n.snapshot(t, n.admin, "/v1.0/applications")
	for _, tok := range []string{u.Token, a.Token} {
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/v1.0/users", nil},
			{"POST", "/v1.0/users", map[string]any{"userPrincipalName": "mallory", "password": "mallory-password", "roles": []string{"admin"}}},
			{"GET", "/v1.0/users/" + u.ID, nil},
			{"PATCH", "/v1.0/users/alice", map[string]any{"roles": []string{"admin"}}},
			{"DELETE", "/v1.0/users/admin", nil},
			{"GET", "/v1.0/users/alice/notificationSubscriptions", nil},
			{"POST", "/v1.0/users/alice/notifications", visual("x", "targetHostName", a.Host)},
			{"GET", "/v1.0/applications", nil},
			{"POST", "/v1.0/applications", map[string]any{"displayName": "Evil", "targetHostName": "evil.example.com"}},
			{"GET", "/v1.0/applications/" + a.ID, nil},
			{"PATCH", "/v1.0/applications/" + a.ID, map[string]any{"displayName": "Evil"}},
			{"DELETE", "/v1.0/applications/" + a.ID, nil},
			{"POST", "/v1.0/applications/" + a.ID + "/addPassword", map[string]any{"displayName": "steal"}},
			{"POST", "/v1.0/applications/" + a.ID + "/removePassword", map[string]any{"keyId": a.KeyID}},
			{"GET", "/v1.0/admin/cluster", nil},
			{"GET", "/beta/users", nil},
		} {
			wantError(t, n.call(t, c.method, c.path, tok, c.body), http.StatusForbidden, "accessDenied")
		}
	}
	sameSnapshot(t, "users", users, n.snapshot(t, n.admin, "/v1.0/users"))
	sameSnapshot(t, "applications", apps, n.snapshot(t, n.admin, "/v1.0/applications"))
	// The secret still works.
	n.appToken(t, a.AppID, a.Secret)
}

func TestApplicationSecretIsShownOnlyOnCreateAndAddPasswordAndRemovePasswordRevokesIt(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	r := n.post(t, n.admin, "/v1.0/applications", map[string]any{"displayName": "Contoso Tasks", "targetHostName": "tasks.contoso.com"}).
		expect(t, http.StatusCreated)
	var created struct {
		ID                  string `json:"id"`
		AppID               string `json:"appId"`
		DisplayName         string `json:"displayName"`
		TargetHostName      string `json:"targetHostName"`
		CreatedDateTime     string `json:"createdDateTime"`
		PasswordCredentials []map[string]any
	}
	r.into(t, &created)
	if created.ID == "" || created.AppID == "" || created.ID == created.AppID || created.DisplayName != "Contoso Tasks" ||
		created.TargetHostName != "tasks.contoso.com" || !wireTime.MatchString(created.CreatedDateTime) || len(created.PasswordCredentials) != 1 {
		t.Fatalf("created app %s", r.Body)
	}
	cred := created.PasswordCredentials[0]
	for _, k := range []string{"keyId", "displayName", "hint", "endDateTime", "secretText"} {
		if _, ok := cred[k]; !ok {
			t.Errorf("credential lacks %s: %v", k, cred)
		}
	}
	secret1, key1 := str(cred, "secretText"), str(cred, "keyId")
	if secret1 == "" || !strings.HasPrefix(secret1, str(cred, "hint")) {
		t.Errorf("secretText %q, hint %q", secret1, cred["hint"])
	}

	// Never again in reads.
	for _, path := range []string{"/v1.0/applications/" + created.ID, "/v1.0/applications/" + created.AppID, "/v1.0/applications"} {
		body := n.get(t, n.admin, path).expect(t, http.StatusOK).Body
		if strings.Contains(string(body), "secretText") || strings.Contains(string(body), secret1) {
			t.Errorf("GET %s shows the secret: %s", path, body)
		}
	}

	// addPassword: a second secret, shown once, that works.
	add := n.post(t, n.admin, "/v1.0/applications/"+created.ID+"/addPassword", map[string]any{"displayName": "rotation"}).
		expect(t, http.StatusOK).obj(t)
	secret2, key2 := str(add, "secretText"), str(add, "keyId")
	if secret2 == "" || secret2 == secret1 || key2 == "" || add["displayName"] != "rotation" {
		t.Fatalf("addPassword answer %v", add)
	}
	n.appToken(t, created.AppID, secret2)
	n.appToken(t, created.AppID, secret1)
	got := n.get(t, n.admin, "/v1.0/applications/"+created.ID).expect(t, http.StatusOK)
	if strings.Contains(string(got.Body), secret2) || strings.Contains(string(got.Body), "secretText") {
		t.Errorf("GET shows the added secret: %s", got.Body)
	}
	var view struct{ PasswordCredentials []map[string]any }
	got.into(t, &view)
	if len(view.PasswordCredentials) != 2 {
		t.Errorf("app has %d credentials, want 2", len(view.PasswordCredentials))
	}

	// removePassword: the first secret stops working, the second goes on.
	n.post(t, n.admin, "/v1.0/applications/"+created.ID+"/removePassword", map[string]any{"keyId": key1}).expect(t, http.StatusNoContent)
	wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {created.AppID},
		"client_secret": {secret1}}), http.StatusUnauthorized, "invalid_client")
	n.appToken(t, created.AppID, secret2)
	wantError(t, n.post(t, n.admin, "/v1.0/applications/"+created.ID+"/removePassword", map[string]any{"keyId": key1}),
		http.StatusNotFound, "itemNotFound")
	wantInvalid(t, n.post(t, n.admin, "/v1.0/applications/"+created.ID+"/removePassword", map[string]any{}), "keyId")
	wantInvalid(t, n.post(t, n.admin, "/v1.0/applications/"+created.ID+"/addPassword", map[string]any{"secretText": "mine"}), "secretText")
	wantError(t, n.post(t, n.admin, "/v1.0/applications/nope/addPassword", map[string]any{}), http.StatusNotFound, "itemNotFound")
}

func TestApplicationsCRUDAndValidation(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "tasks.contoso.com")
	apps := n.snapshot(t, n.admin, "/v1.0/applications")

	e := wantError(t, n.post(t, n.admin, "/v1.0/applications", map[string]any{"displayName": "Again", "targetHostName": "tasks.contoso.com"}),
		http.StatusConflict, "nameAlreadyExists")
	if e.target() != "targetHostName" {
		t.Errorf("409 target %q", e.target())
	}
	for _, c := range []struct {
		body   any
		target string
	}{
		{map[string]any{"displayName": "Upper", "targetHostName": "Tasks.Contoso.com"}, "targetHostName"},
		{map[string]any{"displayName": "Space", "targetHostName": "tasks contoso"}, "targetHostName"},
		{map[string]any{"displayName": "None"}, "targetHostName"},
		{map[string]any{"targetHostName": "mail.contoso.com"}, "displayName"},
		{map[string]any{"displayName": "X", "targetHostName": "x.contoso.com", "appId": "mine"}, "appId"},
	} {
		wantInvalid(t, n.post(t, n.admin, "/v1.0/applications", c.body), c.target)
	}
	sameSnapshot(t, "applications", apps, n.snapshot(t, n.admin, "/v1.0/applications"))

	p := n.patch(t, n.admin, "/v1.0/applications/"+a.ID, map[string]any{"displayName": "Tasks 2"}).expect(t, http.StatusOK).obj(t)
	if p["displayName"] != "Tasks 2" || p["targetHostName"] != a.Host || strings.Contains(string(mustJSON(p)), "secretText") {
		t.Errorf("patched app %v", p)
	}
	before := n.snapshot(t, n.admin, "/v1.0/applications/"+a.ID)
	wantInvalid(t, n.patch(t, n.admin, "/v1.0/applications/"+a.ID, map[string]any{"targetHostName": "other.contoso.com"}), "targetHostName")
	wantInvalid(t, n.patch(t, n.admin, "/v1.0/applications/"+a.ID, map[string]any{"displayName": ""}), "displayName")
	sameSnapshot(t, "application", before, n.snapshot(t, n.admin, "/v1.0/applications/"+a.ID))
	if got := n.get(t, n.admin, "/v1.0/applications").expect(t, 200).value(t); len(got) != 1 || got[0]["displayName"] != "Tasks 2" {
		t.Errorf("list %v", got)
	}

	n.del(t, n.admin, "/v1.0/applications/"+a.ID).expect(t, http.StatusNoContent)
	wantError(t, n.get(t, n.admin, "/v1.0/applications/"+a.ID), http.StatusNotFound, "itemNotFound")
	wantError(t, n.del(t, n.admin, "/v1.0/applications/"+a.ID), http.StatusNotFound, "itemNotFound")
	wantError(t, n.get(t, a.Token, "/v1.0/me/notifications", "X-UNS-ID", "x"), http.StatusUnauthorized, "unauthenticated")
	wantOAuthError(t, n.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {a.AppID},
		"client_secret": {a.Secret}}), http.StatusUnauthorized, "invalid_client")
	// The host name is free again.
	n.newApp(t, "tasks.contoso.com")
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// A refresh is a Raft commit that leaves the access token it replaces
// valid until it expires, and the API's request limit does not reach the
// token endpoint: one principal's refreshes are bounded, by a bucket of its
// own, and a refused refresh token is not used up.
func TestRefreshesAreRateLimitedPerPrincipal(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	bob := n.newUser(t, "bob@example.com")
	refresh := func(rt string) *resp {
		return n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	}
	rt, refused := bob.Refresh, (*resp)(nil)
	for i := 0; i < 200 && refused == nil; i++ {
		switch r := refresh(rt); r.Status {
		case http.StatusOK:
			var tk tokens
			r.into(t, &tk)
			rt = tk.Refresh
		case http.StatusTooManyRequests:
			refused = r
		default:
			t.Fatalf("refresh %d: %s", i, r)
		}
	}
	if refused == nil {
		t.Fatal("200 refreshes in a row were never refused")
	}
	wantOAuthError(t, refused, http.StatusTooManyRequests, "temporarily_unavailable")
	if s, err := strconv.Atoi(refused.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("429 with Retry-After %q", refused.Header.Get("Retry-After"))
	}

	// Another principal refreshes meanwhile.
	admin := n.login(t, "admin", testnode.AdminPassword)
	refresh(admin.Refresh).expect(t, http.StatusOK)
	// The refused token still works once the bucket refills.
	eventually(t, 10*time.Second, "the refused refresh token taken once the bucket refilled", func() bool {
		r := refresh(rt)
		if r.Status != http.StatusOK && r.Status != http.StatusTooManyRequests {
			t.Fatalf("refresh after the wait: %s", r)
		}
		return r.Status == http.StatusOK
	})
}

// A token request over the body limit is 413, as every other body is, not
// a form "that could not be parsed"; its body is RFC 6749's, as every
// answer of the token endpoint (found by review: it was Graph's).
func TestTokenRequestOverTheBodyLimitIs413(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	big := url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {strings.Repeat("x", 70000)}}
	wantOAuthError(t, n.tokenRequest(t, big), http.StatusRequestEntityTooLarge, "invalid_request")
}

// The token endpoint takes an encoded body as every other endpoint does
// (API.md §1: gzip or deflate; another encoding is 415). Found by review:
// a gzipped form was read as its compressed bytes ("grant_type is
// required") and Content-Encoding: br was ignored.
func TestTokenRequestBodiesMayBeCompressed(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	form := []byte(url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}}.Encode())
	for enc, as := range map[string]string{"gzip": "gzip", "zlib": "deflate", "raw-deflate": "deflate"} {
		r := n.call(t, http.MethodPost, "/oauth2/v2.0/token", "", compress(t, enc, form),
			"Content-Type", "application/x-www-form-urlencoded", "Content-Encoding", as)
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		r.expect(t, http.StatusOK).into(t, &tok)
		if tok.AccessToken == "" {
			t.Errorf("%s: no access token in %s", enc, r)
		}
	}
	wantOAuthError(t, n.call(t, http.MethodPost, "/oauth2/v2.0/token", "", form,
		"Content-Type", "application/x-www-form-urlencoded", "Content-Encoding", "br"), http.StatusUnsupportedMediaType, "invalid_request")
	// Compressed bytes over the limit are 413 too, not a truncated
	// stream's 400 (found by review).
	noise := make([]byte, 200<<10)
	rand.Read(noise)
	big := compress(t, "gzip", append([]byte("grant_type=password&username=admin&password="), noise...))
	if len(big) <= 64<<10 {
		t.Fatalf("random bytes compressed to %d", len(big))
	}
	wantOAuthError(t, n.call(t, http.MethodPost, "/oauth2/v2.0/token", "", big,
		"Content-Type", "application/x-www-form-urlencoded", "Content-Encoding", "gzip"), http.StatusRequestEntityTooLarge, "invalid_request")
	wantOAuthError(t, n.call(t, http.MethodPost, "/oauth2/v2.0/token", "", []byte("not gzip"),
		"Content-Type", "application/x-www-form-urlencoded", "Content-Encoding", "gzip"), http.StatusBadRequest, "invalid_request")
}

// A path's {id} is an id or a name, the id looked up first: a user named
// like another's id, or an application whose host name is another's id or
// appId, would be shadowed by it, and an admin deleting it "by name"
// would delete the other. Such names are refused.
func TestNamesShapedLikeIdsAreRefused(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	victim := n.newUser(t, "victim")
	wantInvalid(t, n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": victim.ID, "password": "12345678"}),
		"userPrincipalName")
	wantInvalid(t, n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": strings.ToUpper(victim.ID), "password": "12345678"}),
		"userPrincipalName")
	a := n.newApp(t, "tasks.contoso.com")
	for _, id := range []string{a.ID, a.AppID} {
		wantInvalid(t, n.post(t, n.admin, "/v1.0/applications", map[string]any{"displayName": "x", "targetHostName": id}),
			"targetHostName")
	}
	n.get(t, n.admin, "/v1.0/users/"+victim.ID).expect(t, http.StatusOK)
	// Names that only look a little like one are fine.
	n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": victim.ID[:35], "password": "12345678"}).
		expect(t, http.StatusCreated)
}

// Display names show in lists, the audit log and the UI: no control
// characters, as identifiers have none.
func TestDisplayNamesRefuseControlCharacters(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	wantInvalid(t, n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": "eve", "displayName": "Eve\nadmin",
		"password": "12345678"}), "displayName")
	wantInvalid(t, n.post(t, n.admin, "/v1.0/applications", map[string]any{"displayName": "a\x00b", "targetHostName": "e.contoso.com"}),
		"displayName")
	n.newUser(t, "frank")
	wantInvalid(t, n.patch(t, n.admin, "/v1.0/users/frank", map[string]any{"displayName": "F\x07"}), "displayName")
}

// A node that holds no user yet (a cluster that has just formed, whose
// first admin is created a moment later) answers a sign-in 503 with
// Retry-After, not "the password is wrong": the admin's password is right.
func TestSignInBeforeTheFirstAdminIsRetryLater(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	me := n.get(t, n.admin, "/v1.0/me").expect(t, http.StatusOK).obj(t)
	if _, err := n.Store().Propose(context.Background(), &raft.Command{Op: raft.OpDeleteUser, UserID: str(me, "id")}); err != nil {
		t.Fatalf("remove the only user, as if it were not made yet: %v", err)
	}
	r := n.tokenRequest(t, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}})
	wantOAuthError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
	if r.Header.Get("Retry-After") == "" {
		t.Fatalf("%s: no Retry-After", r)
	}
	ui := n.post(t, "", "/ui/session", map[string]string{"username": "admin", "password": testnode.AdminPassword})
	wantError(t, ui, http.StatusServiceUnavailable, "serviceNotAvailable")
}

// A secret's endDateTime whose offset carries it past the year 9999 in UTC
// ("9999-12-31T23:59:59-23:59" is 10000-01-01T23:58:59Z) is refused: it
// was accepted, written into the Raft entry in five-digit years that no
// node could read back, and the entry skipped with a 500 for the request
// and for every other command batched into it.
func TestAddPasswordRefusesAnEndDateTimeBeyondTheYear9999(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "far.contoso.com")
	for _, end := range []string{"9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59.999-00:01"} {
		wantInvalid(t, n.post(t, n.admin, "/v1.0/applications/"+a.ID+"/addPassword",
			map[string]any{"displayName": "far", "endDateTime": end}), "endDateTime")
	}
	add := n.post(t, n.admin, "/v1.0/applications/"+a.ID+"/addPassword",
		map[string]any{"displayName": "last", "endDateTime": "9999-12-31T23:59:59.999+01:00"}).expect(t, http.StatusOK).obj(t)
	if add["endDateTime"] != "9999-12-31T22:59:59.999Z" {
		t.Errorf("endDateTime %v", add["endDateTime"])
	}
	var view struct{ PasswordCredentials []map[string]any }
	n.get(t, n.admin, "/v1.0/applications/"+a.ID).expect(t, http.StatusOK).into(t, &view)
	if len(view.PasswordCredentials) != 2 {
		t.Errorf("app has %d credentials, want 2", len(view.PasswordCredentials))
	}
}
