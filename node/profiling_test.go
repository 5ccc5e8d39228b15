package node_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

func TestProfilesOnTheMetricsListener(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	cfg.MetricsAddr, cfg.Profiling = "127.0.0.1:0", true
	n := testnode.Start(t, &cfg)
	base := "http://" + n.MetricsAddr() + "/debug/pprof/"
	tok := testnode.MetricsToken

	if status, body := bearerDo(t, "GET", base+"heap?debug=1", ""); status != http.StatusUnauthorized || errorCode(t, "heap without the token", body) != "unauthenticated" {
		t.Errorf("heap profile without the metrics token: %d %.200s", status, body)
	}
	for _, tc := range []struct{ path, want string }{
		{"", "goroutine"}, // the index lists the profiles
		{"heap?debug=1", "heap profile:"},
		{"goroutine?debug=1", "hashicorp/raft"},
		{"mutex?debug=1", "--- mutex:"},
		{"block?debug=1", "--- contention:"},
	} {
		if status, body := bearerDo(t, "GET", base+tc.path, tok); status != http.StatusOK || !bytes.Contains(body, []byte(tc.want)) {
			t.Errorf("GET /debug/pprof/%s: %d, want 200 with %q: %.300s", tc.path, status, tc.want, body)
		}
	}
	if got := runtime.SetMutexProfileFraction(-1); got != 100 {
		t.Errorf("mutex profile fraction %d with --profiling, want 100", got)
	}

	// A CPU profile is gzipped protobuf; a trace starts with its version.
	status, body := bearerDo(t, "GET", base+"profile?seconds=1", tok)
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
	if status, body := bearerDo(t, "GET", base+"trace?seconds=1", tok); status != http.StatusOK || !bytes.HasPrefix(body, []byte("go 1.")) {
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
			// Not bearerDo: t.Fatal belongs to the test's goroutine.
			req, _ := http.NewRequest(http.MethodGet, base+"profile?seconds=2", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	slices.Sort(statuses)
	if statuses[0] != http.StatusOK || statuses[1] != http.StatusServiceUnavailable {
		t.Errorf("two CPU profiles at once: %v, want one 200 and one 503", statuses)
	}
	for _, q := range []string{"profile?seconds=0", "profile?seconds=1.5", "profile?seconds=601", "heap?seconds=abc", "trace?seconds=NaN"} {
		if status, body := bearerDo(t, "GET", base+q, tok); status != http.StatusBadRequest || errorCode(t, q, body) != "invalidRequest" {
			t.Errorf("GET /debug/pprof/%s: %d %.200s", q, status, body)
		}
	}

	// The command line may hold a secret given as a flag.
	if status, body := bearerDo(t, "GET", base+"cmdline", tok); status != http.StatusNotFound || errorCode(t, "cmdline", body) != "itemNotFound" {
		t.Errorf("cmdline: %d %.200s", status, body)
	}
	if status, body := bearerDo(t, "GET", base+"nothing", tok); status != http.StatusNotFound || errorCode(t, "unknown profile", body) != "itemNotFound" {
		t.Errorf("unknown profile: %d %.200s", status, body)
	}
	if status, body := bearerDo(t, "POST", base+"heap", tok); status != http.StatusMethodNotAllowed || errorCode(t, "POST", body) != "methodNotAllowed" {
		t.Errorf("POST a profile: %d %.200s", status, body)
	}
	// Never on the public listener, whoever asks.
	admin, err := clientFor(t, n, "").PasswordToken(t.Context(), "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := bearerDo(t, "GET", n.URL+"/debug/pprof/heap?debug=1", admin.AccessToken); status != http.StatusNotFound || strings.Contains(string(body), "heap profile") {
		t.Errorf("public listener /debug/pprof/heap as an admin: %d %.200s", status, body)
	}

	// Without --profiling the metrics listener serves /metrics alone.
	plain := testnode.Config(t, t.TempDir())
	plain.MetricsAddr = "127.0.0.1:0"
	p := testnode.Start(t, &plain)
	if status, body := bearerDo(t, "GET", "http://"+p.MetricsAddr()+"/debug/pprof/heap?debug=1", tok); status != http.StatusNotFound || errorCode(t, "no profiling", body) != "itemNotFound" {
		t.Errorf("metrics listener without --profiling: %d %.200s", status, body)
	}
}

// Profiles served without a token beyond loopback are a warning at start,
// not only the word "open" in the serving line; on loopback, or with the
// metrics token, they are not.
func TestOpenProfilingBeyondLoopbackIsAWarning(t *testing.T) {
	for _, tc := range []struct {
		addr, token string
		warn        bool
	}{
		{"0.0.0.0:0", "", true},
		{"127.0.0.1:0", "", false},
		{"0.0.0.0:0", testnode.MetricsToken, false},
	} {
		cfg := testnode.Config(t, t.TempDir())
		cfg.MetricsAddr, cfg.Profiling, cfg.MetricsToken = tc.addr, true, tc.token
		var out syncbuf.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		n, err := node.Start(ctx, cfg, slog.New(slog.NewTextHandler(&out, nil)))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		err = n.Close(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(out.String(), `level=WARN msg="--profiling serves /debug/pprof/`)
		if warned != tc.warn {
			t.Errorf("metrics on %s, token %q: warned %v, want %v:\n%s", tc.addr, tc.token, warned, tc.warn, out.String())
		}
	}
}
