package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testnode"
)

// A node whose cluster has lost its quorum (the other nodes' disks are gone)
// signs no one in, so `herald backup --stale` with a user name and password
// cannot reach what it holds. `herald backup --data-dir` reads a stopped
// node's directory instead, and what it writes restores into a node that
// holds the data: the way out of a lost quorum that operations.md describes.
func TestBackupOfAStoppedNodesDataDirectory(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	n := testnode.Start(t, &cfg)
	var tok string
	for deadline := time.Now().Add(20 * time.Second); tok == "" && time.Now().Before(deadline); {
		tok, _ = signInAs(t, n.URL, "admin", testnode.AdminPassword)
	}
	if tok == "" {
		t.Fatal("the admin never signed in")
	}
	out := filepath.Join(t.TempDir(), "herald.backup")

	// A running herald's directory (serve holds its lock) is refused, and
	// no file is left.
	release, err := lockDataDir(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, nil, "backup", "--data-dir", cfg.DataDir, "--out", out)
	release()
	if code != 1 || !strings.Contains(errOut, "another herald is using") {
		t.Errorf("backup of a running node's directory: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused backup left %s: %v", out, err)
	}
	// So is one that holds no node's data.
	code, _, errOut = runCLI(t, nil, "backup", "--data-dir", t.TempDir(), "--out", out)
	if code != 1 || !strings.Contains(errOut, "holds no node's data") {
		t.Errorf("backup of an empty directory: exit %d, %q", code, errOut)
	}
	// --stale asks a server; with --data-dir it would be ignored.
	code, _, errOut = runCLI(t, nil, "backup", "--data-dir", cfg.DataDir, "--stale", "--out", out)
	if code != 1 || !strings.Contains(errOut, "give one of them") {
		t.Errorf("backup with --data-dir and --stale: exit %d, %q", code, errOut)
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	// What a kill -9 at the wrong moment leaves, which Badger alone
	// refuses to open (raft/leftovers.go): the backup clears it as a start
	// does.
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "badger", "99999.mem"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, nil, "backup", "--data-dir", cfg.DataDir, "--out", out)
	if code != 0 || !strings.Contains(errOut, "wrote ") {
		t.Fatalf("backup of a stopped node's directory: exit %d, %q", code, errOut)
	}

	restored := filepath.Join(t.TempDir(), "restored")
	if code, _, errOut := runCLI(t, nil, "restore", "--in", out, "--data-dir", restored); code != 0 {
		t.Fatalf("restore: exit %d, %q", code, errOut)
	}
	// The restored node's first-admin password differs: only the backed-up
	// admin signs in with the first one.
	rcfg := testnode.Config(t, restored)
	rcfg.AdminPassword = "not-the-backed-up-password"
	r := testnode.Start(t, &rcfg)
	var why string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if tok, why = signInAs(t, r.URL, "admin", testnode.AdminPassword); tok != "" {
			return
		}
	}
	t.Fatalf("the admin of the backed-up directory cannot sign in on the restored node: %s", why)
}
