package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// runCLI runs the command line with only env as HERALD_ client variables and
// returns the exit code and what was printed.
func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	for _, k := range []string{"HERALD_SERVER", "HERALD_TOKEN", "HERALD_USERNAME", "HERALD_PASSWORD", "HERALD_DATA_DIR", "HERALD_USER_PASSWORD"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	code = run(append([]string{"herald"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func fakeServer(t *testing.T, mux *http.ServeMux) string {
	t.Helper()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func requireBearer(t *testing.T, r *http.Request, token string) {
	t.Helper()
	if got := r.Header.Get("Authorization"); got != "Bearer "+token {
		t.Errorf("%s %s: Authorization = %q", r.Method, r.URL.Path, got)
	}
}

func TestSendSignsInAndPrintsTheNotificationID(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("grant_type") != "password" || r.FormValue("username") != "admin" || r.FormValue("password") != "pw-12345" {
			t.Errorf("token form = %v", r.Form)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"token_type":"Bearer","access_token":"tok","expires_in":3600}`))
	})
	mux.HandleFunc("POST /v1.0/users/{id}/notifications", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		if r.PathValue("id") != "alice" {
			t.Errorf("user = %q", r.PathValue("id"))
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"targetHostName": "tasks.contoso.com",
			"priority":       "High",
			"payload": map[string]any{
				"visualContent": map[string]any{"title": "Hi", "body": "There"},
				"rawContent":    "{\"task\":7}",
			},
		}
		if !reflect.DeepEqual(body, want) {
			t.Errorf("body = %v\nwant %v", body, want)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"n-1","status":"active"}`))
	})
	code, out, errOut := runCLI(t, map[string]string{"HERALD_SERVER": fakeServer(t, mux)},
		"send", "--username", "admin", "--password", "pw-12345",
		"--user", "alice", "--app", "tasks.contoso.com", "--title", "Hi", "--body", "There", "--raw", `{"task":7}`, "--priority", "High")
	if code != 0 || out != "n-1\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestServerErrorPrintsCodeAndMessage(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/applications", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"error":{"code":"nameAlreadyExists","message":"targetHostName tasks.contoso.com is taken","target":"targetHostName"}}`))
	})
	code, out, errOut := runCLI(t, nil, "apps", "add", "--server", fakeServer(t, mux), "--token", "tok",
		"--name", "Contoso Tasks", "--host", "tasks.contoso.com")
	if code != 1 || out != "" || errOut != "herald: nameAlreadyExists: targetHostName tasks.contoso.com is taken\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestUsersAddTakesTheNewPasswordFromTheFlagAndSignsInFromTheEnvironment(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("username") != "admin" || r.FormValue("password") != "admin-pw" {
			t.Errorf("signed in with %v", r.Form)
		}
		_, _ = w.Write([]byte(`{"token_type":"Bearer","access_token":"tok","expires_in":3600}`))
	})
	mux.HandleFunc("POST /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		var in map[string]any
		_ = json.NewDecoder(r.Body).Decode(&in)
		want := map[string]any{"userPrincipalName": "alice", "displayName": "Alice", "password": "alice-pw", "roles": []any{"admin"}}
		if !reflect.DeepEqual(in, want) {
			t.Errorf("body = %v\nwant %v", in, want)
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"u-2","userPrincipalName":"alice","displayName":"Alice","roles":["admin"],"accountEnabled":true}`))
	})
	env := map[string]string{"HERALD_SERVER": fakeServer(t, mux), "HERALD_USERNAME": "admin", "HERALD_PASSWORD": "admin-pw"}
	code, out, errOut := runCLI(t, env, "users", "add", "--upn", "alice", "--display-name", "Alice", "--user-password", "alice-pw", "--admin")
	if code != 0 || !strings.Contains(out, "alice") || !strings.Contains(out, "u-2") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestClientCommandWithoutCredentialsFails(t *testing.T) {
	code, _, errOut := runCLI(t, nil, "users", "list", "--server", "http://127.0.0.1:1")
	if code != 1 || !strings.HasPrefix(errOut, "herald: no credentials") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestSendWithoutContentFailsBeforeCallingTheServer(t *testing.T) {
	code, _, errOut := runCLI(t, nil, "send", "--server", "http://127.0.0.1:1", "--token", "t", "--user", "a", "--app", "h.example")
	if code != 1 || !strings.Contains(errOut, "--title, --raw") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestListsPrintTablesOrJSON(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		_, _ = w.Write([]byte(`{"value":[{"id":"u-1","userPrincipalName":"admin","roles":["admin"],"accountEnabled":true,"createdDateTime":"2026-11-27T09:30:00.000Z"}]}`))
	})
	mux.HandleFunc("GET /v1.0/admin/cluster", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"leaderId":"n1","term":2,"commitIndex":40,"slotCount":1024,"nodes":[
			{"id":"n1","httpAddr":"10.0.0.1:8750","raftAddr":"10.0.0.1:8751","state":"leader","voter":true,"appliedIndex":40,"slots":512,"liveConnections":3},
			{"id":"n2","httpAddr":"10.0.0.2:8750","raftAddr":"10.0.0.2:8751","state":"follower","voter":true,"lastContactMs":12,"appliedIndex":39,"slots":512}]}`))
	})
	env := map[string]string{"HERALD_SERVER": fakeServer(t, mux), "HERALD_TOKEN": "tok"}

	code, out, errOut := runCLI(t, env, "users", "list")
	if code != 0 {
		t.Fatalf("users list: exit %d, %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "UPN") || !strings.Contains(lines[1], "admin") || !strings.Contains(lines[1], "2026-11-27 09:30") {
		t.Errorf("users list printed %q", out)
	}

	code, out, errOut = runCLI(t, env, "users", "list", "--json")
	var users []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &users) != nil || len(users) != 1 || users[0]["userPrincipalName"] != "admin" {
		t.Errorf("users list --json: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	code, out, errOut = runCLI(t, env, "cluster", "status")
	if code != 0 {
		t.Fatalf("cluster status: exit %d, %s", code, errOut)
	}
	for _, want := range []string{"leader: n1", "term: 2", "commit index: 40", "n2", "follower", "12ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster status lacks %q:\n%s", want, out)
		}
	}
}

func TestBackupWritesTheFileOnlyWhenComplete(t *testing.T) {
	data := bytes.Repeat([]byte("herald-backup "), 10_000)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/admin/backup", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":{"code":"accessDenied","message":"admins only"}}`))
			return
		}
		_, _ = w.Write(data)
	})
	server := fakeServer(t, mux)
	dir := t.TempDir()
	out := filepath.Join(dir, "herald.backup")

	code, _, errOut := runCLI(t, nil, "backup", "--server", server, "--token", "wrong", "--out", out)
	if code != 1 || errOut != "herald: accessDenied: admins only\n" {
		t.Errorf("refused backup: exit %d, stderr %q", code, errOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused backup left %v behind", entries)
	}

	code, _, errOut = runCLI(t, nil, "backup", "--server", server, "--token", "tok", "--out", out)
	if code != 0 {
		t.Fatalf("backup: exit %d, %s", code, errOut)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("backup file holds %d bytes (err %v), want %d", len(got), err, len(data))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %v, want only the backup", entries)
	}

	// An --out in a directory that does not exist is named as given, not
	// by the hidden partial file the backup is first written to.
	missing := filepath.Join(dir, "no-such-dir", "herald.backup")
	code, _, errOut = runCLI(t, nil, "backup", "--server", server, "--token", "tok", "--out", missing)
	want := "herald: --out " + missing + ": cannot write in " + filepath.Dir(missing) + ": no such file or directory\n"
	if code != 1 || errOut != want {
		t.Errorf("backup into a missing directory: exit %d, stderr %q, want %q", code, errOut, want)
	}
}
