package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

const adminPassword = "e2e-admin-password"

// TestQuickStart walks the README's quick start against the real binary: an
// admin registers an application and a user, the user subscribes and opens
// the live stream over SSE and WebSocket, the application sends, and the
// created, updated and deleted events reach both streams; a resumed SSE
// stream replays what came after its Last-Event-ID.
func TestQuickStart(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{DataDir: t.TempDir(), Env: []string{"HERALD_ADMIN_PASSWORD=" + adminPassword}})
	a := newAPI(srv)

	adminToken := a.signIn(t, "admin", adminPassword)
	var me user
	a.call(t, http.StatusOK, "GET", "/v1.0/me", adminToken, nil, nil, &me)
	if me.UserPrincipalName != "admin" || !slices.Contains(me.Roles, "admin") {
		t.Fatalf("GET /v1.0/me as admin: %+v", me)
	}

	var app application
	a.call(t, http.StatusCreated, "POST", "/v1.0/applications", adminToken,
		map[string]any{"displayName": "Contoso Tasks", "targetHostName": "tasks.contoso.com"}, nil, &app)
	if app.AppID == "" || len(app.PasswordCredentials) != 1 || app.PasswordCredentials[0].SecretText == "" {
		t.Fatalf("created application has no appId or secretText: %+v", app)
	}

	r := a.call(t, http.StatusCreated, "POST", "/v1.0/users", adminToken,
		map[string]any{"userPrincipalName": "alice", "displayName": "Alice", "password": "alice-password", "roles": []string{"user"}}, nil, nil)
	if strings.Contains(strings.ToLower(string(r.Body)), "password") {
		t.Errorf("created user echoes a password: %s", r.Body)
	}

	aliceToken := a.signIn(t, "alice", "alice-password")
	var sub subscription
	a.call(t, http.StatusCreated, "POST", "/v1.0/me/notificationSubscriptions", aliceToken,
		map[string]any{"targetHostName": "tasks.contoso.com", "platformType": "web", "deviceName": "Alice's laptop",
			"channel": map[string]string{"type": "live"}}, nil, &sub)
	if sub.ID == "" || sub.Status != "active" {
		t.Fatalf("subscription: %+v", sub)
	}

	sse := openSSE(t, srv.URL, aliceToken, "")
	ws := openWebSocket(t, srv.URL, aliceToken)

	appToken := a.appToken(t, app.AppID, app.PasswordCredentials[0].SecretText)
	var sent notification
	r = a.call(t, http.StatusCreated, "POST", "/v1.0/me/notifications", appToken,
		map[string]any{"appNotificationId": "task-42", "groupName": "tasks",
			"payload": map[string]any{"visualContent": map[string]string{"title": "Task due", "body": "Review the budget"}}},
		map[string]string{"X-UNS-ID": sub.ID}, &sent)
	if sent.ID == "" || r.Header.Get("Location") != "/v1.0/me/notifications/"+sent.ID {
		t.Fatalf("sent notification %+v, Location %q", sent, r.Header.Get("Location"))
	}

	created := sse.expect(t, "created", sent.ID)
	if n := created.notification(t); n.Payload.VisualContent.Title != "Task due" || n.ReadState != "unread" {
		t.Errorf("created event carries %s", created.Data)
	}
	if wsCreated := ws.expect(t, "created", sent.ID); wsCreated.Cursor != created.Cursor {
		t.Errorf("WebSocket cursor %q, SSE id %q: want the same cursor for the same event", wsCreated.Cursor, created.Cursor)
	}

	var patched notification
	a.call(t, http.StatusOK, "PATCH", "/v1.0/me/notifications/"+sent.ID, aliceToken,
		map[string]string{"readState": "read"}, nil, &patched)
	if patched.ReadState != "read" {
		t.Fatalf("PATCH readState: got %+v", patched)
	}
	updated := sse.expect(t, "updated", sent.ID)
	if n := updated.notification(t); n.ReadState != "read" {
		t.Errorf("updated event on SSE: readState %q, want read", n.ReadState)
	}
	if n := ws.expect(t, "updated", sent.ID).notification(t); n.ReadState != "read" {
		t.Errorf("updated event on WebSocket: readState %q, want read", n.ReadState)
	}

	// A client that lost its connection after the first event resumes with
	// Last-Event-ID and gets what it missed, then live events.
	resumed := openSSE(t, srv.URL, aliceToken, created.Cursor)
	if replayed := resumed.expect(t, "updated", sent.ID); replayed.Cursor != updated.Cursor {
		t.Errorf("replayed event has id %q, want %q", replayed.Cursor, updated.Cursor)
	}

	a.call(t, http.StatusNoContent, "DELETE", "/v1.0/me/notifications/"+sent.ID, aliceToken, nil, nil, nil)
	for _, s := range []*stream{sse, ws, resumed} {
		s.expect(t, "deleted", sent.ID)
	}
	deleted := a.listFeed(t, aliceToken, "status=deleted")
	if len(deleted) != 1 || deleted[0].ID != sent.ID || deleted[0].Status != "deleted" {
		t.Errorf("feed with status=deleted: %+v", deleted)
	}
	if active := a.listFeed(t, aliceToken, ""); len(active) != 0 {
		t.Errorf("feed still lists %d active notifications after DELETE", len(active))
	}

	t.Run("CommandLine", func(t *testing.T) {
		testCommandLine(t, srv, a, adminToken)
	})
}

// testCommandLine drives the herald client commands against the running
// server, with credentials by flag and by environment.
func testCommandLine(t *testing.T, srv *server, a *api, adminToken string) {
	if out := strings.TrimSpace(runCLI(t, nil, "version")); out == "" {
		t.Errorf("herald version printed nothing")
	}

	out := runCLI(t, nil, "users", "add", "--server", srv.URL, "--token", adminToken,
		"--upn", "bob", "--display-name", "Bob", "--user-password", "bob-password")
	if !strings.Contains(out, "created user bob") {
		t.Errorf("users add printed %q", out)
	}

	out = runCLI(t, nil, "apps", "add", "--server", srv.URL, "--username", "admin", "--password", adminPassword,
		"--name", "Fabrikam Chat", "--host", "chat.fabrikam.com")
	if !strings.Contains(out, "appId:") || !strings.Contains(out, "secret:") || !strings.Contains(out, "chat.fabrikam.com") {
		t.Errorf("apps add printed %q", out)
	}

	env := []string{"HERALD_SERVER=" + srv.URL, "HERALD_TOKEN=" + adminToken}
	out = runCLI(t, env, "users", "list")
	for _, upn := range []string{"admin", "alice", "bob"} {
		if !strings.Contains(out, upn) {
			t.Errorf("users list does not show %s:\n%s", upn, out)
		}
	}
	var users []user
	if err := json.Unmarshal([]byte(runCLI(t, env, "users", "list", "--json")), &users); err != nil || len(users) != 3 {
		t.Errorf("users list --json: %d users, %v", len(users), err)
	}

	bobToken := a.signIn(t, "bob", "bob-password")
	bobStream := openSSE(t, srv.URL, bobToken, "")
	id := strings.TrimSpace(runCLI(t, env, "send", "--user", "bob", "--app", "chat.fabrikam.com",
		"--title", "Hello", "--body", "from the command line"))
	if id == "" {
		t.Fatalf("send printed no notification id")
	}
	n := bobStream.expect(t, "created", id).notification(t)
	if n.Payload.VisualContent.Title != "Hello" || n.Payload.VisualContent.Body != "from the command line" {
		t.Errorf("sent by the command line, received %+v", n.Payload)
	}
	var got notification
	a.call(t, http.StatusOK, "GET", "/v1.0/me/notifications/"+id, bobToken, nil, nil, &got)
	if got.ID != id {
		t.Errorf("GET the sent notification: %+v", got)
	}
}
