package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// serveFails runs "herald serve" with args, which must exit non-zero, and
// returns what it printed.
func serveFails(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, heraldBin, append([]string{"serve"}, args...)...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("herald serve %s did not fail: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestSecondNodeOnOneMachineIsToldWhatToChange starts a node, then a second
// one as a newcomer would: first on the same data directory, then with its
// own directory and HTTP port but the first one's Raft port. Each is
// refused in Herald's words, naming what to change.
func TestSecondNodeOnOneMachineIsToldWhatToChange(t *testing.T) {
	t.Parallel()
	first := startServer(t, serverOpts{DataDir: t.TempDir()})

	out := serveFails(t, "--data-dir", first.DataDir, "--http-addr", freeAddr(t), "--raft-addr", freeAddr(t))
	if !strings.Contains(out, "another herald is using "+first.DataDir) || strings.Contains(out, "Badger") {
		t.Errorf("same data directory:\n%s", out)
	}

	out = serveFails(t, "--data-dir", t.TempDir(), "--http-addr", freeAddr(t), "--raft-addr", first.RaftAddr)
	if !strings.Contains(out, "address already in use") || !strings.Contains(out, "--raft-addr") {
		t.Errorf("same Raft port:\n%s", out)
	}

	// The first node never noticed.
	if err := first.waitReady(5 * time.Second); err != nil {
		t.Error(err)
	}
}
