package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/bench"
	"github.com/herald-notify/herald/internal/testnode"
)

// The bench starts its nodes as `herald serve` child processes of the
// running binary; in a test that binary is the test binary, which serves
// when this variable asks it to.
const serveChildEnv = "GO_TEST_HERALD_SERVE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(serveChildEnv) == "1" {
		os.Exit(run(append([]string{"herald"}, os.Args[1:]...), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// benchJSON runs `herald bench` with --json and decodes its last line.
func benchJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	t.Setenv(serveChildEnv, "1")
	code, out, errOut := runCLI(t, nil, append([]string{"bench"}, append(args, "--json")...)...)
	if code != 0 {
		t.Fatalf("herald bench %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var res map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out)
	}
	t.Logf("%s\n%s", errOut, lines[len(lines)-1])
	return res
}

// checkResult asserts what every scenario's JSON holds: the fields the
// issue names, with sane values.
func checkResult(t *testing.T, res map[string]any, scenario string) {
	t.Helper()
	num := func(k string) float64 {
		v, ok := res[k].(float64)
		if !ok {
			t.Fatalf("%s: no number %q in %v", scenario, k, res)
		}
		return v
	}
	if res["scenario"] != scenario {
		t.Errorf("scenario = %v, want %s", res["scenario"], scenario)
	}
	for _, k := range []string{"rate", "ceilingRate", "p50Ms", "rssMiB"} {
		if num(k) <= 0 {
			t.Errorf("%s: %s = %v, want > 0", scenario, k, res[k])
		}
	}
	if p50, p99, mx := num("p50Ms"), num("p99Ms"), num("maxMs"); !(p50 <= p99 && p99 <= mx) {
		t.Errorf("%s: p50 %v, p99 %v, max %v out of order", scenario, p50, p99, mx)
	}
	if e := num("errors"); e != 0 {
		t.Errorf("%s: %v errors", scenario, e)
	}
	if exp, got := num("expected"), num("received"); exp != got {
		t.Errorf("%s: received %v of %v expected", scenario, got, exp)
	}
}

// benchRun runs a scenario through package bench (in parallel with
// others: runCLI sets the environment, which parallel tests may not) and
// returns its JSON decoded.
func benchRun(t *testing.T, o bench.Options) map[string]any {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	o.Exe, o.ExeEnv, o.Progress = exe, []string{serveChildEnv + "=1"}, &progress
	r, err := bench.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("bench %s: %v\n%s", o.Scenario, err, progress.String())
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s\n%s", progress.String(), b)
	return res
}

// Each scenario, tiny, against a node of its own: the JSON has the fields
// with sane values, and every expected delivery was received.
func TestBenchScenariosTiny(t *testing.T) {
	sec := time.Second
	for _, tc := range []struct {
		name     string
		o        bench.Options
		expected float64 // deliveries: -1 some, 0 none counted
	}{
		{"ingest", bench.Options{Scenario: "ingest", Duration: sec, Concurrency: 8, Users: 2}, 0},
		{"ingest-cluster", bench.Options{Scenario: "ingest", Cluster: 3, Duration: sec, Concurrency: 6, Users: 3}, 0},
		{"latency-sse", bench.Options{Scenario: "latency", Duration: sec, Concurrency: 4, Users: 3, Streams: 7, Rate: 20}, -1},
		{"latency-ws", bench.Options{Scenario: "latency", Duration: sec, Concurrency: 4, Users: 2, Streams: 4, Rate: 20, Transport: "ws"}, -1},
		{"conns", bench.Options{Scenario: "conns", Duration: sec, Concurrency: 8, Users: 4, Streams: 30}, 30},
		{"conns-ws", bench.Options{Scenario: "conns", Duration: sec, Concurrency: 8, Users: 2, Streams: 6, Transport: "ws"}, 6},
		{"feed", bench.Options{Scenario: "feed", Duration: sec, Concurrency: 4, Users: 2, Notifications: 120}, 0},
		{"webpush", bench.Options{Scenario: "webpush", Duration: sec, Concurrency: 2, Subscriptions: 3}, -1},
		{"webhook", bench.Options{Scenario: "webhook", Duration: sec, Concurrency: 2, Subscriptions: 3}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := benchRun(t, tc.o)
			checkResult(t, res, tc.o.Scenario)
			exp, _ := res["expected"].(float64)
			switch {
			case tc.expected > 0 && exp != tc.expected:
				t.Errorf("expected %v deliveries, want %v", exp, tc.expected)
			case tc.expected < 0 && exp <= 0:
				t.Errorf("no deliveries expected")
			}
			switch tc.name {
			case "ingest":
				if res["batchEntries"].(float64) <= 0 || res["batchMean"].(float64) < 1 {
					t.Errorf("no group commit measured: %v", res)
				}
				if mib, _ := res["logMiBAfter"].(float64); mib <= 0 {
					t.Errorf("no raft log measured: %v", res)
				}
				for _, stage := range []string{"logWriteMeanMs", "commitMeanMs", "fsmApplyMeanMs"} {
					if ms, _ := res[stage].(float64); ms <= 0 {
						t.Errorf("%s %v: the node's Raft stages not measured", stage, res[stage])
					}
				}
				// A node's writes touch fresh memory: its memtable's log,
				// buffers (/proc counts the faults on Linux only).
				if f, _ := res["pageFaultsPerRequest"].(float64); runtime.GOOS == "linux" && f <= 0 {
					t.Errorf("no page faults per request measured: %v", res["pageFaultsPerRequest"])
				}
			case "ingest-cluster":
				if res["nodes"] != 3.0 || len(res["rssNodesMiB"].([]any)) != 3 || res["forwardBatchMean"].(float64) < 1 {
					t.Errorf("cluster: nodes %v, rssNodesMiB %v, forwardBatchMean %v", res["nodes"], res["rssNodesMiB"], res["forwardBatchMean"])
				}
				if ms, _ := res["replicationMeanMs"].(float64); ms <= 0 {
					t.Errorf("replicationMeanMs %v: the leader's AppendEntries not timed", res["replicationMeanMs"])
				}
			case "latency-sse", "latency-ws":
				// The fan-out ceiling ran the same load: every one of its
				// deliveries arrived, and it timed them.
				exp, _ := res["ceilingExpected"].(float64)
				got, _ := res["ceilingReceived"].(float64)
				if exp <= 0 || got != exp {
					t.Errorf("fan-out ceiling: received %v of %v expected", got, exp)
				}
				if e, ok := res["ceilingErrors"].(float64); !ok || e != 0 {
					t.Errorf("fan-out ceiling: errors %v", res["ceilingErrors"])
				}
				p50, _ := res["ceilingLatencyP50Ms"].(float64)
				p99, _ := res["ceilingLatencyP99Ms"].(float64)
				if !(p50 > 0 && p50 <= p99) {
					t.Errorf("fan-out ceiling: p50 %v, p99 %v", p50, p99)
				}
			case "conns", "conns-ws":
				if res["streams"] != exp || res["bytesPerStream"] == nil {
					t.Errorf("streams %v, bytesPerStream %v", res["streams"], res["bytesPerStream"])
				}
			case "feed":
				if res["deltaRate"].(float64) <= 0 || res["pageBytes"].(float64) < 1000 {
					t.Errorf("deltaRate %v, pageBytes %v", res["deltaRate"], res["pageBytes"])
				}
				if cpu, _ := res["cpuUsPerRequest"].(float64); cpu <= 0 {
					t.Errorf("no server CPU per page measured: %v", res["cpuUsPerRequest"])
				}
			case "webpush":
				if res["decrypted"].(float64) < 3 {
					t.Errorf("%v messages decrypted, want at least one per endpoint", res["decrypted"])
				}
			}
		})
	}
}

// --profile writes each node's profiles over the load, and each is what
// Go's tools read: a gzipped profile, an execution trace.
func TestBenchProfilesItsNodes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "profiles")
	res := benchRun(t, bench.Options{Scenario: "ingest", Duration: time.Second, Concurrency: 4, Users: 1, Profile: dir})
	checkResult(t, res, "ingest")
	var listed []string
	for _, p := range res["profiles"].([]any) {
		listed = append(listed, p.(string))
	}
	for _, kind := range []string{"cpu.pprof", "allocs.pprof", "block.pprof", "mutex.pprof", "heap.pprof", "trace"} {
		path := filepath.Join(dir, "ingest-node1."+kind)
		if !slices.Contains(listed, path) {
			t.Errorf("%s not among the profiles listed: %v", path, listed)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Error(err)
			continue
		}
		if kind == "trace" {
			if !bytes.HasPrefix(b, []byte("go 1.")) {
				t.Errorf("%s: not an execution trace: %.20q", path, b)
			}
			continue
		}
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: not a gzipped profile: %v", path, err)
			continue
		}
		if raw, err := io.ReadAll(zr); err != nil || len(raw) == 0 {
			t.Errorf("%s: %d bytes, %v", path, len(raw), err)
		}
	}
	if len(listed) != 6 {
		t.Errorf("%d profiles listed, want 6: %v", len(listed), listed)
	}

	// conns: what the node holds with every stream open.
	res = benchRun(t, bench.Options{Scenario: "conns", Duration: time.Second, Concurrency: 4, Users: 2, Streams: 6, Profile: dir})
	checkResult(t, res, "conns")
	want := []any{filepath.Join(dir, "conns-node1.heap.pprof"), filepath.Join(dir, "conns-node1.goroutine.pprof")}
	if got := res["profiles"].([]any); !slices.Equal(got, want) {
		t.Errorf("conns profiles %v, want %v", got, want)
	}
	for _, p := range want {
		if fi, err := os.Stat(p.(string)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// With --server the bench signs in as the admin, measures that server and
// deletes what it made.
func TestBenchAgainstServer(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	cfg.Limits.AppRate, cfg.Limits.UserRate, cfg.Limits.MaxNotificationsPerUser = 0, 0, 0
	n := testnode.Start(t, &cfg)
	res := benchJSON(t, "ingest", "--server", n.URL, "--username", "admin", "--password", testnode.AdminPassword,
		"-d", "1s", "-c", "4")
	checkResult(t, res, "ingest")
	if res["server"] != n.URL {
		t.Errorf("server = %v, want %s", res["server"], n.URL)
	}
	code, out, errOut := runCLI(t, nil, "users", "list", "--server", n.URL, "--username", "admin", "--password", testnode.AdminPassword)
	if code != 0 || strings.Contains(out, "bench-") {
		t.Errorf("users after the bench: exit %d, %s %s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, nil, "bench", "ingest", "--server", n.URL, "--username", "admin", "--password", "wrong-password", "-d", "1s")
	if code == 0 || !strings.Contains(errOut, "invalid_grant") {
		t.Errorf("bench with a wrong password: exit %d, %s", code, errOut)
	}
}

func TestBenchRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "nosuch"},
		{"bench", "feed", "--cluster", "3"},
		{"bench", "latency", "--transport", "carrier-pigeon"},
		{"bench", "conns", "--users", "10", "--streams", "5"},
		{"bench", "ingest", "--cluster", "2"},
		{"bench", "ingest", "--server", "http://127.0.0.1:9", "--token", "x", "--profile", t.TempDir()},
	} {
		code, _, errOut := runCLI(t, nil, args...)
		if code == 0 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// A shell set up for the client commands (HERALD_SERVER exported) does
// not turn the bench's own node into a load test of that server (found by
// review): only --server does.
func TestBenchStartsItsOwnNodeWhateverHERALD_SERVERSays(t *testing.T) {
	t.Setenv(serveChildEnv, "1")
	code, out, errOut := runCLI(t, map[string]string{"HERALD_SERVER": "http://127.0.0.1:9"},
		"bench", "ingest", "-d", "1s", "-c", "2", "--json")
	if code != 0 {
		t.Fatalf("bench with HERALD_SERVER exported: exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var res map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out)
	}
	if res["server"] != "self" {
		t.Errorf("server = %v, want the bench's own node (self)", res["server"])
	}
}
