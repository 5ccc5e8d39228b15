package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
)

type clusterStatus struct {
	LeaderID string `json:"leaderId"`
	Nodes    []struct {
		ID       string `json:"id"`
		HTTPAddr string `json:"httpAddr"`
		RaftAddr string `json:"raftAddr"`
		State    string `json:"state"`
		Voter    bool   `json:"voter"`
	} `json:"nodes"`
}

// TestClusterFromOneCommandLine runs the README's cluster walk with real
// processes: three nodes started at once with the same line (their own id,
// addresses and data directory aside) form one cluster; "herald cluster
// status" shows it; a write through a follower is read on every node;
// "herald cluster remove" and "herald cluster join" take a node out and
// put it back.
func TestClusterFromOneCommandLine(t *testing.T) {
	t.Parallel()
	key := strings.TrimSpace(runCLI(t, nil, "cluster", "key"))
	if len(key) < 32 {
		t.Fatalf("herald cluster key printed %q", key)
	}
	ids := []string{"n1", "n2", "n3"}
	httpAddrs := make([]string, 3)
	raftAddrs := make([]string, 3)
	for i := range ids {
		httpAddrs[i], raftAddrs[i] = freeAddr(t), freeAddr(t)
	}
	env := []string{"HERALD_ADMIN_PASSWORD=" + adminPassword}
	servers := make([]*server, 3)
	for i, id := range ids {
		servers[i] = launch(t, serverOpts{DataDir: t.TempDir(), Env: env, HTTPAddr: httpAddrs[i], RaftAddr: raftAddrs[i],
			// --user-rate 0: testAnyNodeIsTheSameServer makes some 800 requests
			// as one user as fast as the nodes answer, over the cluster's
			// one user limit (50/s), which the nodes share.
			Args: []string{"--node-id", id, "--bootstrap-expect", "3", "--join", strings.Join(httpAddrs, ","),
				"--cluster-key", key, "--user-rate", "0"}})
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.waitReady(startTimeout)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s did not become ready: %v", ids[i], err)
		}
	}

	// cli runs "herald cluster <sub> [flags] [args]" as the admin against via.
	cli := func(via *server, sub string, args ...string) string {
		t.Helper()
		return runCLI(t, nil, append([]string{"cluster", sub, "--server", via.URL, "--username", "admin",
			"--password", adminPassword}, args...)...)
	}
	status := func(via *server) (clusterStatus, error) {
		var st clusterStatus
		out := runCLI(t, nil, "cluster", "status", "--json", "--server", via.URL, "--username", "admin", "--password", adminPassword)
		return st, json.Unmarshal([]byte(out), &st)
	}
	// members checks that every server sees the same leader and the
	// members want, each a voter in its place.
	members := func(want ...string) func() error {
		return func() error {
			leader := ""
			for _, s := range servers {
				st, err := status(s)
				if err != nil {
					return err
				}
				var got []string
				for _, n := range st.Nodes {
					i := slices.Index(ids, n.ID)
					if i < 0 || !n.Voter || n.HTTPAddr != httpAddrs[i] || n.RaftAddr != raftAddrs[i] ||
						(n.State != "leader" && n.State != "follower") {
						return fmt.Errorf("node %+v", n)
					}
					got = append(got, n.ID)
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					return fmt.Errorf("%s sees members %v, want %v", s.URL, got, want)
				}
				if st.LeaderID == "" || (leader != "" && st.LeaderID != leader) {
					return fmt.Errorf("leaders %q and %q", leader, st.LeaderID)
				}
				leader = st.LeaderID
			}
			return nil
		}
	}
	eventually(t, startTimeout, "one cluster of three", members("n1", "n2", "n3"))
	if out := cli(servers[0], "status"); !strings.Contains(out, "leader: n") || strings.Count(out, "true") != 3 {
		t.Fatalf("cluster status:\n%s", out)
	}

	st, err := status(servers[0])
	if err != nil {
		t.Fatal(err)
	}
	var follower, other *server
	for i, id := range ids {
		if id == st.LeaderID {
			continue
		}
		if follower == nil {
			follower = servers[i]
		} else {
			other = servers[i]
		}
	}

	// A write through a follower, read there at once and on every node.
	fa := newAPI(follower)
	f := newFixture(t, fa, adminPassword, "cluster.example.com", "dora")
	var sent notification
	fa.call(t, http.StatusCreated, "POST", "/v1.0/me/notifications", f.appToken,
		map[string]any{"appNotificationId": "through-a-follower", "payload": map[string]any{"rawContent": "hi"}},
		map[string]string{"X-UNS-ID": f.unsid}, &sent)
	for _, s := range servers {
		a := newAPI(s)
		eventually(t, eventTimeout, "the notification on "+s.URL, func() error {
			var page notificationPage
			r, err := a.do("GET", "/v1.0/me/notifications", f.userToken, nil, nil)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(r.Body, &page); err != nil {
				return fmt.Errorf("%d %s: %w", r.Status, r.Body, err)
			}
			if len(page.Value) != 1 || page.Value[0].ID != sent.ID {
				return fmt.Errorf("feed %+v", page.Value)
			}
			return nil
		})
	}

	testAnyNodeIsTheSameServer(t, servers, f, "cluster.example.com", "dora")

	// herald cluster remove takes a follower out; herald cluster join puts
	// it back.
	oi := slices.Index(servers, other)
	if out := cli(follower, "remove", ids[oi]); out != "removed node "+ids[oi]+"\n" {
		t.Fatalf("cluster remove printed %q", out)
	}
	rest := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == ids[oi] })
	removed := servers
	servers = slices.DeleteFunc(slices.Clone(servers), func(s *server) bool { return s == other })
	eventually(t, startTimeout, "two members", members(rest...))
	servers = removed
	if out := cli(follower, "join", "--id", ids[oi], "--raft-addr", raftAddrs[oi], "--http-addr", httpAddrs[oi]); out != "added node "+ids[oi]+"\n" {
		t.Fatalf("cluster join printed %q", out)
	}
	eventually(t, startTimeout, "three members again", members("n1", "n2", "n3"))
}
