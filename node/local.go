//go:build unix

package node

import (
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/herald-notify/herald/internal/localsock"
)

// startLocalSocket serves password resets on LocalSocket. A node that
// cannot (a data directory that other users could change, a path longer
// than a socket's limit: over 90 bytes for the directory; a file system
// without sockets) runs without it and says why: it is a way back in, not
// a reason to stay down.
func (n *Node) startLocalSocket() {
	path := filepath.Join(n.cfg.DataDir, LocalSocket)
	data, err := localsock.CheckPath(n.cfg.DataDir, os.Geteuid(), false)
	if err == nil {
		path = filepath.Join(data, LocalSocket)
		err = localDir(filepath.Dir(path))
	}
	if err != nil {
		n.log.Warn("no local socket for password resets", "path", path, "error", err,
			"hint", "let no other user write to the data directory or a directory above it (chmod go-w), then restart")
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
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		l.Close()
		n.log.Warn("no local socket for password resets: it is not where it was made", "path", path)
		return
	}
	l = trustedOnly{l, n.log}
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
	// One of this user's left open (an older layout, or by hand) is
	// closed; anything else is refused by Private.
	if uid, err := localsock.Owner(dir); err == nil && uid == os.Geteuid() {
		if fi, err := os.Lstat(dir); err == nil && fi.IsDir() && fi.Mode().Perm() != 0o700 {
			if err := os.Chmod(dir, 0o700); err != nil {
				return err
			}
		}
	}
	return localsock.Private(dir, os.Geteuid())
}

// trustedOnly closes connections from processes of other users than the
// node's and root, where the system names them (localsock.Trusted): the
// directory already keeps them out, and this holds should it not.
type trustedOnly struct {
	net.Listener
	log *slog.Logger
}

func (t trustedOnly) Accept() (net.Conn, error) {
	for {
		c, err := t.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := localsock.Trusted(c, os.Geteuid()); err != nil {
			t.log.Warn("refused a connection to the local socket", "error", err)
			c.Close()
			continue
		}
		return c, nil
	}
}
