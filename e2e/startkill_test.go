package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestKillsDuringStartLeaveANodeThatStarts: a node killed (SIGKILL) at a
// random moment of its start, again and again, first on a new data
// directory and then on one holding data, starts on the next try with every
// acknowledged write. A start creates files (Badger's value log at every
// open, the Raft log's segments and metadata, the node's identity); a kill
// between creating one and writing it left a file that Badger v4.9.6
// refuses to open, and the node could not start again until someone
// deleted it by hand. HERALD_START_KILLS sets the kills of each phase
// (default 20).
func TestKillsDuringStartLeaveANodeThatStarts(t *testing.T) {
	t.Parallel()
	kills := 20
	if v, err := strconv.Atoi(os.Getenv("HERALD_START_KILLS")); err == nil && v > 0 {
		kills = v
	}
	// Every start gets ports of its own (a lone node takes a new Raft
	// address as it starts): one port kept across forty starts could be
	// taken by another test process while no start held it.
	o := serverOpts{DataDir: t.TempDir(), Env: []string{"HERALD_ADMIN_PASSWORD=" + adminPassword},
		Args: []string{"--shutdown-timeout", shutdownTimeout.String()}}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed of the kill times: %d", seed)
	r := rand.New(rand.NewPCG(seed, 7))

	// How long a start takes here bounds where the kills land: a kill
	// after the node is ready tests nothing new.
	killDuringStarts := func(phase string, within time.Duration) {
		for i := range kills {
			s := launch(t, o)
			at := time.Duration(r.Int64N(int64(within) + 1))
			select {
			case <-s.exited:
				t.Fatalf("%s: start %d exited by itself before its kill at %s: %v\n%s", phase, i, at, s.waitErr, s.log.String())
			case <-time.After(at):
			}
			s.kill(t)
		}
	}

	// A new data directory: the first start makes the cluster, the admin
	// and the node's identity.
	first := time.Now()
	srv := startServer(t, o)
	startTook := time.Since(first)
	srv.kill(t)
	if err := os.RemoveAll(o.DataDir); err != nil {
		t.Fatal(err)
	}
	killDuringStarts("new directory", startTook)
	srv = startServer(t, o)
	a := newAPI(srv)
	f := newFixture(t, a, adminPassword, "startkill.example.com", "erin")

	acked := map[string]bool{}
	for i := range 30 {
		var n notification
		a.call(t, http.StatusCreated, "POST", "/v1.0/me/notifications", f.appToken,
			map[string]any{"appNotificationId": fmt.Sprintf("before-kills-%02d", i), "payload": map[string]any{"rawContent": "kept"}},
			map[string]string{"X-UNS-ID": f.unsid}, &n)
		acked[n.ID] = true
	}
	srv.kill(t)

	first = time.Now()
	srv = startServer(t, o)
	startTook = time.Since(first)
	srv.kill(t)
	killDuringStarts("a directory with data", startTook)

	srv = startServer(t, o)
	a = newAPI(srv)
	seen := map[string]int{}
	for _, n := range a.listFeed(t, f.userToken, "$top=50") {
		seen[n.ID]++
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged notification %s is in the feed %d times after %d kills during starts", id, seen[id], 2*kills)
		}
	}
	if len(seen) != len(acked) {
		t.Errorf("the feed holds %d notifications, %d were acknowledged", len(seen), len(acked))
	}
}
