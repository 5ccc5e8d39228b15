package node_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/herald-notify/herald/internal/testnode"
)

// profileGet asks url for path with token and returns the status and body.
func profileGet(t *testing.T, method, url, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// errorCode is the contract's error code in body, failing the test when
// body is not the contract's error shape.
func errorCode(t *testing.T, what string, body []byte) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Errorf("%s: not the contract's error shape: %.200s", what, body)
	}
	return e.Error.Code
}

func TestProfilesOnTheMetricsListener(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	cfg.MetricsAddr, cfg.Profiling = "127.0.0.1:0", true
	n := testnode.Start(t, &cfg)
	base := "http://" + n.MetricsAddr() + "/debug/pprof/"
	tok := testnode.MetricsToken

	if status, body := profileGet(t, "GET", base+"heap?debug=1", ""); status != http.StatusUnauthorized || errorCode(t, "heap without the token", body) != "unauthenticated" {
		t.Errorf("heap profile without the metrics token: %d %.200s", status, body)
	}
	for _, tc := range []struct{ path, want string }{
		{"", "goroutine"}, // the index lists the profiles
		{"heap?debug=1", "heap profile:"},
		{"goroutine?debug=1", "hashicorp/raft"},
		{"mutex?debug=1", "--- mutex:"},
		{"block?debug=1", "--- contention:"},
	} {
		if status, body := profileGet(t, "GET", base+tc.path, tok); status != http.StatusOK || !bytes.Contains(body, []byte(tc.want)) {
			t.Errorf("GET /debug/pprof/%s: %d, want 200 with %q: %.300s", tc.path, status, tc.want, body)
		}
	}
	if got := runtime.SetMutexProfileFraction(-1); got != 100 {
		t.Errorf("mutex profile fraction %d with --profiling, want 100", got)
	}

	// A CPU profile is gzipped protobuf; a trace starts with its version.
	status, body := profileGet(t, "GET", base+"profile?seconds=1", tok)
	if status != http.StatusOK {
		t.Fatalf("CPU profile: %d %.300s", status, body)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("CPU profile is not gzipped: %v", err)
	}
	if raw, err := io.ReadAll(zr); err != nil || len(raw) == 0 {
		t.Errorf("CPU profile: %d bytes, %v", len(raw), err)
	}
	if status, body := profileGet(t, "GET", base+"trace?seconds=1", tok); status != http.StatusOK || !bytes.HasPrefix(body, []byte("go 1.")) {
		t.Errorf("trace: %d %.40q", status, body)
	}

	// One CPU profile at a time; a duration the profiler would refuse
	// in a shape of its own is refused first.
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _ = profileGet(t, "GET", base+"profile?seconds=2", tok)
		}()
	}
	wg.Wait()
	slices.Sort(statuses)
	if statuses[0] != http.StatusOK || statuses[1] != http.StatusServiceUnavailable {
		t.Errorf("two CPU profiles at once: %v, want one 200 and one 503", statuses)
	}
	for _, q := range []string{"profile?seconds=0", "profile?seconds=1.5", "profile?seconds=601", "heap?seconds=abc", "trace?seconds=NaN"} {
		if status, body := profileGet(t, "GET", base+q, tok); status != http.StatusBadRequest || errorCode(t, q, body) != "invalidRequest" {
			t.Errorf("GET /debug/pprof/%s: %d %.200s", q, status, body)
		}
	}

	// The command line may hold a secret given as a flag.
	if status, body := profileGet(t, "GET", base+"cmdline", tok); status != http.StatusNotFound || errorCode(t, "cmdline", body) != "itemNotFound" {
		t.Errorf("cmdline: %d %.200s", status, body)
	}
	if status, body := profileGet(t, "GET", base+"nothing", tok); status != http.StatusNotFound || errorCode(t, "unknown profile", body) != "itemNotFound" {
		t.Errorf("unknown profile: %d %.200s", status, body)
	}
	if status, body := profileGet(t, "POST", base+"heap", tok); status != http.StatusMethodNotAllowed || errorCode(t, "POST", body) != "methodNotAllowed" {
		t.Errorf("POST a profile: %d %.200s", status, body)
	}
	// Never on the public listener, whoever asks.
	admin, err := clientFor(t, n, "").PasswordToken(t.Context(), "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := profileGet(t, "GET", n.URL+"/debug/pprof/heap?debug=1", admin.AccessToken); status != http.StatusNotFound || strings.Contains(string(body), "heap profile") {
		t.Errorf("public listener /debug/pprof/heap as an admin: %d %.200s", status, body)
	}

	// Without --profiling the metrics listener serves /metrics alone.
	plain := testnode.Config(t, t.TempDir())
	plain.MetricsAddr = "127.0.0.1:0"
	p := testnode.Start(t, &plain)
	if status, body := profileGet(t, "GET", "http://"+p.MetricsAddr()+"/debug/pprof/heap?debug=1", tok); status != http.StatusNotFound || errorCode(t, "no profiling", body) != "itemNotFound" {
		t.Errorf("metrics listener without --profiling: %d %.200s", status, body)
	}
}
