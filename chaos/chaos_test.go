//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Environment of the harness (docs/faults.md).
const (
	// envSeed reruns the schedule and the workload's choices of a run.
	envSeed = "HERALD_CHAOS_SEED"
	// envDuration selects the long form: faults one after another for
	// this long (a Go duration, e.g. 10m). Without it the short form
	// injects each kind of fault once.
	envDuration = "HERALD_CHAOS_DURATION"
)

const (
	nNodes   = 3
	nUsers   = 3
	nHooks   = 2 // users with a webhook subscription
	nClients = 6 // two per user
)

// TestChaos starts three herald processes behind fault proxies, runs load
// while it injects faults, heals, and checks the recorded history: no
// acknowledged write lost or duplicated, identical change logs, streams
// exactly once, strong reads linearizable, webhooks at least once.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three herald processes; not in -short")
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv(envSeed); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", envSeed, s, err)
		}
	}
	var long time.Duration
	if s := os.Getenv(envDuration); s != "" {
		var err error
		if long, err = time.ParseDuration(s); err != nil {
			t.Fatalf("%s=%q: %v", envDuration, s, err)
		}
	}
	t.Logf("chaos seed %d (rerun with %s=%d)", seed, envSeed, seed)
	rng := rand.New(rand.NewSource(seed))
	defer func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: rerun with %s=%d", seed, envSeed, seed)
		}
	}()

	bin, err := buildHerald(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, bin, nNodes, rng.Intn(nNodes))
	h := &history{}
	w := &workload{t: t, c: c, h: h}
	if err := w.setup(nUsers, nHooks); err != nil {
		t.Fatalf("setup: %v", err)
	}

	// Subscribers: one SSE and one WebSocket stream per user.
	sctx, stopSubs := context.WithCancel(context.Background())
	defer stopSubs()
	var subsWG sync.WaitGroup
	for _, u := range w.users {
		for _, ws := range []bool{false, true} {
			kind := "sse"
			if ws {
				kind = "ws"
			}
			s := &subscriber{name: u.upn + "/" + kind, u: u, ws: ws, c: c, rng: rand.New(rand.NewSource(rng.Int63()))}
			w.subs = append(w.subs, s)
			subsWG.Add(1)
			go func() { defer subsWG.Done(); s.run(sctx) }()
		}
	}
	// Clients.
	stop := make(chan struct{})
	var clientsWG sync.WaitGroup
	for i := range nClients {
		cl := &client{w: w, idx: i, u: w.users[i%nUsers], rng: rand.New(rand.NewSource(rng.Int63())),
			hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
		clientsWG.Add(1)
		go func() { defer clientsWG.Done(); cl.run(stop) }()
	}

	loadStart := time.Now()
	sched := &scheduler{c: c, h: h, rng: rand.New(rand.NewSource(rng.Int63())), admin: w.admin,
		holdMin: 1500 * time.Millisecond, holdMax: 4 * time.Second, logf: t.Logf}
	until := time.Now().Add(time.Hour)
	if long > 0 {
		until = time.Now().Add(long)
		sched.holdMax = 8 * time.Second
	}
	schedErr := sched.run(until, long == 0)
	// A last stretch of load on the healed cluster.
	if schedErr == nil {
		time.Sleep(2 * time.Second)
	}
	close(stop)
	clientsWG.Wait()
	loadEnd := time.Now()
	if schedErr != nil {
		t.Fatalf("fault schedule: %v", schedErr)
	}

	// Heal and converge.
	c.healAll()
	healed := time.Now()
	if err := c.waitReady(readyTimeout); err != nil {
		t.Fatalf("after healing: %v", err)
	}
	markers := w.putMarkers(t)
	var feeds [][][]notif // [node][user]
	err = pollFor(readyTimeout, func() error {
		feeds = make([][][]notif, nNodes)
		for ni, p := range c.nodes {
			for _, u := range w.users {
				f, err := localFeed(p, u)
				if err != nil {
					return err
				}
				if !containsID(f, markers[u.idx]) {
					return fmt.Errorf("n%d has not applied %s's marker", ni+1, u.upn)
				}
				feeds[ni] = append(feeds[ni], f)
			}
		}
		for ui := range w.users {
			for ni := 1; ni < nNodes; ni++ {
				if fmt.Sprint(feedIndex(feeds[ni][ui])) != fmt.Sprint(feedIndex(feeds[0][ui])) {
					return fmt.Errorf("n1 and n%d differ on %s's feed", ni+1, w.users[ui].upn)
				}
			}
		}
		return nil
	})
	converge := time.Since(healed)
	v := &verdict{}
	if err != nil {
		v.failf("no convergence: %v", err)
	}
	logs := make([][][]event, nNodes)
	for ni, p := range c.nodes {
		for _, u := range w.users {
			l, err := changeLog(p, u, markers[u.idx])
			if err != nil {
				t.Fatalf("change log: %v", err)
			}
			logs[ni] = append(logs[ni], l)
		}
	}
	if err := pollFor(60*time.Second, func() error {
		for _, s := range w.subs {
			if !s.seen(markers[s.u.idx]) {
				return fmt.Errorf("subscriber %s has not seen its marker", s.name)
			}
		}
		return nil
	}); err != nil {
		v.failf("streams: %v", err)
	}
	stopSubs()
	subsWG.Wait()
	if err := pollFor(60*time.Second, func() error {
		if p := webhookPending(w.users, feeds[0], h.allDeliveries()); len(p) > 0 {
			return fmt.Errorf("%d webhook deliveries outstanding, e.g. %s", len(p), p[0])
		}
		return nil
	}); err != nil {
		t.Logf("webhooks: %v", err) // checkWebhooks reports each
	}

	// Check.
	ops := h.snapshot()
	fs := facts(ops)
	checkStores(v, w.users, feeds, fs)
	checkLogs(v, w.users, logs, fs)
	resyncs := checkSubscribers(v, w.subs, logs)
	dupHooks := checkWebhooks(v, w.users, feeds[0], h.allDeliveries())
	refused := checkDiskFaults(v, h.faults, ops)
	c.bypass.finish(v)
	if c.diskNode >= 0 {
		if free, err := c.nodes[c.diskNode].disk.free(); err == nil {
			v.notes = append(v.notes, fmt.Sprintf("n%d's data on its %d MiB tmpfs: %.1f MiB used at the end",
				c.diskNode+1, smallDiskSize>>20, float64(smallDiskSize-free)/(1<<20)))
		}
	}
	res, info, nLin := checkLinearizable(ops, primaries(fs), 2*time.Minute)
	switch res {
	case porcupine.Illegal:
		if path, err := saveHistory(seed, ops); err == nil {
			v.failf("history saved to %s", path)
		}
		v.failf("strong reads and writes are NOT linearizable; offending keys:\n%s", illegalKeys(ops, primaries(fs)))
		path := filepath.Join(os.TempDir(), fmt.Sprintf("herald-chaos-%d.html", seed))
		if err := porcupine.VisualizePath(registerModel, info, path); err == nil {
			v.failf("porcupine's visualization: %s", path)
		}
	case porcupine.Unknown:
		v.failf("porcupine ran out of time on %d operations: linearizability not proven", nLin)
	}

	report(t, seed, h, ops, loadStart, loadEnd, converge, v, resyncs, dupHooks, refused, nLin, res)
	if len(v.failures) > 0 {
		for i, f := range v.failures {
			if i == 60 {
				t.Errorf("... and %d more", len(v.failures)-i)
				break
			}
			t.Error(f)
		}
		t.Errorf("seed %d: %d check failures", seed, len(v.failures))
	}
}

// saveHistory writes the operations as JSON, for reading a failure.
func saveHistory(seed int64, ops []*op) (string, error) {
	b, err := json.MarshalIndent(ops, "", " ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("herald-chaos-%d.json", seed))
	return path, os.WriteFile(path, b, 0o644)
}

func containsID(f []notif, id string) bool {
	for _, n := range f {
		if n.ID == id {
			return true
		}
	}
	return false
}

// putMarkers makes one last notification per user on the healed cluster,
// retried until acknowledged: the newest change of each user, up to which
// every node's log and every stream must reach.
func (w *workload) putMarkers(t *testing.T) map[int]string {
	out := map[int]string{}
	hc := &http.Client{}
	for _, u := range w.users {
		attempt := 0
		err := pollFor(readyTimeout, func() error {
			attempt++
			o := &op{Client: -1, Node: attempt % nNodes, Kind: opPut, User: u.idx, Key: "marker", Content: "marker"}
			u.addKey(o.Key)
			w.h.begin(o)
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			st, b, err := call(ctx, hc, "POST", w.c.nodes[o.Node].url+"/v1.0/me/notifications", w.appToken,
				map[string]any{"appNotificationId": o.Key, "payload": map[string]any{"rawContent": o.Content}},
				map[string]string{"X-UNS-ID": u.unsid})
			w.h.end(o)
			classify(o, st, b, err)
			if err != nil {
				return err
			}
			decodeNotif(o, b)
			if o.Result == nil {
				return fmt.Errorf("marker: %d %s", st, b)
			}
			out[u.idx] = o.Result.ID
			return nil
		})
		if err != nil {
			t.Fatalf("marker for %s: %v", u.upn, err)
		}
	}
	return out
}

// illegalKeys finds the keys whose history alone is not linearizable and
// prints their operations.
func illegalKeys(ops []*op, primary map[string]string) string {
	hist := linearizabilityHistory(ops, primary)
	var b strings.Builder
	for _, part := range registerModel.Partition(hist) {
		if porcupine.CheckOperationsTimeout(registerModel, part, 10*time.Second) != porcupine.Illegal {
			continue
		}
		fmt.Fprintf(&b, "key %s:\n", part[0].Metadata)
		sort.Slice(part, func(i, j int) bool { return part[i].Call < part[j].Call })
		for _, o := range part {
			fmt.Fprintf(&b, "  %s\n", o.Input.(regInput).desc)
		}
	}
	return b.String()
}

// report prints the run's table.
func report(t *testing.T, seed int64, h *history, ops []*op, loadStart, loadEnd time.Time, converge time.Duration,
	v *verdict, resyncs, dupHooks, refused, nLin int, lin porcupine.CheckResult) {
	byKind := map[string]int{}
	for _, f := range h.faults {
		byKind[f.Kind]++
	}
	var acked, writes, ackedWrites, unanswered int
	var ackTimes []time.Time
	for _, o := range ops {
		if o.acked() {
			acked++
		}
		if !o.definite() {
			unanswered++
		}
		if o.write() && o.Client >= 0 {
			writes++
			if o.acked() {
				ackedWrites++
				ackTimes = append(ackTimes, o.End)
			}
		}
	}
	sort.Slice(ackTimes, func(i, j int) bool { return ackTimes[i].Before(ackTimes[j]) })
	var longest time.Duration
	prev := loadStart
	for _, at := range append(ackTimes, loadEnd) {
		longest = max(longest, at.Sub(prev))
		prev = at
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nchaos run, seed %d, load %s\n", seed, loadEnd.Sub(loadStart).Round(time.Second))
	fmt.Fprintf(&b, "| %-34s | %10s |\n|%s|%s|\n", "measure", "value", strings.Repeat("-", 36), strings.Repeat("-", 12))
	row := func(k string, v any) { fmt.Fprintf(&b, "| %-34s | %10v |\n", k, v) }
	for _, k := range faultKinds {
		row("faults: "+k, byKind[k])
	}
	row("operations", len(ops))
	row("acknowledged", acked)
	row("unanswered (timeout, 5xx)", unanswered)
	row("refused: disk full (507)", refused)
	row("writes / acknowledged", fmt.Sprintf("%d / %d", writes, ackedWrites))
	row("lost (must be 0)", v.lost)
	row("duplicated (must be 0)", v.dups)
	row("stream resyncRequired", resyncs)
	row("webhook redeliveries", dupHooks)
	row("linearizability ("+strconv.Itoa(nLin)+" ops)", string(lin))
	row("longest write unavailability", longest.Round(time.Millisecond))
	row("time to converge", converge.Round(time.Millisecond))
	row("check failures", len(v.failures))
	t.Log(b.String())
	for _, f := range h.faults {
		t.Logf("  %s", f)
	}
	for _, n := range v.notes {
		t.Logf("note: %s", n)
	}
}
