//go:build unix

package node

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// checkDataDir refuses a data directory that another user could change
// under the node: one they own (they may plant links there before the
// node starts and swap its files while it runs, and a root node writes
// through such links into root's own files), or one every user may write
// to. The path as given may be a link, and then the link must be the
// node's user's or root's too, or its owner could point it elsewhere
// between two opens. Directories above it are not judged here: a node in
// a directory of a group-writable home must still start (the local
// socket, which trusts less, declines them and says so).
func checkDataDir(dir string) error {
	euid := os.Geteuid()
	owned := func(fi os.FileInfo) bool {
		st, ok := fi.Sys().(*syscall.Stat_t)
		return ok && (int(st.Uid) == euid || st.Uid == 0)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 && !owned(fi) {
		return fmt.Errorf("data directory %s is a link of another user's, who could point it elsewhere; "+
			"give --data-dir a directory of the user herald runs as", dir)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	if fi, err = os.Stat(real); err != nil {
		return err
	}
	if !owned(fi) {
		return fmt.Errorf("data directory %s belongs to another user, who could change its files under the node; "+
			"give it to the user herald runs as (chown) or use another --data-dir", real)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("data directory %s may be written by every user (mode %v), who could change its files under the node; "+
			"chmod o-w %s", real, fi.Mode().Perm(), real)
	}
	return nil
}
