//go:build unix

package node

import (
	"os"
	"path/filepath"
	"testing"
)

// The socket's directory keeps other users out before the socket exists: a
// directory left open (0755, from an older layout or by hand) is closed
// first, and a symlink in its place is refused rather than followed (the
// data directory's path: internal/localsock).
func TestTheLocalSocketsDirectoryIsTheNodesUsersAlone(t *testing.T) {
	data := t.TempDir()
	open := filepath.Join(data, "local")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if err := localDir(open); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(open); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("after localDir: %v, %v; want mode 0700", fi, err)
	}

	elsewhere := t.TempDir()
	link := filepath.Join(t.TempDir(), "local")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	if err := localDir(link); err == nil {
		t.Fatal("a symlink was taken for the socket's directory")
	}

	fresh := filepath.Join(t.TempDir(), "local")
	if err := localDir(fresh); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("a new directory: %v, %v; want mode 0700", fi, err)
	}
}
