// Package grafana holds Herald's Grafana dashboard, herald.json; its test
// keeps every query naming a metric the server exports.
package grafana_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testnode"
)

type dashboard struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title      string      `json:"title"`
	Type       string      `json:"type"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// query is one PromQL expression of the dashboard and where it is.
type query struct{ where, expr string }

func loadDashboard(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile("herald.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("herald.json: %v", err)
	}
	var qs []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q does not use the datasource variable: %+v", p.Title, p.Datasource)
			}
			for _, tg := range p.Targets {
				if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
					t.Errorf("a query of panel %q names datasource %+v, not the variable", p.Title, tg.Datasource)
				}
				qs = append(qs, query{"panel " + p.Title, tg.Expr})
			}
		}
	}
	walk(d.Panels)
	hasDatasourceVar := false
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && v.Name == "datasource" {
			hasDatasourceVar = true
		}
		if v.Definition != "" {
			qs = append(qs, query{"variable " + v.Name, variableQuery(v.Definition)})
		}
	}
	if !hasDatasourceVar {
		t.Error("herald.json has no datasource variable named datasource")
	}
	return qs
}

// variableQuery is the PromQL in a Grafana variable's query:
// label_values(expr, label) and query_result(expr) wrap it.
func variableQuery(def string) string {
	for _, f := range []string{"label_values(", "query_result("} {
		if rest, ok := strings.CutPrefix(def, f); ok {
			rest = strings.TrimSuffix(rest, ")")
			if f == "label_values(" {
				if i := strings.LastIndex(rest, ","); i >= 0 {
					rest = rest[:i]
				}
			}
			return rest
		}
	}
	return def
}

// Every metric named in the dashboard is one that a real node exports
// after some traffic: requests, a stream, notifications, and webhook
// deliveries that fail once and then succeed.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	qs := loadDashboard(t)
	if len(qs) < 20 {
		t.Fatalf("only %d queries in herald.json", len(qs))
	}
	exported := exportedAfterTraffic(t)

	used := map[string]bool{}
	for _, q := range qs {
		names := metricNames(q.expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", q.where, q.expr)
		}
		for _, n := range names {
			used[n] = true
			if !exported[n] && !clusterOnly[n] {
				t.Errorf("%s: %q is not a metric the server exports (query %q)", q.where, n, q.expr)
			}
		}
	}
	// The metrics an operator alerts on must each have a panel.
	for _, want := range []string{"herald_raft_state", "herald_raft_apply_seconds_bucket", "herald_raft_batch_commands_bucket",
		"herald_http_request_duration_seconds_bucket", "herald_open_streams", "herald_delivery_attempts_total",
		"herald_delivery_queue", "herald_badger_lsm_bytes", "herald_badger_vlog_bytes", "herald_disk_free_bytes"} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// clusterOnly are the metrics a lone node, which the test starts, has no
// series of (or none yet): a leader's per-follower timings and views of its
// peers and of their clocks. node's TestRaftStagesAreTimedOnEveryNode,
// TestUnreachableVoterLosesItsSlotsUntilItReturns and
// TestTheLeaderExportsEachVotersClockOffset find them on a three-node
// cluster.
var clusterOnly = map[string]bool{"herald_raft_replication_seconds_bucket": true,
	"herald_cluster_peer_answering": true, "herald_cluster_peer_silent_seconds": true,
	"herald_cluster_clock_offset_seconds": true}

// exportedAfterTraffic starts a node, drives traffic through it and
// returns the names in its /metrics, with a histogram's _bucket, _sum and
// _count series.
func exportedAfterTraffic(t *testing.T) map[string]bool {
	cfg := testnode.Config(t, t.TempDir())
	cfg.Webhook.AllowPrivate = true
	cfg.Delivery.MinBackoff, cfg.Delivery.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	n := testnode.Start(t, &cfg)

	var hits atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // one retry, then delivered
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	ctx := context.Background()
	signIn := func(user, password string) *client.Client {
		c, err := client.New(n.URL)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.PasswordToken(ctx, user, password)
		if err != nil {
			t.Fatal(err)
		}
		return c.With(client.WithToken(tok.AccessToken))
	}
	admin := signIn("admin", testnode.AdminPassword)
	app, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Tasks", TargetHostName: "tasks.example"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "alice", Password: "alice-password", Roles: []string{"user"}}); err != nil {
		t.Fatal(err)
	}
	alice := signIn("alice", "alice-password")
	sub, err := alice.Subscribe(ctx, client.NewSubscription{TargetHostName: "tasks.example", PlatformType: "windows",
		Channel: map[string]any{"type": "webhook", "url": hook.URL + "/hook"}})
	if err != nil {
		t.Fatal(err)
	}
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := alice.Stream(streamCtx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	apps, _ := client.New(n.URL)
	tok, err := apps.ClientCredentialsToken(ctx, app.AppID, app.PasswordCredentials[0].SecretText)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := apps.With(client.WithToken(tok.AccessToken)).Send(ctx, sub.ID, &client.Notification{AppNotificationID: "n1",
		Payload: &client.Payload{VisualContent: &client.VisualContent{Title: "hello"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.MarkRead(ctx, sent.ID); err != nil {
		t.Fatal(err)
	}

	var names map[string]bool
	deadline := time.Now().Add(20 * time.Second)
	for {
		names = scrape(t, n)
		if names["herald_delivery_attempts_total"] && names["herald_delivery_seconds_bucket"] && names["herald_delivery_outcome_batch_bucket"] {
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivery metrics after a webhook delivery; exported: %v", sortedKeys(names))
		}
		time.Sleep(20 * time.Millisecond) // polling /metrics, not waiting for luck
	}
}

func scrape(t *testing.T, n *testnode.Node) map[string]bool {
	t.Helper()
	resp, err := n.GetMetrics()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		name := f[2]
		names[name] = true
		switch f[3] {
		case "histogram":
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case "summary":
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

func sortedKeys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// promqlWords are PromQL's keywords and aggregation operators, which look
// like metric names; an aggregation may put by (...) before its "(".
var promqlWords = []string{"bool", "and", "or", "unless", "offset", "inf", "nan",
	"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
	"bottomk", "topk", "quantile", "limitk", "limit_ratio"}

// metricNames returns the metric names in a PromQL expression: identifiers
// that are not functions (followed by "("), keywords, label names in a
// selector's braces or in a by/without/on/ignoring list, strings, durations
// in brackets, or Grafana variables ($name).
func metricNames(expr string) []string {
	var names []string
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	skipSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n') {
			i++
		}
		return i
	}
	skipList := false // the next parenthesised list holds label names
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' {
					j++
				}
				j++
			}
			i = j + 1
		case c == '{' || c == '[':
			close := byte('}')
			if c == '[' {
				close = ']'
			}
			for i < len(expr) && expr[i] != close {
				if expr[i] == '"' {
					i++
					for i < len(expr) && expr[i] != '"' {
						if expr[i] == '\\' {
							i++
						}
						i++
					}
				}
				i++
			}
			i++
		case c == '(' && skipList:
			for i < len(expr) && expr[i] != ')' {
				i++
			}
			skipList = false
			i++
		case c == '$':
			i++
			for i < len(expr) && isPart(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') {
				i++ // numbers, and durations such as 5m
			}
		case isStart(c):
			j := i
			for j < len(expr) && isPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			next := skipSpace(j)
			switch {
			case slices.Contains([]string{"by", "without", "on", "ignoring", "group_left", "group_right"}, strings.ToLower(word)):
				skipList = true
			case slices.Contains(promqlWords, strings.ToLower(word)):
			case next < len(expr) && expr[next] == '(':
				// a function
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names
}

// The extractor finds the names, and only the names, so that the test above
// can fail.
func TestMetricNamesInPromQL(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`herald_open_streams{instance=~"$instance"}`, []string{"herald_open_streams"}},
		{`histogram_quantile(0.99, sum by (le, route) (rate(herald_http_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`,
			[]string{"herald_http_request_duration_seconds_bucket"}},
		{`sum without (instance) (rate(a_total{x="b{c}"}[5m])) / ignoring (y) group_left (z) b_count offset 1h`, []string{"a_total", "b_count"}},
		{`herald_raft_commit_index - herald_raft_applied_index > bool 3`, []string{"herald_raft_commit_index", "herald_raft_applied_index"}},
		{variableQuery(`label_values(herald_raft_state, instance)`), []string{"herald_raft_state"}},
		{`count(up) + topk by (x) (3, y)`, []string{"up", "y"}},
		{`sum(rate(x[1m])) and on() vector(1)`, []string{"x"}},
	} {
		if got := metricNames(tc.expr); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("metricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// operationsAlerts returns the expressions of docs/operations.md's "What to
// alert on" table, and the metric names of its metrics table.
func operationsDoc(t *testing.T) (alerts []query, documented []string) {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	section := ""
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			section = line
			continue
		}
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "| ---") {
			continue
		}
		// A cell's "\|" is a pipe inside it (PromQL's alternation).
		cells := strings.Split(strings.ReplaceAll(line, `\|`, "\x00"), "|")
		if len(cells) < 3 {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(strings.ReplaceAll(cells[i], "\x00", "|"))
		}
		switch section {
		case "### What to alert on":
			name := cells[1]
			if name == "alert" {
				continue
			}
			// The expression is the cell's first code span; an
			// explanation may follow it.
			expr := cells[2]
			if i := strings.Index(expr, "`"); i >= 0 {
				expr = expr[i+1:]
				if j := strings.Index(expr, "`"); j >= 0 {
					expr = expr[:j]
				}
			}
			alerts = append(alerts, query{"alert " + name, expr})
		case "## Metrics":
			for _, f := range strings.Split(cells[1], "`") {
				if strings.HasPrefix(f, "herald_") && !strings.HasSuffix(f, "_") {
					if i := strings.IndexAny(f, "{ "); i >= 0 {
						f = f[:i]
					}
					documented = append(documented, f)
				}
			}
		}
	}
	if len(alerts) < 10 || len(documented) < 20 {
		t.Fatalf("operations.md: found %d alerts and %d metrics; did its tables move?", len(alerts), len(documented))
	}
	return alerts, documented
}

// optionalSeries are documented metrics a node exports only in some
// setups: a certificate, or a refused connection.
var optionalSeries = map[string]bool{
	"herald_tls_certificate_not_after_seconds": true, // with --tls-cert
	"herald_http_connections_refused_total":    true, // after the first refusal
}

// Every alert of docs/operations.md names metrics the server exports (or
// Prometheus's own up), and so does every row of its metrics table: an
// alert on a metric that does not exist never fires.
func TestOperationsDocNamesExportedMetrics(t *testing.T) {
	alerts, documented := operationsDoc(t)
	exported := exportedAfterTraffic(t)
	for _, n := range documented {
		if !exported[n] && !exported[n+"_bucket"] && !clusterOnly[n] && !clusterOnly[n+"_bucket"] && !optionalSeries[n] {
			t.Errorf("operations.md documents %s, which the server does not export", n)
		}
	}
	placeholder := regexp.MustCompile(`<[^>]*>`) // "<the node's memory limit>"
	for _, a := range alerts {
		names := metricNames(placeholder.ReplaceAllString(a.expr, "1"))
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", a.where, a.expr)
		}
		for _, n := range names {
			if n == "up" || n == "process_resident_memory_bytes" || exported[n] || clusterOnly[n] || optionalSeries[n] {
				continue
			}
			t.Errorf("%s: %q is not a metric the server exports (expression %q)", a.where, n, a.expr)
		}
	}
}
