package testnode

import (
	"os"
	"path/filepath"
	"testing"
)

// OtherUID is the user that AnotherUsersDataDir gives its directory to.
const OtherUID = 65534

// AnotherUsersDataDir makes what a local user other than root could leave
// for a root node: a directory of user OtherUID, open to read, in a
// directory of root's, holding that user's links named names, each to
// target, a path of root's beside the directory that does not exist yet.
// It skips the test unless it runs as root.
func AnotherUsersDataDir(t testing.TB, names ...string) (dir, target string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the data directory to another user")
	}
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, target = filepath.Join(base, "herald-data"), filepath.Join(base, "roots-file")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, OtherUID, OtherUID); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		link := filepath.Join(dir, name)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(link, OtherUID, OtherUID); err != nil {
			t.Fatal(err)
		}
	}
	return dir, target
}
