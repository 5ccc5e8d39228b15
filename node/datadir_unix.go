//go:build unix

package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// CheckDataDir refuses a data directory that another user could change
// under the node, before anything is made in it: one whose path, as given
// or as its links resolve, passes through a directory or link of another
// user's (root aside: they could swap what comes after it), or through a
// directory every user may write to without the sticky bit (anyone could);
// and a data directory every user may write to at all, for they could
// plant links there under the names of files the node makes (a root node
// wrote its disk ballast through one into a file of root's; found by
// review). Group-writable directories pass: a data directory in a home of
// umask 002 must still start (the local socket, which trusts less, is not
// served there). A directory that does not exist yet passes: the node makes
// it, its own and closed to others.
func CheckDataDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	euid := os.Geteuid()
	// Each link on the way is resolved by hand, so that every path it
	// leads through, a link to a link included, is judged.
	real := abs
	for hops := 0; ; hops++ {
		if err := checkPathUp(real, euid); err != nil {
			return err
		}
		link, rest, err := firstLink(real)
		if err != nil {
			return err
		}
		if link == "" {
			break
		}
		if hops == 40 {
			return fmt.Errorf("data directory %s: too many links", dir)
		}
		target, err := os.Readlink(link)
		if err != nil {
			return err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(link), target)
		}
		real = filepath.Join(target, rest)
	}
	fi, err := os.Stat(real)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("data directory %s may be written by every user (mode %s), who could plant files in it under the "+
			"names the node uses; chmod 0700 %s (on a mount whose modes cannot change, such as Docker's --tmpfs, "+
			"mount it for the node's user alone: --tmpfs /data:uid=65532,mode=0700)", real, octal(fi.Mode()), real)
	}
	return nil
}

// checkPathUp walks path up to the root: each entry that exists must be
// the node's user's or root's, and a directory every user may write to
// must have the sticky bit.
func checkPathUp(path string, euid int) error {
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		switch {
		case os.IsNotExist(err):
		case err != nil:
			return err
		default:
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok || (int(st.Uid) != euid && st.Uid != 0) {
				what := "directory"
				if fi.Mode()&os.ModeSymlink != 0 {
					what = "link"
				}
				return fmt.Errorf("the data directory's path goes through %s, a %s of another user (uid %d), who could change "+
					"what the node finds there; give --data-dir a path of the user herald runs as (uid %d) or root", p, what, st.Uid, euid)
			}
			if fi.IsDir() && p != path && fi.Mode().Perm()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0 {
				return fmt.Errorf("the data directory's path goes through %s, which every user may write to (mode %s); "+
					"chmod o-w %s or use another --data-dir", p, octal(fi.Mode()), p)
			}
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

// firstLink finds the first link on path, from the root down, and what
// of path comes after it; "" when there is none (or when path leads
// through a part that does not exist).
func firstLink(path string) (link, rest string, err error) {
	parts := strings.Split(strings.TrimPrefix(filepath.Clean(path), "/"), "/")
	p := "/"
	for i, part := range parts {
		if part == "" {
			continue
		}
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if os.IsNotExist(err) {
			return "", "", nil
		}
		if err != nil {
			return "", "", err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return p, filepath.Join(parts[i+1:]...), nil
		}
	}
	return "", "", nil
}

// octal is a mode as chmod takes it, the sticky bit included.
func octal(m os.FileMode) string {
	v := uint32(m.Perm())
	if m&os.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}
