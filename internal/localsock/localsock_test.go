//go:build unix

package localsock

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func mkdir(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return dir
}

// A path that another user could change is refused, wherever on it they
// could: the data directory, a directory above it, or the directory that
// holds a symlink to it. /tmp's sticky bit keeps others to their own
// entries, so a directory of one's own there passes, except for a client
// that is not its owner (anyone may make one there and serve a socket).
func TestAPathOthersCouldChangeIsRefused(t *testing.T) {
	me := os.Geteuid()
	base := t.TempDir()
	own := mkdir(t, filepath.Join(base, "own"), 0o700)
	if real, err := CheckPath(own, me, false); err != nil || real != own {
		t.Fatalf("a directory of one's own: %q, %v", real, err)
	}

	open := mkdir(t, filepath.Join(base, "open"), 0o777)
	if _, err := CheckPath(open, me, false); err == nil {
		t.Error("a directory every user may write to passed")
	}
	below := mkdir(t, filepath.Join(open, "data"), 0o700)
	if _, err := CheckPath(below, me, false); err == nil {
		t.Error("a directory inside one every user may write to passed")
	}
	link := filepath.Join(open, "link")
	if err := os.Symlink(own, link); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckPath(link, me, false); err == nil {
		t.Error("a symlink in a directory every user may write to passed: another user could replace it")
	}

	sticky := mkdir(t, filepath.Join(base, "sticky"), 0o777|os.ModeSticky)
	mine := mkdir(t, filepath.Join(sticky, "data"), 0o700)
	if _, err := CheckPath(mine, me, false); err != nil {
		t.Errorf("one's own directory in a sticky one (as /tmp), for its owner: %v", err)
	}
	if me != 0 {
		if _, err := CheckPath(mine, me, true); err == nil {
			t.Error("a directory not root's in a sticky one, for a client that is not its owner, passed")
		}
	}
	if me == 0 {
		// Root's own directory in /tmp: no other user can have made it.
		if _, err := CheckPath(mine, me, true); err != nil {
			t.Errorf("root's directory in a sticky one: %v", err)
		}
	}
}

// The node and its client each check who is at the other end; on this
// system the peer of a connection to one's own socket is oneself.
func TestThePeerOfOnesOwnSocketIsTrusted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			err = Trusted(c, os.Geteuid())
			c.Close()
		}
		got <- err
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := Trusted(c, os.Geteuid()); err != nil {
		t.Errorf("the client's check of its own server: %v", err)
	}
	if err := <-got; err != nil {
		t.Errorf("the server's check of its own client: %v", err)
	}
	if os.Geteuid() != 0 {
		if err := Trusted(c, os.Geteuid()+1); err == nil {
			t.Error("a peer of another user passed for user+1")
		}
	}
}
