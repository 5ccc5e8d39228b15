package httpapi_test

// The authorisation matrix: every endpoint, called as every kind of
// principal, gets exactly the status API.md gives, and no answer carries
// another principal's data. Each principal's data holds unique marker
// strings; every body is searched for the markers its caller may not see,
// and for secrets no one may see.
//
// Adding an endpoint: add one row to authzRows. TestAuthzMatrixCoversEveryRoute
// fails while a registered route has no row.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/credential"
	"github.com/herald-notify/herald/httpapi"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// The principals, in the order every row calls them.
const (
	pAnon     = "anonymous"
	pExpired  = "expired token"
	pRevoked  = "revoked token"
	pDisabled = "disabled user"
	pOtherApp = "other application"
	pOther    = "other user"
	pApp      = "application"
	pUser     = "user"
	pAdmin    = "admin"
)

var principals = []string{pAnon, pExpired, pRevoked, pDisabled, pOtherApp, pOther, pApp, pUser, pAdmin}

// expect is a row's status for each principal.
type expect map[string]int

// authed: the statuses of the five valid principals; no token or a dead
// one is 401.
func authed(user, other, app, otherApp, admin int) expect {
	return expect{pAnon: 401, pExpired: 401, pRevoked: 401, pDisabled: 401,
		pUser: user, pOther: other, pApp: app, pOtherApp: otherApp, pAdmin: admin}
}

// adminOnly: 403 for everyone authenticated but admins.
func adminOnly(status int) expect { return authed(403, 403, 403, 403, status) }

// anyone: an endpoint that does not look at the caller.
func anyone(status int) expect {
	e := expect{}
	for _, p := range principals {
		e[p] = status
	}
	return e
}

// A row's flags.
const (
	fStream     = 1 << iota // a live stream: check the status, then hang up
	fQueryToken             // the token goes in ?access_token= instead of the header
	fOAuth                  // errors are RFC 6749's, not the contract's
	fUNSA                   // both applications name the user's subscription to the first application
	fBackup                 // an admin's backup: holds password hashes by design
	fNoLeak                 // the body is not data (static files): skip the marker search
)

// authzRow is one endpoint with one way of calling it. route is the
// pattern as httpapi.Server.Patterns lists it, with /v1.0 (the /beta twin is
// called too). path and body may hold {placeholders} (authzFixture.expand).
type authzRow struct {
	route, path, body string
	want              expect
	flags             int
}

const (
	newSubBody   = `{"targetHostName":"{hostA}","platformType":"web","deviceName":"probe","channel":{"type":"live"}}`
	newNotifBody = `{"payload":{"visualContent":{"title":"probe"}}}`
)

var authzRows = []authzRow{
	{"POST /oauth2/v2.0/token", "/oauth2/v2.0/token", "", anyone(400), fOAuth},
	{"GET /healthz", "/healthz", "", anyone(200), 0},
	{"GET /readyz", "/readyz", "", anyone(200), 0},
	// The public /metrics takes an admin's token (or the scrape token,
	// node tests): metrics say how busy the server is and who runs it.
	{"GET /metrics", "/metrics", "", adminOnly(200), fNoLeak},
	{"GET /openapi.json", "/openapi.json", "", anyone(200), fNoLeak},
	{"GET /sdk/herald.js", "/sdk/herald.js", "", anyone(200), fNoLeak},
	{"GET /v1.0/webPush/vapidPublicKey", "/v1.0/webPush/vapidPublicKey", "", anyone(200), 0},

	{"GET /v1.0/me", "/v1.0/me", "", authed(200, 200, 403, 403, 200), 0},
	// ?access_token= is for the live stream only (browsers cannot set headers there).
	{"GET /v1.0/me", "/v1.0/me", "", anyone(401), fQueryToken},

	{"POST /v1.0/users", "/v1.0/users", `{"userPrincipalName":"{newUPN}","password":"probe-password"}`, adminOnly(201), 0},
	{"GET /v1.0/users", "/v1.0/users", "", adminOnly(200), 0},
	{"GET /v1.0/users/{id}", "/v1.0/users/{alice}", "", adminOnly(200), 0},
	{"GET /v1.0/users/{id}", "/v1.0/users/{aliceUPN}", "", adminOnly(200), 0},
	{"PATCH /v1.0/users/{id}", "/v1.0/users/{alice}", `{"displayName":"{aliceName}"}`, adminOnly(200), 0},
	{"DELETE /v1.0/users/{id}", "/v1.0/users/{victimUser}", "", adminOnly(204), 0},
	{"GET /v1.0/users/{id}/notificationSubscriptions", "/v1.0/users/{alice}/notificationSubscriptions", "", adminOnly(200), 0},
	{"POST /v1.0/users/{id}/notifications", "/v1.0/users/{alice}/notifications", `{"targetHostName":"{hostA}","payload":{"rawContent":"probe"}}`, adminOnly(201), 0},
	{"GET /v1.0/users/{id}/notifications", "/v1.0/users/{alice}/notifications", "", adminOnly(200), 0},
	{"GET /v1.0/users/{id}/notifications/{nid}", "/v1.0/users/{alice}/notifications/{aliceNotifA}", "", adminOnly(200), 0},
	{"GET /v1.0/users/{id}/notifications/{nid}/deliveries", "/v1.0/users/{alice}/notifications/{aliceNotifA}/deliveries", "", adminOnly(200), 0},
	{"GET /v1.0/admin/users/{id}/lastDeliveries", "/v1.0/admin/users/{alice}/lastDeliveries", "", adminOnly(200), 0},

	{"POST /v1.0/applications", "/v1.0/applications", `{"displayName":"probe","targetHostName":"{newHost}"}`, adminOnly(201), 0},
	{"GET /v1.0/applications", "/v1.0/applications", "", adminOnly(200), 0},
	{"GET /v1.0/applications/{id}", "/v1.0/applications/{appA}", "", adminOnly(200), 0},
	{"GET /v1.0/applications/{id}", "/v1.0/applications/{appAId}", "", adminOnly(200), 0},
	{"PATCH /v1.0/applications/{id}", "/v1.0/applications/{appA}", `{"displayName":"{appaName}"}`, adminOnly(200), 0},
	{"DELETE /v1.0/applications/{id}", "/v1.0/applications/{victimApp}", "", adminOnly(204), 0},
	{"POST /v1.0/applications/{id}/addPassword", "/v1.0/applications/{victimApp}/addPassword", `{"displayName":"probe"}`, adminOnly(200), 0},
	{"POST /v1.0/applications/{id}/removePassword", "/v1.0/applications/{victimApp}/removePassword", `{"keyId":"{victimKey}"}`, adminOnly(204), 0},

	{"POST /v1.0/me/notificationSubscriptions", "/v1.0/me/notificationSubscriptions", newSubBody, authed(201, 201, 403, 403, 201), 0},
	{"GET /v1.0/me/notificationSubscriptions", "/v1.0/me/notificationSubscriptions", "", authed(200, 200, 403, 403, 200), 0},
	{"GET /v1.0/me/notificationSubscriptions/{id}", "/v1.0/me/notificationSubscriptions/{aliceSubA}", "", authed(200, 404, 403, 403, 404), 0},
	{"PATCH /v1.0/me/notificationSubscriptions/{id}", "/v1.0/me/notificationSubscriptions/{aliceSubA}", `{"deviceName":"{aliceDevice}"}`, authed(200, 404, 403, 403, 404), 0},
	{"DELETE /v1.0/me/notificationSubscriptions/{id}", "/v1.0/me/notificationSubscriptions/{newSub}", "", authed(204, 404, 403, 403, 404), 0},

	// Each application names its own subscription of the user, so the
	// other application is refused on what belongs to the first.
	{"POST /v1.0/me/notifications", "/v1.0/me/notifications", newNotifBody, authed(403, 403, 201, 201, 403), 0},
	{"POST /v1.0/me/notifications", "/v1.0/me/notifications", newNotifBody, authed(403, 403, 201, 403, 403), fUNSA},
	{"GET /v1.0/me/notifications", "/v1.0/me/notifications?status=any", "", authed(200, 200, 200, 200, 200), 0},
	{"GET /v1.0/me/notifications", "/v1.0/me/notifications", "", authed(200, 200, 200, 403, 200), fUNSA},
	{"DELETE /v1.0/me/notifications", "/v1.0/me/notifications?groupName=nothing-here", "", authed(403, 403, 204, 204, 403), 0},
	{"DELETE /v1.0/me/notifications", "/v1.0/me/notifications?groupName=nothing-here", "", authed(403, 403, 204, 403, 403), fUNSA},
	{"GET /v1.0/me/notifications/delta", "/v1.0/me/notifications/delta", "", authed(200, 200, 403, 403, 200), 0},
	{"GET /v1.0/me/notifications/stream", "/v1.0/me/notifications/stream", "", authed(200, 200, 403, 403, 200), fStream},
	{"GET /v1.0/me/notifications/stream", "/v1.0/me/notifications/stream", "", authed(200, 200, 403, 403, 200), fStream | fQueryToken},
	{"GET /v1.0/me/notifications/stream", "/v1.0/me/notifications/stream?subscriptionId={aliceSubB}", "", authed(200, 404, 403, 403, 404), fStream},
	{"GET /v1.0/me/notifications/{id}", "/v1.0/me/notifications/{aliceNotifA}", "", authed(200, 404, 200, 404, 404), 0},
	{"GET /v1.0/me/notifications/{id}", "/v1.0/me/notifications/{aliceNotifA}", "", authed(200, 404, 200, 403, 404), fUNSA},
	{"GET /v1.0/me/notifications/{id}/deliveries", "/v1.0/me/notifications/{aliceNotifA}/deliveries", "", authed(200, 404, 200, 404, 200), 0},
	{"GET /v1.0/me/notifications/{id}/deliveries", "/v1.0/me/notifications/{aliceNotifA}/deliveries", "", authed(200, 404, 200, 403, 200), fUNSA},
	{"PATCH /v1.0/me/notifications/{id}", "/v1.0/me/notifications/{aliceNotifA}", `{"readState":"read"}`, authed(200, 404, 403, 403, 404), 0},
	{"DELETE /v1.0/me/notifications/{id}", "/v1.0/me/notifications/{newNotifA}", "", authed(204, 404, 204, 404, 404), 0},
	{"DELETE /v1.0/me/notifications/{id}", "/v1.0/me/notifications/{newNotifA}", "", authed(204, 404, 204, 403, 404), fUNSA},

	// Sessions: a user's own under /me (an admin's /me holds the admin's),
	// anyone's for an admin under /users; {newAliceSession} is a fresh
	// sign-in of alice's for each call that ends one.
	// Any user reads every application's display name and host name (an
	// inbox's labels), which carry the applications' markers by design;
	// that nothing else of them shows is TestMeApplicationsShowsDisplayNames's to check.
	{"GET /v1.0/me/applications", "/v1.0/me/applications", "", authed(200, 200, 403, 403, 200), fNoLeak},
	{"GET /v1.0/me/sessions", "/v1.0/me/sessions", "", authed(200, 200, 403, 403, 200), 0},
	{"GET /v1.0/me/sessions/{sid}", "/v1.0/me/sessions/{aliceSession}", "", authed(200, 404, 403, 403, 404), 0},
	{"DELETE /v1.0/me/sessions/{sid}", "/v1.0/me/sessions/{newAliceSession}", "", authed(204, 404, 403, 403, 404), 0},
	{"GET /v1.0/users/{id}/sessions", "/v1.0/users/{alice}/sessions", "", adminOnly(200), 0},
	{"GET /v1.0/users/{id}/sessions/{sid}", "/v1.0/users/{alice}/sessions/{aliceSession}", "", adminOnly(200), 0},
	{"DELETE /v1.0/users/{id}/sessions/{sid}", "/v1.0/users/{alice}/sessions/{newAliceSession}", "", adminOnly(204), 0},
	{"GET /v1.0/admin/auditLog", "/v1.0/admin/auditLog", "", adminOnly(200), 0},

	{"GET /v1.0/admin/cluster", "/v1.0/admin/cluster", "", adminOnly(200), 0},
	{"POST /v1.0/admin/cluster/nodes", "/v1.0/admin/cluster/nodes", `{}`, adminOnly(400), 0},
	{"DELETE /v1.0/admin/cluster/nodes/{id}", "/v1.0/admin/cluster/nodes/no-such-node", "", adminOnly(404), 0},
	{"GET /v1.0/admin/backup", "/v1.0/admin/backup", "", adminOnly(200), fBackup},

	// The web UI's session endpoints take the session cookie, never a
	// bearer token: with one, the caller is nobody.
	{"GET /ui/session", "/ui/session", "", anyone(200), 0}, // signed out: {"user":null}
	{"POST /ui/session", "/ui/session", `{"username":"{bobUPN}","password":"wrong password"}`, anyone(401), 0},
	{"DELETE /ui/session", "/ui/session", "", anyone(204), 0},
	{"POST /ui/session/refresh", "/ui/session/refresh", "", anyone(401), 0},
	{"/ui/", "/ui/", "", anyone(200), fNoLeak},
	{"/ui/", "/ui/inbox/", "", anyone(200), fNoLeak},
}

// wildcard matches a {name} in a pattern.
var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// TestAuthzMatrixCoversEveryRoute fails while a registered route has no row
// in authzRows (or a row names a route that is gone).
func TestAuthzMatrixCoversEveryRoute(t *testing.T) {
	s := httpapi.New(httpapi.Options{UI: http.NotFoundHandler()})
	covered := map[string]bool{}
	for _, r := range authzRows {
		covered[wildcard.ReplaceAllString(r.route, "{}")] = true
	}
	registered := map[string]bool{}
	for _, p := range s.Patterns() {
		if strings.Contains(p, "/beta/") {
			p = strings.Replace(p, "/beta/", "/v1.0/", 1) // called with every /v1.0 row
		}
		p = wildcard.ReplaceAllString(p, "{}")
		registered[p] = true
		if !covered[p] {
			t.Errorf("route %q has no row in authzRows", p)
		}
	}
	if len(registered) < 40 {
		t.Fatalf("only %d routes registered: %v", len(registered), s.Patterns())
	}
	for r := range covered {
		if !registered[r] {
			t.Errorf("authzRows covers %q, which is not registered", r)
		}
	}
}

// TestEveryRouteGoesThroughHandle keeps Patterns complete: a handler put on
// the mux directly would be a route the matrix never sees.
func TestEveryRouteGoesThroughHandle(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	direct := regexp.MustCompile(`\.mux\.Handle(Func)?\(`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if direct.MatchString(line) && !strings.Contains(line, "s.mux.Handle(pattern, h)") &&
				!strings.Contains(line, `rt.s.mux.Handle(m+" "+p, h)`) && !strings.Contains(line, `rt.s.mux.Handle("/", `) {
				t.Errorf("%s:%d registers on the mux directly; use Server.handle (or the router): %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}

// authzFixture is the data the matrix reads and changes: two users with
// data, two applications, and a principal of each kind.
type authzFixture struct {
	n      *hnode
	tokens map[string]string // principal → access token ("" for anonymous)
	vars   map[string]string
	// markers: each unique string in someone's data → the principals that
	// may see it. secrets: strings no answer may hold.
	markers map[string][]string
	secrets map[string]string // secret → what it is
	// webhookSecrets are secrets no answer but a backup may hold: the
	// server signs or encrypts with them (webhook secrets, push keys), so a
	// restored backup must have them.
	webhookSecrets map[string]bool
	appA           app
	alice          user
	mu             sync.Mutex
	seq            int
}

func newAuthzFixture(t *testing.T) *authzFixture {
	n := start(t, func(c *node.Config) {
		c.Limits.UserRate, c.Limits.UserBurst = 1e6, 1e6
		c.Limits.AppRate, c.Limits.AppBurst = 1e6, 1e6
	})
	fx := &authzFixture{n: n, tokens: map[string]string{pAnon: "", pAdmin: n.admin}, markers: map[string][]string{}, vars: map[string]string{},
		secrets: map[string]string{}, webhookSecrets: map[string]bool{}}
	// Each principal's data is named after its tag and holds its markers.
	tags := map[string]string{pUser: "alice", pOther: "bob", pDisabled: "carol", pRevoked: "dave", pExpired: "erin",
		pApp: "appa", pOtherApp: "appb", pAdmin: "admin"}
	mark := func(owner string, visible ...string) string {
		m := "MARK" + owner + strings.ReplaceAll(resource.NewGUID(), "-", "")[:12]
		fx.markers[m] = append(visible, pAdmin)
		return m
	}
	named := func(who string) user {
		tag := tags[who]
		upn := strings.ToLower(mark(tag, who))
		u := n.newUser(t, upn)
		fx.markers[upn] = fx.markers[strings.ToUpper(upn[:4])+upn[4:]]
		name := mark(tag, who)
		n.patch(t, n.admin, "/v1.0/users/"+u.ID, map[string]any{"displayName": name}).expect(t, 200)
		fx.vars["{"+tag+"Name}"] = name
		fx.secrets[u.Password], fx.secrets[u.Token], fx.secrets[u.Refresh] = who+"'s password", who+"'s access token", who+"'s refresh token"
		return u
	}
	alice, bob := named(pUser), named(pOther)
	carol, dave, erin := named(pDisabled), named(pRevoked), named(pExpired)
	fx.alice = alice
	fx.tokens[pUser], fx.tokens[pOther] = alice.Token, bob.Token
	n.patch(t, n.admin, "/v1.0/users/admin", map[string]any{"displayName": mark("admin")}).expect(t, 200)

	mkApp := func(who string) app {
		tag := tags[who]
		host := strings.ToLower(mark(tag, who)) + ".example.com"
		a := n.newApp(t, host)
		name := mark(tag, who)
		n.patch(t, n.admin, "/v1.0/applications/"+a.ID, map[string]any{"displayName": name}).expect(t, 200)
		fx.vars["{"+tag+"Name}"] = name
		fx.secrets[a.Secret], fx.secrets[a.Token] = who+"'s client secret", who+"'s access token"
		return a
	}
	appA, appB := mkApp(pApp), mkApp(pOtherApp)
	fx.appA = appA
	fx.tokens[pApp], fx.tokens[pOtherApp] = appA.Token, appB.Token

	// Subscriptions (one a webhook, whose secret no one may read again)
	// and notifications of each user from each application.
	subscribe := func(u user, who, host string, webhook bool) string {
		dev := mark(tags[who]+"device", who)
		ch := map[string]any{"type": "live"}
		if webhook {
			ch = map[string]any{"type": "webhook", "url": "https://hooks.example.com/" + dev}
		}
		r := n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", map[string]any{"targetHostName": host,
			"platformType": "web", "deviceName": dev, "channel": ch}).expect(t, http.StatusCreated).obj(t)
		if s := str(r, "secret"); s != "" {
			fx.secrets[s] = who + "'s webhook secret"
			fx.webhookSecrets[s] = true
		}
		if _, ok := fx.vars["{"+tags[who]+"Device}"]; !ok {
			fx.vars["{"+tags[who]+"Device}"] = dev
		}
		return str(r, "id")
	}
	notify := func(a app, sub string, visible ...string) string {
		return n.sendOK(t, a, sub, visual(mark("notification", visible...), "groupName", mark("group", visible...)))
	}
	aliceSubA := subscribe(alice, pUser, appA.Host, true)
	aliceSubB := subscribe(alice, pUser, appB.Host, false)
	// A Web Push subscription whose key material no answer may echo, for
	// an application that never sends (so nothing is pushed off this host).
	quiet := n.newApp(t, "quiet-"+strings.ToLower(mark("quiet"))+".example.com")
	p256dh, auth := "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4", "BTBZMqHH6r4Tts7J_aSIgg"
	n.post(t, alice.Token, "/v1.0/me/notificationSubscriptions", map[string]any{"targetHostName": quiet.Host,
		"platformType": "web", "deviceName": mark("alicedevice", pUser), "channel": map[string]any{"type": "webPush",
			"endpoint": "https://push.example.com/" + mark("aliceendpoint", pUser), "keys": map[string]any{"p256dh": p256dh, "auth": auth}}}).
		expect(t, http.StatusCreated)
	fx.secrets[p256dh], fx.secrets[auth] = "a push subscription's p256dh key", "a push subscription's auth secret"
	fx.webhookSecrets[p256dh], fx.webhookSecrets[auth] = true, true
	fx.vars["{aliceNotifA}"] = notify(appA, aliceSubA, pUser, pApp)
	notify(appB, aliceSubB, pUser, pOtherApp)
	for _, u := range []struct {
		u   user
		who string
	}{{bob, pOther}, {carol, pDisabled}, {dave, pRevoked}, {erin, pExpired}} {
		sub := subscribe(u.u, u.who, appA.Host, false)
		// appA's own X-UNS-ID is alice's, so it never reaches these.
		notify(appA, sub, u.who)
	}

	// The dead principals.
	fx.tokens[pDisabled] = carol.Token
	n.patch(t, n.admin, "/v1.0/users/"+carol.ID, map[string]any{"accountEnabled": false}).expect(t, 200)
	fx.tokens[pRevoked] = revokedToken(t, n, dave)
	expired := resource.NewSecret(32)
	if _, err := n.Store().Propose(context.Background(), &raft.Command{Op: raft.OpIssueTokens, Now: time.Now().UnixNano(),
		Tokens: []raft.TokenGrant{{Hash: credential.HashToken(expired), Record: resource.TokenRecord{
			Kind: resource.TokenAccess, PrincipalType: resource.PrincipalUser, PrincipalID: erin.ID,
			ExpiresAt: resource.At(time.Now().Add(-time.Second))}}}}); err != nil {
		t.Fatalf("issue an expired token: %v", err)
	}
	fx.tokens[pExpired] = expired
	fx.secrets[expired], fx.secrets[n.admin] = "the expired token", "admin's access token"

	fx.vars["{alice}"], fx.vars["{aliceUPN}"] = alice.ID, alice.UPN
	// The wrong-password row signs in as bob: alice's sign-ins (the
	// session rows) use up her share of the per-account throttle.
	fx.vars["{bobUPN}"] = bob.UPN
	fx.vars["{appA}"], fx.vars["{appAId}"], fx.vars["{hostA}"] = appA.ID, appA.AppID, appA.Host
	fx.vars["{aliceSubA}"], fx.vars["{aliceSubB}"] = aliceSubA, aliceSubB
	fx.vars["{aliceSession}"] = currentSession(t, n, alice.Token)
	return fx
}

// currentSession is the id of the session token belongs to.
func currentSession(t *testing.T, n *hnode, token string) string {
	t.Helper()
	for _, s := range n.get(t, token, "/v1.0/me/sessions").expect(t, http.StatusOK).value(t) {
		if s["current"] == true {
			return str(s, "id")
		}
	}
	t.Fatal("no current session in the token's own session list")
	return ""
}

// revokedToken signs u in through the web UI and signs out again: the
// session's access token is then revoked.
func revokedToken(t *testing.T, n *hnode, u user) string {
	t.Helper()
	r := n.post(t, "", "/ui/session", map[string]any{"username": u.UPN, "password": u.Password}).expect(t, http.StatusOK)
	var access string
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == "herald_session" {
			access = c.Value
		}
	}
	csrf := str(r.obj(t), "csrfToken")
	if access == "" || csrf == "" {
		t.Fatalf("UI sign-in: no session cookie or CSRF token: %s", r)
	}
	n.get(t, access, "/v1.0/me").expect(t, http.StatusOK)
	n.call(t, http.MethodDelete, "/ui/session", "", nil, "Cookie", "herald_session="+access, "X-CSRF-Token", csrf).
		expect(t, http.StatusNoContent)
	return access
}

var placeholder = regexp.MustCompile(`\{[A-Za-z]+\}`)

// expand replaces placeholders; the {new…} and {victim…} ones make fresh
// data for this one call, so that a row that deletes something deletes
// something of its own.
func (fx *authzFixture) expand(t *testing.T, s string, call map[string]string) string {
	return placeholder.ReplaceAllStringFunc(s, func(k string) string {
		if v, ok := fx.vars[k]; ok {
			return v
		}
		if v, ok := call[k]; ok {
			return v
		}
		fx.mu.Lock()
		fx.seq++
		seq := fx.seq
		fx.mu.Unlock()
		n := fx.n
		switch k {
		case "{newUPN}":
			call[k] = fmt.Sprintf("probe-user-%d", seq)
		case "{newHost}":
			call[k] = fmt.Sprintf("probe-%d.example.com", seq)
		case "{victimUser}":
			call[k] = n.newUser(t, fmt.Sprintf("victim-%d", seq)).ID
		case "{victimApp}", "{victimKey}":
			a := n.newApp(t, fmt.Sprintf("victim-%d.example.com", seq))
			call["{victimApp}"], call["{victimKey}"] = a.ID, a.KeyID
		case "{newSub}":
			call[k] = n.subscribe(t, fx.alice, fx.appA.Host)
		case "{newAliceSession}":
			// A sign-in each only for the callers that may end it (sign-in
			// is throttled per account); the others aim at alice's own, and
			// a wrong 204 among them fails the row either way.
			if p := call["principal"]; p != pUser && p != pAdmin {
				call[k] = fx.vars["{aliceSession}"]
				break
			}
			call[k] = currentSession(t, n, n.login(t, fx.alice.UPN, fx.alice.Password).Access)
		case "{newNotifA}":
			call[k] = n.sendOK(t, fx.appA, fx.vars["{aliceSubA}"], visual("probe"))
		default:
			t.Fatalf("unknown placeholder %s", k)
		}
		return call[k]
	})
}

var codeOf = map[int]string{400: "invalidRequest", 401: "unauthenticated", 403: "accessDenied", 404: "itemNotFound"}

func TestAuthzMatrix(t *testing.T) {
	fx := newAuthzFixture(t)
	for _, row := range authzRows {
		bases := []string{""}
		if strings.HasPrefix(row.path, "/v1.0/") {
			bases = append(bases, "/beta")
		}
		for _, base := range bases {
			for _, p := range principals {
				name := fmt.Sprintf("%s %s as %s", row.route, base+row.path, p)
				if row.flags&fUNSA != 0 {
					name += " naming the first application's UNSID"
				}
				t.Run(name, func(t *testing.T) { fx.check(t, row, base, p) })
			}
		}
	}
}

func (fx *authzFixture) check(t *testing.T, row authzRow, base, p string) {
	call := map[string]string{"principal": p}
	method, _, ok := strings.Cut(row.route, " ")
	if !ok || strings.HasPrefix(method, "/") {
		method = http.MethodGet
	}
	path := fx.expand(t, row.path, call)
	if base != "" {
		path = base + strings.TrimPrefix(path, "/v1.0")
	}
	var body io.Reader
	if row.body != "" {
		body = strings.NewReader(fx.expand(t, row.body, call))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok := fx.tokens[p]
	if row.flags&fQueryToken != 0 && tok != "" {
		path += "?access_token=" + url.QueryEscape(tok)
		tok = ""
	}
	req, err := http.NewRequestWithContext(ctx, method, fx.n.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if row.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	switch {
	case p == pApp || row.flags&fUNSA != 0 && p == pOtherApp:
		req.Header.Set("X-UNS-ID", fx.vars["{aliceSubA}"])
	case p == pOtherApp:
		req.Header.Set("X-UNS-ID", fx.vars["{aliceSubB}"])
	}
	res, err := fx.n.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	if row.flags&fStream != 0 && res.StatusCode == http.StatusOK {
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("stream answered Content-Type %q", ct)
		}
		cancel() // a live stream without a cursor replays nothing: hang up
		return
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	r := &resp{Status: res.StatusCode, Header: res.Header, Body: b, what: method + " " + path + " as " + p}
	want := row.want[p]
	if r.Status != want {
		t.Fatalf("%s: want %d", r, want)
	}
	if code, ok := codeOf[want]; ok && row.flags&fOAuth == 0 {
		wantError(t, r, want, code)
	}
	fx.searchLeaks(t, r, p, row.flags)
}

// searchLeaks fails if r holds a marker p may not see, or any secret.
func (fx *authzFixture) searchLeaks(t *testing.T, r *resp, p string, flags int) {
	t.Helper()
	if flags&fNoLeak != 0 {
		return
	}
	for m, visible := range fx.markers {
		if !slices.Contains(visible, p) && strings.Contains(string(r.Body), m) {
			t.Errorf("%s: the answer carries %q, another principal's data", r, m)
		}
	}
	for s, what := range fx.secrets {
		if flags&fBackup != 0 && fx.webhookSecrets[s] {
			continue
		}
		if strings.Contains(string(r.Body), s) {
			t.Errorf("%s: the answer carries %s", r, what)
		}
	}
	if flags&fBackup == 0 && strings.Contains(string(r.Body), "$argon2") {
		t.Errorf("%s: the answer carries a password hash", r)
	}
}
