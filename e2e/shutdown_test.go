//go:build unix

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestShutdownPastItsTimeoutExitsNonZero starts two real nodes, stops the
// follower's process (SIGSTOP: its kernel keeps the connections open, so
// the leader's Raft replication waits on it), and sends the leader SIGTERM
// with a one-second --shutdown-timeout. Raft's shutdown waits on that
// replication, so the process must give up at its deadline: exit non-zero,
// with a log line naming the stage that did not stop.
func TestShutdownPastItsTimeoutExitsNonZero(t *testing.T) {
	t.Parallel()
	key := []string{"HERALD_CLUSTER_KEY=e2e-shutdown-cluster-key-0123456789abcdef"}
	env := append([]string{"HERALD_ADMIN_PASSWORD=" + adminPassword}, key...)
	leader := startServer(t, serverOpts{DataDir: t.TempDir(), Env: env,
		Args: []string{"--node-id", "e1", "--shutdown-timeout", "1s"}})
	follower := startServer(t, serverOpts{DataDir: t.TempDir(), Env: env,
		Args: []string{"--node-id", "e2", "--join", leader.HTTPAddr}})
	token := newAPI(leader).signIn(t, "admin", adminPassword)
	eventually(t, startTimeout, "two voters", func() error {
		r, err := newAPI(leader).do("GET", "/v1.0/admin/cluster", token, nil, nil)
		if err != nil {
			return err
		}
		if r.Status != http.StatusOK || strings.Count(string(r.Body), `"voter":true`) < 2 {
			return fmt.Errorf("cluster: %d %s", r.Status, r.Body)
		}
		return nil
	})

	if err := follower.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follower.cmd.Process.Signal(syscall.SIGCONT) })
	// Without its only peer the leader loses its quorum and steps down;
	// its heartbeat to the stopped peer is then waiting for an answer.
	eventually(t, startTimeout, "the leader stepping down", func() error {
		r, err := newAPI(leader).do("GET", "/readyz", "", nil, nil)
		if err != nil {
			return err
		}
		if r.Status == http.StatusOK {
			return fmt.Errorf("/readyz still 200")
		}
		return nil
	})

	code, _ := leader.terminate(t, 30*time.Second)
	log := leader.log.String()
	if code == 0 {
		t.Fatalf("exit status 0 although Raft could not shut down in time; log:\n%s", log)
	}
	if !strings.Contains(log, "shutdown did not finish in time") || !strings.Contains(log, "raft shutdown") {
		t.Errorf("no log line naming the stage that did not stop; log:\n%s", log)
	}
}

// TestCleanShutdownSaysSo sends a lone node SIGTERM and checks that its log
// ends by saying the stop finished: "shutting down" alone was also the last
// line of a node killed in the middle of its shutdown.
func TestCleanShutdownSaysSo(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{DataDir: t.TempDir(), Env: []string{"HERALD_ADMIN_PASSWORD=" + adminPassword}})
	code, _ := s.terminate(t, 30*time.Second)
	log := s.log.String()
	if code != 0 {
		t.Fatalf("exit status %d after SIGTERM; log:\n%s", code, log)
	}
	if !strings.Contains(log, `msg="stopped cleanly"`) {
		t.Errorf("the log does not say the shutdown finished; log:\n%s", log)
	}
}
