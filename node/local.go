//go:build unix

package node

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// startLocalSocket serves password resets on LocalSocket. A node that
// cannot (a path longer than a socket's limit, about 100 bytes; a file
// system without sockets) runs without it and says why: it is a way back
// in, not a reason to stay down.
func (n *Node) startLocalSocket() {
	path := filepath.Join(n.cfg.DataDir, LocalSocket)
	if err := localDir(filepath.Dir(path)); err != nil {
		n.log.Warn("no local socket for password resets", "path", path, "error", err)
		return
	}
	// One left by a node that was killed; the data directory's lock
	// (datadir.go) says no other node uses it.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			n.log.Warn("no local socket for password resets: something else has its name", "path", path)
			return
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		n.log.Warn("no local socket for password resets", "path", path, "error", err)
		return
	}
	n.localHTTP = &http.Server{Handler: n.api.LocalHandler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute,
		MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}
	n.serve(n.localHTTP, l, "local socket")
}

// localDir makes dir a directory that only this process's user may enter,
// before the socket exists in it: a socket gets its mode from the umask
// when it is made, and a connection made before a chmod would outlive it,
// so the directory, not the socket, keeps others out.
func localDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is not a directory of this process's user", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		return os.Chmod(dir, 0o700)
	}
	return nil
}
