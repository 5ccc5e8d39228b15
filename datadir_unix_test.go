//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The data directory is judged before its lock is made: opened by name, the
// lock followed another user's link and made, as root, the file it pointed
// to (found by review: /etc/nologin would keep every other user out).
// serve and restore both lock through lockDataDir.
func TestTheLockIsNotMadeThroughAnotherUsersLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the data directory to another user")
	}
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(base, "herald-data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(base, "made-by-root")
	link := filepath.Join(data, lockName)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	release, err := lockDataDir(data)
	if err == nil {
		release()
		t.Error("lockDataDir took a data directory of user 65534")
	} else if !strings.Contains(err.Error(), "of another user (uid 65534)") {
		t.Errorf("lockDataDir: %v, want a refusal naming the other user", err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Fatalf("%s was made through another user's link", target)
	}
}
