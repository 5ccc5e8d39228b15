package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func graphError(w http.ResponseWriter, status int, code, message, target string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": code, "message": message, "target": target,
		"innerError": map[string]string{"request-id": "req-inner", "date": "2026-11-27T09:30:00.000Z"},
	}})
}

// serve starts a test server with mux and returns a client of it that holds
// token.
func serve(t *testing.T, mux http.Handler, token string) *Client {
	t.Helper()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, WithToken(token), WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// decodeStrict decodes a request body the way the server does: unknown
// properties are an error, so the test fails if the client sends fields the
// API does not take.
func decodeStrict(t *testing.T, r *http.Request, v any) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Errorf("request body: %v", err)
	}
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not *client.Error", err, err)
	}
	return e
}

func TestTokenGrantsPostFormWithoutBearer(t *testing.T) {
	tests := []struct {
		name string
		call func(*Client) (*Token, error)
		want map[string]string
	}{
		{
			name: "password",
			call: func(c *Client) (*Token, error) { return c.PasswordToken(context.Background(), "alice", "s3cret pw&") },
			want: map[string]string{"grant_type": "password", "username": "alice", "password": "s3cret pw&"},
		},
		{
			name: "client credentials",
			call: func(c *Client) (*Token, error) {
				return c.ClientCredentialsToken(context.Background(), "app-1", "sec+ret")
			},
			want: map[string]string{"grant_type": "client_credentials", "client_id": "app-1", "client_secret": "sec+ret"},
		},
		{
			name: "refresh",
			call: func(c *Client) (*Token, error) { return c.RefreshToken(context.Background(), "rt-1") },
			want: map[string]string{"grant_type": "refresh_token", "refresh_token": "rt-1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc("POST /oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
				if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
					t.Errorf("Content-Type = %q", ct)
				}
				if a := r.Header.Get("Authorization"); a != "" {
					t.Errorf("token request carries Authorization %q", a)
				}
				if err := r.ParseForm(); err != nil {
					t.Fatal(err)
				}
				got := map[string]string{}
				for k := range r.PostForm {
					got[k] = r.PostForm.Get(k)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("form = %v, want %v", got, tt.want)
				}
				w.Header().Set("Cache-Control", "no-store")
				writeJSON(w, 200, map[string]any{"token_type": "Bearer", "access_token": "at-1", "expires_in": 3600, "refresh_token": "rt-2"})
			})
			tok, err := tt.call(serve(t, mux, "stale-token"))
			if err != nil {
				t.Fatal(err)
			}
			want := Token{TokenType: "Bearer", AccessToken: "at-1", ExpiresIn: 3600, RefreshToken: "rt-2"}
			if *tok != want {
				t.Errorf("token = %+v, want %+v", *tok, want)
			}
		})
	}
}

func TestTokenErrorDecodesOAuthBody(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "wrong user name or password"})
	})
	_, err := serve(t, mux, "").PasswordToken(context.Background(), "alice", "nope")
	e := asError(t, err)
	if e.Status != 400 || e.Code != "invalid_grant" || e.Message != "wrong user name or password" {
		t.Errorf("error = %+v", e)
	}
	if got := e.Error(); got != "invalid_grant: wrong user name or password" {
		t.Errorf("Error() = %q", got)
	}
}

func TestGraphErrorDecoded(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		graphError(w, http.StatusConflict, "nameAlreadyExists", "userPrincipalName alice is taken", "userPrincipalName")
	})
	_, err := serve(t, mux, "tok").CreateUser(context.Background(), NewUser{UserPrincipalName: "alice", Password: "12345678"})
	e := asError(t, err)
	want := Error{Status: 409, Code: "nameAlreadyExists", Message: "userPrincipalName alice is taken", Target: "userPrincipalName", RequestID: "req-inner"}
	if *e != want {
		t.Errorf("error = %+v, want %+v", *e, want)
	}
}

func TestErrorPrefersRequestIDHeaderAndReadsRetryAfter(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/admin/cluster", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("request-id", "req-header")
		w.Header().Set("Retry-After", "3")
		graphError(w, http.StatusServiceUnavailable, "serviceNotAvailable", "no leader", "")
	})
	_, err := serve(t, mux, "tok").Cluster(context.Background())
	e := asError(t, err)
	if e.RequestID != "req-header" || e.RetryAfter != 3*time.Second || e.Code != "serviceNotAvailable" {
		t.Errorf("error = %+v", e)
	}
}

func TestNonHeraldErrorBodyKeepsStatusAndExcerpt(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html>"+strings.Repeat("upstream down ", 100)+"</html>")
	})
	_, err := serve(t, mux, "tok").ListUsers(context.Background())
	e := asError(t, err)
	if e.Status != 502 || e.Code != "" || !strings.HasPrefix(e.Message, "<html>upstream down") || len(e.Message) > 210 {
		t.Errorf("error = %+v", e)
	}
	if !strings.HasPrefix(e.Error(), "HTTP 502: <html>") {
		t.Errorf("Error() = %q", e.Error())
	}
}

func TestEmptyErrorBodyUsesStatusText(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("DELETE /v1.0/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	})
	e := asError(t, serve(t, mux, "tok").DeleteUser(context.Background(), "bob"))
	if e.Status != 403 || e.Message != "Forbidden" {
		t.Errorf("error = %+v", e)
	}
}

func TestListUsersFollowsNextLinkOnSameServer(t *testing.T) {
	var pages []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "Bearer admin-tok" {
			t.Errorf("Authorization = %q", a)
		}
		pages = append(pages, r.URL.RawQuery)
		switch r.URL.Query().Get("$skiptoken") {
		case "":
			// The server's public URL names another host; the client must
			// still ask the server it was given, and keep the token there.
			writeJSON(w, 200, map[string]any{
				"value":           []map[string]any{{"id": "u1", "userPrincipalName": "admin", "roles": []string{"admin"}, "accountEnabled": true, "createdDateTime": "2026-11-27T09:30:00.000Z"}},
				"@odata.nextLink": "https://herald.example.com/v1.0/users?$skiptoken=p2",
			})
		case "p2":
			writeJSON(w, 200, map[string]any{
				"value": []map[string]any{{"id": "u2", "userPrincipalName": "alice", "displayName": "Alice", "roles": []string{"user"}, "accountEnabled": false}},
			})
		default:
			t.Errorf("unexpected query %q", r.URL.RawQuery)
		}
	})
	users, err := serve(t, mux, "admin-tok").ListUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []User{
		{ID: "u1", UserPrincipalName: "admin", Roles: []string{"admin"}, AccountEnabled: true, CreatedDateTime: time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)},
		{ID: "u2", UserPrincipalName: "alice", DisplayName: "Alice", Roles: []string{"user"}},
	}
	if !reflect.DeepEqual(users, want) {
		t.Errorf("users = %+v\nwant %+v", users, want)
	}
	if !reflect.DeepEqual(pages, []string{"$top=1000", "$skiptoken=p2"}) {
		t.Errorf("pages requested = %q", pages)
	}
}

func TestListStopsOnSelfReferencingNextLink(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/applications", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"value": []any{}, "@odata.nextLink": "/v1.0/applications"})
	})
	// The first request is made with the same path, so a server bug that
	// links a page to itself must end the loop instead of spinning.
	if _, err := serve(t, mux, "tok").ListApplications(context.Background()); err == nil {
		t.Fatal("want an error for a nextLink that points at the same page")
	}
}

func TestBaseURLPathIsKeptAsPrefix(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /herald/v1.0/me", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"id": "u1", "userPrincipalName": "alice"})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c, err := New(srv.URL + "/herald/")
	if err != nil {
		t.Fatal(err)
	}
	me, err := c.Me(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if me.UserPrincipalName != "alice" {
		t.Errorf("me = %+v", me)
	}
}

func TestDeleteUserEscapesIDAsOneSegment(t *testing.T) {
	var got string
	mux := http.NewServeMux()
	mux.HandleFunc("DELETE /v1.0/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		got = r.PathValue("id")
		w.WriteHeader(http.StatusNoContent)
	})
	if err := serve(t, mux, "tok").DeleteUser(context.Background(), "team/a b?c"); err != nil {
		t.Fatal(err)
	}
	if got != "team/a b?c" {
		t.Errorf("server saw id %q", got)
	}
}

func TestCreateUserSendsOnlyContractFields(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			UserPrincipalName string   `json:"userPrincipalName"`
			DisplayName       string   `json:"displayName"`
			Password          string   `json:"password"`
			Roles             []string `json:"roles"`
		}
		decodeStrict(t, r, &in)
		if in.UserPrincipalName != "alice" || in.DisplayName != "Alice" || in.Password != "correct horse" || !reflect.DeepEqual(in.Roles, []string{"admin"}) {
			t.Errorf("body = %+v", in)
		}
		writeJSON(w, 201, map[string]any{"id": "u9", "userPrincipalName": "alice", "displayName": "Alice", "roles": []string{"admin"}, "accountEnabled": true, "createdDateTime": "2026-11-27T09:30:00.000Z"})
	})
	u, err := serve(t, mux, "tok").CreateUser(context.Background(), NewUser{UserPrincipalName: "alice", DisplayName: "Alice", Password: "correct horse", Roles: []string{"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != "u9" || !u.AccountEnabled {
		t.Errorf("user = %+v", u)
	}
}

func TestCreateApplicationReturnsTheSecret(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/applications", func(w http.ResponseWriter, r *http.Request) {
		var in NewApplication
		decodeStrict(t, r, &in)
		if in != (NewApplication{DisplayName: "Contoso Tasks", TargetHostName: "tasks.contoso.com"}) {
			t.Errorf("body = %+v", in)
		}
		writeJSON(w, 201, map[string]any{
			"id": "a1", "appId": "app-guid", "displayName": in.DisplayName, "targetHostName": in.TargetHostName,
			"createdDateTime": "2026-11-27T09:30:00.000Z",
			"passwordCredentials": []map[string]any{{
				"keyId": "k1", "displayName": "default", "hint": "abc", "endDateTime": "2028-11-27T09:30:00.000Z", "secretText": "abc-secret",
			}},
		})
	})
	app, err := serve(t, mux, "tok").CreateApplication(context.Background(), NewApplication{DisplayName: "Contoso Tasks", TargetHostName: "tasks.contoso.com"})
	if err != nil {
		t.Fatal(err)
	}
	if app.AppID != "app-guid" || len(app.PasswordCredentials) != 1 || app.PasswordCredentials[0].SecretText != "abc-secret" ||
		!app.PasswordCredentials[0].EndDateTime.Equal(time.Date(2028, 11, 27, 9, 30, 0, 0, time.UTC)) {
		t.Errorf("application = %+v", app)
	}
}

func TestAddPasswordBody(t *testing.T) {
	tests := []struct {
		name, displayName, wantBody string
	}{
		{"named", "ci", `{"displayName":"ci"}`},
		{"unnamed", "", `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc("POST /v1.0/applications/{id}/addPassword", func(w http.ResponseWriter, r *http.Request) {
				if id := r.PathValue("id"); id != "a1" {
					t.Errorf("id = %q", id)
				}
				b, _ := io.ReadAll(r.Body)
				if got := strings.TrimSpace(string(b)); got != tt.wantBody {
					t.Errorf("body = %s, want %s", got, tt.wantBody)
				}
				writeJSON(w, 200, map[string]any{"keyId": "k2", "displayName": tt.displayName, "hint": "xyz", "secretText": "xyz-secret"})
			})
			cred, err := serve(t, mux, "tok").AddPassword(context.Background(), "a1", tt.displayName)
			if err != nil {
				t.Fatal(err)
			}
			if cred.KeyID != "k2" || cred.SecretText != "xyz-secret" {
				t.Errorf("credential = %+v", cred)
			}
		})
	}
}

func TestSendToUserOmitsUnsetAndServerFields(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/users/{id}/notifications", func(w http.ResponseWriter, r *http.Request) {
		if id := r.PathValue("id"); id != "alice" {
			t.Errorf("id = %q", id)
		}
		var in map[string]any
		decodeStrict(t, r, &in)
		want := map[string]any{
			"targetHostName": "tasks.contoso.com",
			"payload":        map[string]any{"visualContent": map[string]any{"title": "Hi", "body": "There"}},
			"priority":       "Low",
		}
		if !reflect.DeepEqual(in, want) {
			t.Errorf("body = %v\nwant %v", in, want)
		}
		w.Header().Set("Location", "/v1.0/me/notifications/n1")
		writeJSON(w, 201, map[string]any{
			"id": "n1", "targetHostName": "tasks.contoso.com", "priority": "Low", "displayTimeToLive": 60,
			"payload":         in["payload"],
			"createdDateTime": "2026-11-27T09:30:00.000Z", "readState": "unread", "userActionState": "noInteraction", "status": "active",
			"fallbackPolicy": map[string]any{"endpointFallback": map[string]any{"platformTypes": "iOS", "fallbackDelayInSeconds": 60}},
		})
	})
	n, err := serve(t, mux, "tok").SendToUser(context.Background(), "alice", &Notification{
		TargetHostName: "tasks.contoso.com",
		Payload:        &Payload{VisualContent: &VisualContent{Title: "Hi", Body: "There"}},
		Priority:       "Low",
	})
	if err != nil {
		t.Fatal(err)
	}
	if n.ID != "n1" || n.ReadState != "unread" || n.DisplayTimeToLive != "60" || n.Payload.VisualContent.Title != "Hi" {
		t.Errorf("notification = %+v", n)
	}
	if got := n.FallbackPolicy.EndpointFallback.PlatformTypes; !reflect.DeepEqual(got, StringList{"iOS"}) {
		t.Errorf("fallback platformTypes = %v", got)
	}
}

func TestSendCarriesUNSIDHeader(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/me/notifications", func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("X-UNS-ID"); got != "unsid-1" {
			t.Errorf("X-UNS-ID = %q", got)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer app-tok" {
			t.Errorf("Authorization = %q", got)
		}
		writeJSON(w, 200, map[string]any{"id": "n1", "appNotificationId": "task-7"})
	})
	n, err := serve(t, mux, "app-tok").Send(context.Background(), "unsid-1", &Notification{AppNotificationID: "task-7", Payload: &Payload{RawContent: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if n.ID != "n1" {
		t.Errorf("notification = %+v", n)
	}
}

func TestClusterDecodes(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/admin/cluster", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{
			"leaderId": "n1", "term": 4, "commitIndex": 120, "slotCount": 1024,
			"nodes": []map[string]any{{
				"id": "n1", "httpAddr": "10.0.0.1:8750", "raftAddr": "10.0.0.1:8751", "state": "leader",
				"voter": true, "lastContactMs": 0, "appliedIndex": 120, "slots": 1024, "liveConnections": 3,
			}},
		})
	})
	st, err := serve(t, mux, "tok").Cluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := ClusterStatus{LeaderID: "n1", Term: 4, CommitIndex: 120, SlotCount: 1024, Nodes: []ClusterNode{{
		ID: "n1", HTTPAddr: "10.0.0.1:8750", RaftAddr: "10.0.0.1:8751", State: "leader", Voter: true,
		AppliedIndex: 120, Slots: 1024, LiveConnections: 3,
	}}}
	if !reflect.DeepEqual(*st, want) {
		t.Errorf("cluster = %+v\nwant %+v", *st, want)
	}
}

func TestClusterMembership(t *testing.T) {
	var added NewClusterNode
	var removed string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/admin/cluster/nodes", func(w http.ResponseWriter, r *http.Request) {
		decodeStrict(t, r, &added)
		writeJSON(w, http.StatusCreated, added)
	})
	mux.HandleFunc("DELETE /v1.0/admin/cluster/nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		removed = r.PathValue("id")
		if removed == "busy" {
			graphError(w, http.StatusConflict, "nameAlreadyExists", "node id \"busy\" is taken", "")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c := serve(t, mux, "tok")
	want := NewClusterNode{ID: "n4", RaftAddr: "10.0.0.4:8751", HTTPAddr: "10.0.0.4:8750"}
	if err := c.AddClusterNode(context.Background(), want); err != nil || added != want {
		t.Fatalf("add: %v, server got %+v", err, added)
	}
	if err := c.RemoveClusterNode(context.Background(), "n/4"); err != nil || removed != "n/4" {
		t.Fatalf("remove: %v, server got %q", err, removed)
	}
	e := asError(t, c.RemoveClusterNode(context.Background(), "busy"))
	if e.Status != http.StatusConflict || e.Code != "nameAlreadyExists" {
		t.Fatalf("remove refused: %+v", e)
	}
}

func TestBackupStreamsBody(t *testing.T) {
	data := bytes.Repeat([]byte{0, 1, 2, 0xff}, 100_000)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/admin/backup", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(data)
	})
	var buf bytes.Buffer
	n, err := serve(t, mux, "tok").Backup(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("got %d bytes, want %d", n, len(data))
	}
}

func TestBackupErrorWritesNothing(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/admin/backup", func(w http.ResponseWriter, r *http.Request) {
		graphError(w, http.StatusForbidden, "accessDenied", "admins only", "")
	})
	var buf bytes.Buffer
	_, err := serve(t, mux, "tok").Backup(context.Background(), &buf)
	if e := asError(t, err); e.Code != "accessDenied" {
		t.Errorf("error = %+v", e)
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %d bytes of an error answer", buf.Len())
	}
}

func TestDoDecodesIntoCallerValue(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("PATCH /v1.0/me/notifications/{id}", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]string
		decodeStrict(t, r, &in)
		writeJSON(w, 200, map[string]string{"id": r.PathValue("id"), "readState": in["readState"]})
	})
	var out map[string]string
	err := serve(t, mux, "tok").Do(context.Background(), http.MethodPatch, "/v1.0/me/notifications/n1", map[string]string{"readState": "read"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if out["id"] != "n1" || out["readState"] != "read" {
		t.Errorf("out = %v", out)
	}
}

func TestWithDoesNotChangeOriginal(t *testing.T) {
	var seen []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/me", func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Get("Authorization"))
		writeJSON(w, 200, map[string]string{"id": "u1"})
	})
	c := serve(t, mux, "one")
	ctx := context.Background()
	if _, err := c.With(WithToken("two")).Me(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Me(ctx); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seen, []string{"Bearer two", "Bearer one"}) {
		t.Errorf("Authorization headers = %q", seen)
	}
}

func TestNewRejectsUnusableURLs(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8750", "ftp://host", "http://", "://x"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q) succeeded", u)
		}
	}
}

func TestStringListAcceptsStringOrArray(t *testing.T) {
	tests := map[string]StringList{`"iOS"`: {"iOS"}, `["iOS"]`: {"iOS"}, `null`: nil}
	for in, want := range tests {
		var got StringList
		if err := json.Unmarshal([]byte(in), &got); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", in, got, want)
		}
	}
	var bad StringList
	if err := json.Unmarshal([]byte(`7`), &bad); err == nil {
		t.Error("a number decoded as a StringList")
	}
}
