//go:build unix

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herald-notify/herald/loadgen"
)

// TestWriteUnavailabilityWindow is a measurement, not part of the normal
// suite: three real herald processes with the default Raft timers, 16
// clients writing through a follower (a 503 is retried after 20 ms), and the
// leader killed (SIGKILL) or paused (SIGSTOP). It reports the longest gap
// between two acknowledged writes around the fault, which is how long
// writes were unavailable, and the slowest single request, which is how
// long a client waited at most.
//
//	HERALD_FAILOVER_WINDOW=1 go test -count=1 -v -run TestWriteUnavailabilityWindow ./e2e
func TestWriteUnavailabilityWindow(t *testing.T) {
	if os.Getenv("HERALD_FAILOVER_WINDOW") == "" {
		t.Skip("a measurement; set HERALD_FAILOVER_WINDOW=1 to run it")
	}
	for _, fault := range []struct {
		name string
		sig  syscall.Signal
	}{{"kill", syscall.SIGKILL}, {"pause", syscall.SIGSTOP}} {
		t.Run(fault.name, func(t *testing.T) {
			gap, slowest, acked, failed := measureWindow(t, fault.sig)
			t.Logf("leader %s: longest gap between acknowledged writes %v; slowest request %v; %d writes acknowledged, %d answered 503",
				fault.name, gap.Round(time.Millisecond), slowest.Round(time.Millisecond), acked, failed)
		})
	}
}

func measureWindow(t *testing.T, sig syscall.Signal) (gap, slowest time.Duration, acked, failed int64) {
	leader, via, f := startThree(t)
	w := newAPI(via)
	eventually(t, startTimeout, "the follower takes writes", func() error {
		r, err := w.do("POST", "/v1.0/me/notifications", f.appToken, map[string]any{"payload": map[string]any{"rawContent": "warm-up"}},
			map[string]string{"X-UNS-ID": f.unsid})
		if err != nil || r.Status != http.StatusCreated {
			return fmt.Errorf("%v %v", r, err)
		}
		return nil
	})

	var (
		mu    sync.Mutex
		acks  []time.Time
		next  atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		nfail atomic.Int64
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				aid := fmt.Sprintf("w-%d", next.Add(1))
				start := time.Now()
				r, err := w.do("POST", "/v1.0/me/notifications", f.appToken,
					map[string]any{"appNotificationId": aid, "payload": map[string]any{"rawContent": aid}},
					map[string]string{"X-UNS-ID": f.unsid})
				took := time.Since(start)
				mu.Lock()
				slowest = max(slowest, took)
				mu.Unlock()
				if err == nil && r.Status == http.StatusCreated {
					mu.Lock()
					acks = append(acks, time.Now())
					mu.Unlock()
					continue
				}
				nfail.Add(1)
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second) // steady writes before the fault
	faultAt := time.Now()
	if err := leader.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second) // the election and writes after it
	close(stop)
	wg.Wait()
	if sig == syscall.SIGSTOP {
		leader.cmd.Process.Signal(syscall.SIGCONT)
	}
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(acks, func(i, j int) bool { return acks[i].Before(acks[j]) })
	prev := faultAt
	for _, at := range acks {
		if at.Before(faultAt) {
			prev = at
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	if len(acks) == 0 || acks[len(acks)-1].Before(faultAt) {
		t.Fatalf("no write acknowledged after the fault (%d answered 503)", nfail.Load())
	}
	return gap, slowest, int64(len(acks)), nfail.Load()
}

// startThree runs three herald processes with one cluster key and the
// default Raft timers, no rate limits, and returns the leader, a follower
// and a fixture made through the first node.
func startThree(t *testing.T) (leader, follower *server, f *fixture) {
	const key = "failover-window-cluster-key-0123456789"
	env := []string{"HERALD_ADMIN_PASSWORD=" + adminPassword}
	common := []string{"--cluster-key", key, "--app-rate", "0", "--user-rate", "0", "--max-notifications-per-user", "0"}
	var servers []*server
	for i := range 3 {
		args := append([]string{"--node-id", fmt.Sprintf("w%d", i+1)}, common...)
		for _, s := range servers {
			args = append(args, "--join", s.HTTPAddr)
		}
		servers = append(servers, startServer(t, serverOpts{DataDir: t.TempDir(), Env: env, Args: args}))
	}
	a := newAPI(servers[0])
	f = newFixture(t, a, adminPassword, "window.example.com", "wendy")
	byID := map[string]*server{}
	for i, s := range servers {
		byID[fmt.Sprintf("w%d", i+1)] = s
	}
	eventually(t, startTimeout, "three members and a leader", func() error {
		var st struct {
			LeaderID string `json:"leaderId"`
			Nodes    []struct{ State string }
		}
		r, err := a.do("GET", "/v1.0/admin/cluster", f.adminToken, nil, nil)
		if err != nil || r.Status != http.StatusOK {
			return fmt.Errorf("%v %v", r, err)
		}
		if err := json.Unmarshal(r.Body, &st); err != nil || len(st.Nodes) != 3 || byID[st.LeaderID] == nil {
			return fmt.Errorf("cluster %+v %v", st, err)
		}
		leader = byID[st.LeaderID]
		return nil
	})
	for _, s := range servers {
		if s != leader {
			follower = s
		}
	}
	return leader, follower, f
}

// TestClusterIngestThroughput is a measurement, not part of the normal
// suite: durable writes with 64 concurrent clients to three real herald
// processes, sent to the leader and sent to a follower (which forwards them
// in batches).
//
//	HERALD_CLUSTER_BENCH=1 go test -count=1 -v -run TestClusterIngestThroughput ./e2e
func TestClusterIngestThroughput(t *testing.T) {
	if os.Getenv("HERALD_CLUSTER_BENCH") == "" {
		t.Skip("a measurement; set HERALD_CLUSTER_BENCH=1 to run it")
	}
	leader, follower, _ := startThree(t)
	ctx := context.Background()
	rate := map[string]float64{}
	for _, via := range []struct {
		name string
		s    *server
	}{{"leader", leader}, {"follower", follower}, {"leader", leader}, {"follower", follower}} {
		target, err := loadgen.Setup(ctx, via.s.URL, "admin", adminPassword)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := loadgen.Run(ctx, target, loadgen.Options{Notifications: 10000, Concurrency: 64})
		if err != nil || rep.Failed > 0 {
			t.Fatalf("%s: %v, %d failed", via.name, err, rep.Failed)
		}
		r := float64(rep.Created) / rep.Elapsed.Seconds()
		rate[via.name] = max(rate[via.name], r)
		t.Logf("through the %s: %.0f notifications/s; POST→201 p50 %v p99 %v", via.name, r,
			rep.PostLatency.P50.Round(time.Microsecond), rep.PostLatency.P99.Round(time.Microsecond))
	}
	t.Logf("follower / leader (best of two runs each): %.2f", rate["follower"]/rate["leader"])
}
