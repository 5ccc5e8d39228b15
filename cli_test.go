package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/internal/testcerts"
	"github.com/herald-notify/herald/raft"
)

// withStdin makes text the standard input of the commands the test runs.
func withStdin(t *testing.T, text string) {
	t.Helper()
	old := stdin
	stdin = strings.NewReader(text)
	t.Cleanup(func() { stdin = old })
}

func TestUnknownCommandSaysSoAndListsTheCommands(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "frobnicate")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, `herald: unknown command "frobnicate"`) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, c := range []string{"serve", "send", "users", "apps", "cluster", "backup", "restore", "healthcheck", "version"} {
		if !strings.Contains(errOut, c) {
			t.Errorf("the list of commands lacks %s: %q", c, errOut)
		}
	}
	code, _, errOut = runCLI(t, nil, "users", "frob")
	if code != 1 || !strings.HasPrefix(errOut, `herald: users: unknown command "frob"`) || !strings.Contains(errOut, "add, list, remove") {
		t.Errorf("unknown subcommand: exit %d, stderr %q", code, errOut)
	}
	// Flags and help still reach urfave/cli.
	if code, out, _ := runCLI(t, nil, "help", "send"); code != 0 || !strings.Contains(out, "--user") {
		t.Errorf("help send: exit %d, %q", code, out)
	}
}

// A misspelt flag is named as typed, with the closest flag of that command,
// as a config file's misspelt key is; it used to read "flag provided but
// not defined: -tls-crt", with one dash and no hint.
func TestUnknownFlagSuggestsTheClosest(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--tls-crt", "x.pem"}, "herald: unknown flag --tls-crt (did you mean --tls-cert?); herald serve --help lists the flags"},
		{[]string{"users", "add", "--upm", "bob"}, "herald: unknown flag --upm (did you mean --upn?); herald users add --help lists the flags"},
		{[]string{"backup", "--frobnicate"}, "herald: unknown flag --frobnicate; herald backup --help lists the flags"},
		{[]string{"backup", "--out"}, "herald: --out needs a value"},
		{[]string{"serve", "--max-conns", "2.5"}, `herald: --max-conns "2.5": not a valid value for it`},
	} {
		code, out, errOut := runCLI(t, nil, tc.args...)
		if code != 1 || out != "" || strings.TrimSpace(errOut) != tc.want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", tc.args, code, out, errOut, tc.want)
		}
	}
}

// A required flag left out is named in one line; urfave/cli printed the
// command's whole help first, and "Required flag \"out\" not set" last.
func TestMissingRequiredFlagsAreNamedWithoutTheHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backup"}, "herald: backup: --out is required (herald backup --help describes it)\n"},
		{[]string{"restore", "--in", "-"}, "herald: restore: --data-dir is required (herald restore --help describes it)\n"},
		{[]string{"cluster", "join", "--id", "n4"}, "herald: cluster join: --raft-addr, --http-addr are required (herald cluster join --help describes them)\n"},
	} {
		code, out, errOut := runCLI(t, nil, tc.args...)
		if code != 1 || out != "" || errOut != tc.want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", tc.args, code, out, errOut, tc.want)
		}
	}
	// Help, and a flag given through its variable, are not refused here.
	if code, out, _ := runCLI(t, nil, "backup", "--help"); code != 0 || !strings.Contains(out, "--out") {
		t.Errorf("backup --help: exit %d, %q", code, out)
	}
}

func TestServerAcceptsHostAndPort(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		_, _ = w.Write([]byte(`{"value":[{"id":"u-1","userPrincipalName":"admin"}]}`))
	})
	hostPort := strings.TrimPrefix(fakeServer(t, mux), "http://")
	code, out, errOut := runCLI(t, map[string]string{"HERALD_TOKEN": "tok"}, "users", "list", "--server", hostPort)
	if code != 0 || !strings.Contains(out, "admin") {
		t.Errorf("--server %s: exit %d, stdout %q, stderr %q", hostPort, code, out, errOut)
	}
	for _, bad := range []string{"ftp://x.example", "http://"} {
		code, _, errOut := runCLI(t, map[string]string{"HERALD_TOKEN": "tok"}, "users", "list", "--server", bad)
		if code != 1 || !strings.Contains(errOut, "--server") {
			t.Errorf("--server %s: exit %d, stderr %q", bad, code, errOut)
		}
	}
	for in, want := range map[string]string{
		"127.0.0.1:8750":              "http://127.0.0.1:8750",
		"herald.example.com":          "http://herald.example.com",
		"https://herald.example.com/": "https://herald.example.com",
		"[::1]:8750":                  "http://[::1]:8750",
	} {
		if got, err := normalizeServer(in); err != nil || got != want {
			t.Errorf("normalizeServer(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// appsServer is an admin API with one application, recording the
// notifications and secret requests it gets.
func appsServer(t *testing.T, sent *[]map[string]any, secretFor *string) string {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/applications", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		_, _ = w.Write([]byte(`{"value":[{"id":"0f5c1a7e-1111-4222-8333-444455556666","appId":"9d2a4b6c-aaaa-4bbb-8ccc-ddddeeeeffff",
			"displayName":"Contoso Tasks","targetHostName":"tasks.contoso.com"}]}`))
	})
	mux.HandleFunc("POST /v1.0/users/{id}/notifications", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		*sent = append(*sent, body)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"n-1"}`))
	})
	mux.HandleFunc("POST /v1.0/applications/{id}/addPassword", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		*secretFor = r.PathValue("id")
		_, _ = w.Write([]byte(`{"keyId":"k-1","secretText":"s3cret"}`))
	})
	return fakeServer(t, mux)
}

func TestAppFlagTakesTheHostTheAppIDOrTheID(t *testing.T) {
	var sent []map[string]any
	var secretFor string
	env := map[string]string{"HERALD_SERVER": appsServer(t, &sent, &secretFor), "HERALD_TOKEN": "tok"}
	for _, ref := range []string{"tasks.contoso.com", "9d2a4b6c-aaaa-4bbb-8ccc-ddddeeeeffff", "0f5c1a7e-1111-4222-8333-444455556666"} {
		sent = nil
		code, _, errOut := runCLI(t, env, "send", "--user", "alice", "--app", ref, "--raw", "x")
		if code != 0 || len(sent) != 1 || sent[0]["targetHostName"] != "tasks.contoso.com" {
			t.Errorf("send --app %s: exit %d, %q; server got %v", ref, code, errOut, sent)
		}
		secretFor = ""
		code, out, errOut := runCLI(t, env, "apps", "add-secret", "--app", ref)
		// The server takes the id or the appId in the path; a host name
		// is looked up.
		want := ref
		if ref == "tasks.contoso.com" {
			want = "0f5c1a7e-1111-4222-8333-444455556666"
		}
		if code != 0 || secretFor != want || !strings.Contains(out, "s3cret") {
			t.Errorf("add-secret --app %s: exit %d, %q; server got %q, want %q", ref, code, errOut, secretFor, want)
		}
	}
	code, _, errOut := runCLI(t, env, "apps", "add-secret", "--app", "chat.fabrikam.com")
	if code != 1 || !strings.Contains(errOut, `"chat.fabrikam.com"`) || !strings.Contains(errOut, "apps list") {
		t.Errorf("unknown app: exit %d, %q", code, errOut)
	}
}

func TestSendReadsTheBodyFromStandardInput(t *testing.T) {
	var sent []map[string]any
	var secretFor string
	env := map[string]string{"HERALD_SERVER": appsServer(t, &sent, &secretFor), "HERALD_TOKEN": "tok"}

	withStdin(t, "line one\nline two\n")
	code, _, errOut := runCLI(t, env, "send", "--user", "alice", "--app", "tasks.contoso.com", "--title", "T", "--body", "-")
	if code != 0 || len(sent) != 1 {
		t.Fatalf("exit %d, %q, sent %v", code, errOut, sent)
	}
	vc := sent[0]["payload"].(map[string]any)["visualContent"].(map[string]any)
	if vc["body"] != "line one\nline two" {
		t.Errorf("body = %q", vc["body"])
	}

	withStdin(t, `{"task":7}`)
	code, _, errOut = runCLI(t, env, "send", "--user", "alice", "--app", "tasks.contoso.com", "--raw", "-")
	if code != 0 || len(sent) != 2 || sent[1]["payload"].(map[string]any)["rawContent"] != `{"task":7}` {
		t.Errorf("--raw -: exit %d, %q, sent %v", code, errOut, sent)
	}

	code, _, errOut = runCLI(t, env, "send", "--user", "alice", "--app", "tasks.contoso.com", "--title", "T", "--body", "-", "--raw", "-")
	if code != 1 || !strings.Contains(errOut, "only one") || len(sent) != 2 {
		t.Errorf("both from stdin: exit %d, %q", code, errOut)
	}
}

func TestUsersAddSignsInWithPasswordAsEveryCommand(t *testing.T) {
	var created map[string]any
	var signedIn []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		signedIn = append(signedIn, r.FormValue("username")+"/"+r.FormValue("password"))
		_, _ = w.Write([]byte(`{"token_type":"Bearer","access_token":"tok","expires_in":3600}`))
	})
	mux.HandleFunc("POST /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		_ = json.NewDecoder(r.Body).Decode(&created)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"u-2","userPrincipalName":"bob","roles":["user"]}`))
	})
	server := fakeServer(t, mux)

	code, _, errOut := runCLI(t, nil, "users", "add", "--server", server, "--username", "admin", "--password", "admin-pw",
		"--upn", "bob", "--user-password", "bob-password")
	if code != 0 || created["password"] != "bob-password" || !slices.Equal(signedIn, []string{"admin/admin-pw"}) {
		t.Errorf("exit %d, %q; created %v, signed in %v", code, errOut, created, signedIn)
	}
	// The old name of the sign-in password still works, unlisted.
	signedIn = nil
	code, _, errOut = runCLI(t, nil, "users", "add", "--server", server, "--username", "admin", "--auth-password", "admin-pw",
		"--upn", "bob", "--user-password", "bob-password")
	if code != 0 || !slices.Equal(signedIn, []string{"admin/admin-pw"}) {
		t.Errorf("--auth-password: exit %d, %q, signed in %v", code, errOut, signedIn)
	}
	if _, out, _ := runCLI(t, nil, "users", "add", "--help"); strings.Contains(out, "auth-password") {
		t.Errorf("help lists the old flag:\n%s", out)
	}
	// Without the new user's password nothing is sent.
	signedIn, created = nil, nil
	code, _, errOut = runCLI(t, nil, "users", "add", "--server", server, "--token", "tok", "--upn", "bob", "--password", "bob-password")
	if code != 1 || !strings.Contains(errOut, "--user-password") || created != nil {
		t.Errorf("without --user-password: exit %d, %q, created %v", code, errOut, created)
	}
}

func TestVersionComesFromTheBuild(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	v := fromBuildInfo("", info, true)
	long := v.Long()
	for _, want := range []string{"herald v1.4.0\n", "commit: 0123456789abcdef0123456789abcdef01234567 (with uncommitted changes)\n",
		"commit time: 2026-12-01T10:00:00Z\n", "go: go1.26.8\n"} {
		if !strings.Contains(long, want) {
			t.Errorf("version output lacks %q:\n%s", want, long)
		}
	}
	if s := v.Short(); s != "v1.4.0 (0123456789ab-modified, go1.26.8)" {
		t.Errorf("short version %q", s)
	}
	// -ldflags "-X main.version=..." beats the module version.
	if v := fromBuildInfo("v2.0.0-rc1", info, true); v.Version != "v2.0.0-rc1" || v.Revision == "" {
		t.Errorf("stamped version: %+v", v)
	}
	// go run and go test record "(devel)".
	if v := fromBuildInfo("", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true); v.Version != "devel" {
		t.Errorf("unstamped version: %+v", v)
	}

	code, out, _ := runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "herald ") || !strings.Contains(out, "go: go1.") {
		t.Errorf("herald version: exit %d, %q", code, out)
	}
}

func TestHealthcheckProbesTheLocalNode(t *testing.T) {
	ready := false
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready {
			http.Error(w, `{"error":{"code":"serviceNotAvailable","message":"Not ready: no leader."}}`, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	// hide clears the variables a run through env set.
	var hide map[string]string
	unset := func() {
		for _, k := range []string{"HERALD_HTTP_ADDR", "HERALD_CONFIG"} {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	unset()

	// As the container runs it: the address from the environment, a
	// wildcard host probed on loopback.
	env := map[string]string{"HERALD_HTTP_ADDR": ":" + port}
	code, out, errOut := runCLI(t, env, "healthcheck")
	if code != 0 || !strings.Contains(out, "/healthz: 200 OK") {
		t.Errorf("healthcheck: exit %d, %q, %q", code, out, errOut)
	}
	code, _, errOut = runCLI(t, env, "healthcheck", "--ready")
	if code != 1 || !strings.Contains(errOut, "503") || !strings.Contains(errOut, "no leader") {
		t.Errorf("healthcheck --ready before ready: exit %d, %q", code, errOut)
	}
	ready = true
	if code, _, errOut = runCLI(t, env, "healthcheck", "--ready"); code != 0 {
		t.Errorf("healthcheck --ready: exit %d, %q", code, errOut)
	}

	// The address from serve's config file, and from serve's flag.
	unset()
	cfg := writeFile(t, "http-addr: \"0.0.0.0:"+port+"\"\napp-rate: 0\nlimits:\n  user-rate: 0\n")
	if code, _, errOut = runCLI(t, hide, "healthcheck", "--config", cfg); code != 0 {
		t.Errorf("healthcheck --config: exit %d, %q", code, errOut)
	}
	if code, _, errOut = runCLI(t, hide, "healthcheck", "--http-addr", "127.0.0.1:"+port, "--data-dir", "/nonexistent"); code != 0 {
		t.Errorf("healthcheck with serve's flags: exit %d, %q", code, errOut)
	}

	// --url with a server's address alone probes its /healthz or /readyz,
	// not its / (found by review: a redirect to the web UI, exit 1).
	if code, out, errOut = runCLI(t, hide, "healthcheck", "--url", srv.URL); code != 0 || !strings.Contains(out, "/healthz: 200 OK") {
		t.Errorf("healthcheck --url %s: exit %d, %q, %q", srv.URL, code, out, errOut)
	}
	if code, out, errOut = runCLI(t, hide, "healthcheck", "--ready", "--url", srv.URL+"/"); code != 0 || !strings.Contains(out, "/readyz: 200 OK") {
		t.Errorf("healthcheck --ready --url %s/: exit %d, %q, %q", srv.URL, code, out, errOut)
	}
	if code, out, errOut = runCLI(t, hide, "healthcheck", "--url", "127.0.0.1:"+port); code != 0 || !strings.Contains(out, "/healthz: 200 OK") {
		t.Errorf("healthcheck --url host:port: exit %d, %q, %q", code, out, errOut)
	}

	// Nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	if code, _, errOut = runCLI(t, hide, "healthcheck", "--http-addr", closed); code != 1 || !strings.Contains(errOut, "refused") {
		t.Errorf("healthcheck of a closed port: exit %d, %q", code, errOut)
	}
}

// A node serving HTTPS answers the probe's plain HTTP with a 400; the probe
// then asks over HTTPS.
func TestHealthcheckFollowsANodeThatServesHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.TLS == nil {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the probe's first, plain request
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	code, out, errOut := runCLI(t, map[string]string{"HERALD_HTTP_ADDR": addr}, "healthcheck")
	if code != 0 || !strings.Contains(out, "200 OK") {
		t.Errorf("exit %d, %q, %q", code, out, errOut)
	}
}

// A node configured for HTTPS is probed over HTTPS at once: a plain
// request first had the node log a TLS handshake error at every probe.
func TestHealthcheckOfAnHTTPSNodeSendsNoPlainRequest(t *testing.T) {
	var plain atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	srv.Config.ErrorLog = log.New(writerFunc(func(p []byte) (int, error) {
		if bytes.Contains(p, []byte("HTTP request to an HTTPS server")) {
			plain.Add(1)
		}
		return len(p), nil
	}), "", 0)
	srv.StartTLS()
	defer srv.Close()
	files := testcerts.NewCA(t, "probe-ca").Server(t, "node", "127.0.0.1")
	env := map[string]string{"HERALD_HTTP_ADDR": srv.Listener.Addr().String(),
		"HERALD_TLS_CERT": files.Cert, "HERALD_TLS_KEY": files.Key}
	code, out, errOut := runCLI(t, env, "healthcheck")
	if code != 0 || !strings.HasPrefix(out, "https://") || !strings.Contains(out, "200 OK") {
		t.Errorf("exit %d, %q, %q", code, out, errOut)
	}
	if n := plain.Load(); n != 0 {
		t.Errorf("the probe sent %d plain HTTP requests to a node configured for HTTPS", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestSecondServeOnADataDirectoryInUseIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	release, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, nil, "serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "another herald is using "+dir) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "badger")); err == nil {
		t.Errorf("the refused serve opened the database")
	}
	release()
	again, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}

// makeBackup writes a backup of a Badger database holding one key.
func makeBackup(t *testing.T) []byte {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("test/key"), []byte("restored value")) }); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := raft.WriteBackup(context.Background(), db, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// restoredValue reads the key makeBackup wrote from a restored directory.
func restoredValue(t *testing.T, dir string) string {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "badger")).WithLogger(nil))
	if err != nil {
		t.Fatalf("open restored badger: %v", err)
	}
	defer db.Close()
	var v []byte
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte("test/key"))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestRestoreIsAllOrNothingAndNeedsForceToReplace(t *testing.T) {
	backup := makeBackup(t)
	file := filepath.Join(t.TempDir(), "herald.backup")
	if err := os.WriteFile(file, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(t.TempDir(), "truncated.backup")
	if err := os.WriteFile(truncated, backup[:len(backup)/2], 0o600); err != nil {
		t.Fatal(err)
	}

	// A broken backup into a new directory leaves no directory.
	dir := filepath.Join(t.TempDir(), "restored")
	code, _, errOut := runCLI(t, nil, "restore", "--in", truncated, "--data-dir", dir)
	if code != 1 || errOut == "" {
		t.Fatalf("truncated backup: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a failed restore left %s behind: %v (%v)", dir, err, listDir(t, dir))
	}
	// Into an existing empty directory (a mount point), it stays empty.
	empty := t.TempDir()
	if code, _, _ := runCLI(t, nil, "restore", "--in", truncated, "--data-dir", empty); code != 1 {
		t.Fatal("truncated backup restored")
	}
	if names := listDir(t, empty); len(names) != 0 {
		t.Errorf("a failed restore left %v in an empty directory", names)
	}

	// What a stopped restore left (Ctrl-C kills it mid-load) does not make
	// the directory hold anything, and goes.
	stopped := t.TempDir()
	if err := os.MkdirAll(filepath.Join(stopped, ".restore-0123abcd.partial", "badger"), 0o700); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, nil, "restore", "--in", file, "--data-dir", stopped); code != 0 {
		t.Fatalf("restore after a stopped one: exit %d, %q", code, errOut)
	}
	for _, name := range listDir(t, stopped) {
		if strings.HasPrefix(name, ".") {
			t.Errorf("after a restore over a stopped one, the directory holds %s", name)
		}
	}

	// From standard input, into a new directory.
	withStdin(t, string(backup))
	code, out, errOut := runCLI(t, nil, "restore", "--in", "-", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "herald serve --data-dir "+dir) {
		t.Fatalf("restore: exit %d, %q, %q", code, out, errOut)
	}
	if v := restoredValue(t, dir); v != "restored value" {
		t.Errorf("restored %q", v)
	}
	before := listDir(t, dir)

	// A second restore into it is refused and changes nothing.
	code, _, errOut = runCLI(t, nil, "restore", "--in", file, "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, "not empty") || !strings.Contains(errOut, "--force") {
		t.Errorf("second restore: exit %d, %q", code, errOut)
	}
	if after := listDir(t, dir); !slices.Equal(before, after) {
		t.Errorf("refused restore changed %v to %v", before, after)
	}

	// A broken backup with --force leaves the old state whole.
	if code, _, _ := runCLI(t, nil, "restore", "--force", "--in", truncated, "--data-dir", dir); code != 1 {
		t.Fatal("truncated backup restored with --force")
	}
	if after := listDir(t, dir); !slices.Equal(before, after) {
		t.Errorf("failed --force restore changed %v to %v", before, after)
	}
	if v := restoredValue(t, dir); v != "restored value" {
		t.Errorf("after a failed --force restore the data reads %q", v)
	}

	// --force replaces it, leaving nothing of the old or of the work.
	marker := filepath.Join(dir, "old-file")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, nil, "restore", "--force", "--in", file, "--data-dir", dir); code != 0 {
		t.Fatalf("--force: exit %d, %q", code, errOut)
	}
	for _, name := range listDir(t, dir) {
		if name == "old-file" || strings.HasPrefix(name, ".") {
			t.Errorf("after --force the directory holds %s", name)
		}
	}
	if v := restoredValue(t, dir); v != "restored value" {
		t.Errorf("after --force the data reads %q", v)
	}

	// A directory a running herald holds is refused, even with --force.
	release, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	code, _, errOut = runCLI(t, nil, "restore", "--force", "--in", file, "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, "another herald is using") {
		t.Errorf("restore into a running node's directory: exit %d, %q", code, errOut)
	}
}

func TestBackupReportsProgressAndKeepsAnExistingFile(t *testing.T) {
	old := progressInterval
	progressInterval = 20 * time.Millisecond
	t.Cleanup(func() { progressInterval = old })

	var stderr syncbuf.Buffer
	first := bytes.Repeat([]byte("a"), 3<<20)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/admin/backup", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(first)
		w.(http.Flusher).Flush()
		// The rest only once the command said how far it got (or after
		// ten seconds, and the test fails on the missing line).
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if strings.Contains(stderr.String(), "backup: received") {
				break
			}
		}
		_, _ = w.Write([]byte("end"))
	})
	server := fakeServer(t, mux)
	out := filepath.Join(t.TempDir(), "herald.backup")
	if err := os.WriteFile(out, []byte("older backup"), 0o600); err != nil {
		t.Fatal(err)
	}

	code, _, errOut := runCLI(t, nil, "backup", "--server", server, "--token", "tok", "--out", out)
	if code != 1 || !strings.Contains(errOut, "exists") || !strings.Contains(errOut, "--force") {
		t.Errorf("backup over a file: exit %d, %q", code, errOut)
	}
	if b, _ := os.ReadFile(out); string(b) != "older backup" {
		t.Errorf("the existing backup was changed to %d bytes", len(b))
	}

	var stdout bytes.Buffer
	code = run([]string{"herald", "backup", "--server", server, "--token", "tok", "--out", out, "--force"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("backup --force: exit %d, %s", code, stderr.String())
	}
	if b, _ := os.ReadFile(out); len(b) != len(first)+3 {
		t.Errorf("backup holds %d bytes, want %d", len(b), len(first)+3)
	}
	if !strings.Contains(stderr.String(), " so far") || !strings.Contains(stderr.String(), "wrote 3.0 MiB") {
		t.Errorf("stderr %q", stderr.String())
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 1 {
		t.Errorf("directory holds %v, want only the backup", entries)
	}
}

func TestRestoreReportsProgress(t *testing.T) {
	old := progressInterval
	progressInterval = 20 * time.Millisecond
	t.Cleanup(func() { progressInterval = old })
	backup := makeBackup(t)
	pr, pw := io.Pipe()
	oldStdin := stdin
	stdin = pr
	t.Cleanup(func() { stdin = oldStdin })

	var stdout, stderr syncbuf.Buffer
	done := make(chan int)
	dir := filepath.Join(t.TempDir(), "restored")
	go func() { done <- run([]string{"herald", "restore", "--in", "-", "--data-dir", dir}, &stdout, &stderr) }()
	half := len(backup) / 2
	if _, err := pw.Write(backup[:half]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "restore: read") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress line while the backup arrives: %q", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := pw.Write(backup[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code := <-done; code != 0 {
		t.Fatalf("restore: exit %d, %s", code, stderr.String())
	}
	if v := restoredValue(t, dir); v != "restored value" {
		t.Errorf("restored %q", v)
	}
}

// Behind ACME a node picks its certificate by the name asked for: the probe
// asks for the host of --public-url.
func TestHealthcheckAsksForThePublicName(t *testing.T) {
	var asked []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.TLS.ServerName)
		_, _ = w.Write([]byte("ok"))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	code, _, errOut := runCLI(t, map[string]string{"HERALD_HTTP_ADDR": srv.Listener.Addr().String(),
		"HERALD_PUBLIC_URL": "https://herald.example.com"}, "healthcheck")
	if code != 0 || !slices.Equal(asked, []string{"herald.example.com"}) {
		t.Errorf("exit %d, %q; the node was asked for %q", code, errOut, asked)
	}
}

// A command run right after the nodes start waits for a sign-in the server
// cannot answer yet (503 with Retry-After: a cluster forming, or its first
// admin not created) instead of failing.
func TestCommandsWaitForASignInTheServerCannotAnswerYet(t *testing.T) {
	var tries atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		if tries.Add(1) <= 2 {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"serviceNotAvailable","message":"Herald has no users yet."}}`))
			return
		}
		_, _ = w.Write([]byte(`{"token_type":"Bearer","access_token":"tok","expires_in":3600}`))
	})
	mux.HandleFunc("GET /v1.0/users", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		_, _ = w.Write([]byte(`{"value":[{"id":"u-1","userPrincipalName":"admin","roles":["admin"]}]}`))
	})
	server := fakeServer(t, mux)
	code, out, errOut := runCLI(t, nil, "users", "list", "--server", server, "--username", "admin", "--password", "admin-pw")
	if code != 0 || !strings.Contains(out, "admin") || tries.Load() != 3 {
		t.Fatalf("exit %d, out %q, err %q, %d sign-ins; want success after two 503s", code, out, errOut, tries.Load())
	}
}

// The connection errors an admin meets first say what to do: a node's own
// certificate (SSL_CERT_FILE), and plain HTTP to a node that serves HTTPS.
func TestConnectionErrorsSayWhatToDo(t *testing.T) {
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(ts.Close)
	_, _, errOut := runCLI(t, map[string]string{"HERALD_TOKEN": "tok"}, "users", "list", "--server", ts.URL)
	if !strings.Contains(errOut, "SSL_CERT_FILE") {
		t.Errorf("a certificate of an unknown authority: %q does not name SSL_CERT_FILE", errOut)
	}
	plain := strings.Replace(ts.URL, "https://", "http://", 1)
	_, _, errOut = runCLI(t, map[string]string{"HERALD_TOKEN": "tok"}, "users", "list", "--server", plain)
	if !strings.Contains(errOut, "https://") {
		t.Errorf("plain HTTP to an HTTPS node: %q does not say to use https://", errOut)
	}
}

// refusingSignIn is a client of a server whose token endpoint answers
// every sign-in 503 with Retry-After: 1 and body, and the count of its
// sign-ins.
func refusingSignIn(t *testing.T, body string) (*client.Client, *atomic.Int32) {
	t.Helper()
	tries := new(atomic.Int32)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		tries.Add(1)
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(body))
	})
	cl, err := client.New(fakeServer(t, mux))
	if err != nil {
		t.Fatal(err)
	}
	return cl, tries
}

// A node that refuses a sign-in for its own clock (cluster/clock.go) is
// not asked again: it would refuse for as long as its clock is off, and
// its message says what to do.
func TestSignInRefusedForTheNodesClockIsNotRetried(t *testing.T) {
	cl, tries := refusingSignIn(t, `{"error":"temporarily_unavailable","error_description":"The write was not made: the clock of the server node that took it is 1h0m0s ahead of the cluster's."}`)
	var said bytes.Buffer
	_, err := signInPatiently(context.Background(), cl, "admin", "pw", 10*time.Second, &said)
	var ce *client.Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Message, "clock") {
		t.Fatalf("%v, want the node's refusal naming its clock", err)
	}
	if n := tries.Load(); n != 1 || said.Len() > 0 {
		t.Errorf("%d tries, said %q; want one try and nothing said", n, said.String())
	}
}

// A server that keeps answering 503 gets its error back once the patience
// is spent, with one line on standard error meanwhile.
func TestSignInPatiencePassesAndTheErrorComesBack(t *testing.T) {
	cl, tries := refusingSignIn(t, `{"error":{"code":"serviceNotAvailable","message":"not yet"}}`)
	var said bytes.Buffer
	_, err := signInPatiently(context.Background(), cl, "admin", "pw", 2500*time.Millisecond, &said)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable {
		t.Fatalf("after the patience: %v, want the 503", err)
	}
	if n := tries.Load(); n < 2 || n > 3 {
		t.Errorf("%d tries in 2.5 s with Retry-After: 1", n)
	}
	if strings.Count(said.String(), "trying again") != 1 {
		t.Errorf("said %q, want one line", said.String())
	}
	// It says what to do about it (operator review: a timeout was all).
	if !strings.Contains(err.Error(), "not yet") || !strings.Contains(err.Error(), "--token") {
		t.Errorf("the error %q does not carry the server's answer and what to do", err)
	}
}

// A backup of a later release (its rules level newer than this binary
// knows) is refused by restore, before it replaces anything: a node of this
// release would refuse to start on it, so a --force restore into a node's
// directory would leave the operator with neither its old data nor a node.
func TestRestoreRefusesABackupOfALaterRelease(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	level := binary.BigEndian.AppendUint64(nil, raft.RulesLevel+1)
	err = db.Update(func(txn *badger.Txn) error {
		return errors.Join(txn.Set([]byte("test/key"), []byte("of a later release")), txn.Set([]byte("m/rules"), level))
	})
	if err != nil {
		t.Fatal(err)
	}
	var later bytes.Buffer
	if err := raft.WriteBackup(context.Background(), db, &later); err != nil {
		t.Fatal(err)
	}
	db.Close()
	file := filepath.Join(t.TempDir(), "later.backup")
	if err := os.WriteFile(file, later.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(t.TempDir(), "ours.backup")
	if err := os.WriteFile(ours, makeBackup(t), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "node")
	if code, _, errOut := runCLI(t, nil, "restore", "--in", ours, "--data-dir", dir); code != 0 {
		t.Fatalf("restore: exit %d, %q", code, errOut)
	}
	before := listDir(t, dir)

	code, _, errOut := runCLI(t, nil, "restore", "--force", "--in", file, "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, "newer than this release knows") {
		t.Errorf("restore of a later release's backup: exit %d, %q; want it refused, naming the release", code, errOut)
	}
	if after := listDir(t, dir); !slices.Equal(before, after) {
		t.Errorf("the refused restore changed %v to %v", before, after)
	}
	if v := restoredValue(t, dir); v != "restored value" {
		t.Errorf("after the refused restore the node's data reads %q", v)
	}
}

// A restore with --force moves the directory's old entries aside, then the
// restored ones in: killed in between, the directory holds part of one and
// part of the other (the restored Badger without its marker, or nothing but
// the old data aside, which a node would take for an empty directory and
// start a new cluster in). A node refuses it, and a restore again makes it
// whole.
func TestServeRefusesADirectoryARestoreWasStoppedSwappingIn(t *testing.T) {
	file := filepath.Join(t.TempDir(), "herald.backup")
	if err := os.WriteFile(file, makeBackup(t), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, errOut := runCLI(t, nil, "restore", "--in", file, "--data-dir", dir); code != 0 {
		t.Fatalf("restore: exit %d, %q", code, errOut)
	}
	// As a kill between the two steps leaves it: the old data aside, the
	// restored Badger in place, its marker still in the work directory.
	aside := filepath.Join(dir, ".replaced-0123abcd")
	if err := os.MkdirAll(filepath.Join(aside, "raft-wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "restored")); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, nil, "serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "restore again") || !strings.Contains(errOut, aside) {
		t.Fatalf("serve on a half-swapped directory: exit %d, %q; want it refused, saying to restore again", code, errOut)
	}
	if code, _, errOut := runCLI(t, nil, "restore", "--force", "--in", file, "--data-dir", dir); code != 0 {
		t.Fatalf("restore again: exit %d, %q", code, errOut)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"badger", lockName, "restored"}) {
		t.Errorf("after the second restore the directory holds %v", names)
	}
	if v := restoredValue(t, dir); v != "restored value" {
		t.Errorf("restored %q", v)
	}
}
