//go:build unix

// Package localsock holds the checks that let a node and its local client
// trust the Unix socket in a data directory (`herald users
// reset-password`): that no user but the node's and root can change the
// path to it, and who is at the other end.
package localsock

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// CheckPath returns dir's path with symlinks resolved once it has checked
// that no user but owner and root can change it: each directory that holds
// a part of the path, as given and as it resolves, belongs to owner or
// root, and none lets others write to it unless its sticky bit keeps them
// to their own entries. Otherwise a user who could would swap a directory
// under the socket for one of their own. strict is for a client that is
// not owner: it also refuses owner's directories inside one that others
// may write to even with the sticky bit, as in /tmp, where anyone may make
// a directory of their own and serve a socket in it.
func CheckPath(dir string, owner int, strict bool) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := checkUp(abs, owner, strict); err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	return real, checkUp(real, owner, strict)
}

func checkUp(path string, owner int, strict bool) error {
	var child *syscall.Stat_t // the entry below p, checked one step before
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || (int(st.Uid) != owner && st.Uid != 0) {
			return fmt.Errorf("%s belongs to another user", p)
		}
		// A symlink's own mode means nothing; the directory that holds
		// it is checked next, and where it leads by the resolved path.
		if fi.Mode()&os.ModeSymlink == 0 && fi.Mode().Perm()&0o022 != 0 {
			if fi.Mode()&os.ModeSticky == 0 {
				return fmt.Errorf("%s may be written by other users (mode %v)", p, fi.Mode().Perm())
			}
			if strict && child != nil && child.Uid != 0 {
				return fmt.Errorf("%s, where any user may make a directory of their own, holds one that is not root's", p)
			}
		}
		if filepath.Dir(p) == p {
			return nil
		}
		child = st
	}
}

// Owner is the user that owns path.
func Owner(path string) (int, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no owner", path)
	}
	return int(st.Uid), nil
}

// Private checks that dir is a directory of owner's that no other user may
// enter: where the socket lives, so that the directory, not the socket's
// own mode, keeps others out.
func Private(dir string, owner int) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if uid, err := Owner(dir); err != nil || uid != owner || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is not a directory only user %d may enter", dir, owner)
	}
	return nil
}

// Trusted reports whether the process at the other end of c runs as uid
// or as root, where the system says who it is (peerUID).
func Trusted(c net.Conn, uid int) error {
	peer, known, err := peerUID(c)
	if err != nil || !known || peer == uid || peer == 0 {
		return err
	}
	return fmt.Errorf("the process at the other end runs as user %d, not %d or root", peer, uid)
}
