//go:build unix

package main

import (
	"os"
	"strings"
	"testing"

	"github.com/herald-notify/herald/internal/testnode"
)

// The data directory is judged before its lock is made: opened by name, the
// lock followed another user's link and made, as root, the file it pointed
// to (found by review: /etc/nologin would keep every other user out).
// serve and restore both lock through lockDataDir.
func TestTheLockIsNotMadeThroughAnotherUsersLink(t *testing.T) {
	data, target := testnode.AnotherUsersDataDir(t, lockName)
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
