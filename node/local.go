package node

import (
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// LocalSocket is the name of the Unix socket in the data directory where a
// node takes password resets from an operator on its machine, who signs in
// with nothing but access to the directory (httpapi.LocalHandler; `herald
// users reset-password`).
const LocalSocket = "admin.sock"

// startLocalSocket serves the local socket. A node that cannot (a path
// longer than a socket's 107 bytes, a file system without sockets) runs
// without it and says why: it is a way back in, not a reason to stay down.
func (n *Node) startLocalSocket() {
	path := filepath.Join(n.cfg.DataDir, LocalSocket)
	// One left by a node that was killed; the data directory's lock
	// (datadir.go) says no other node uses it.
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		n.log.Warn("no local socket for password resets", "path", path, "error", err)
		return
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		n.log.Warn("no local socket for password resets", "path", path, "error", err)
		return
	}
	// Created under the process's umask (typically 0755: only the owner
	// may connect, which needs write permission); 0600 says so whatever
	// the umask.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		n.log.Warn("no local socket for password resets", "path", path, "error", err)
		return
	}
	n.localHTTP = &http.Server{Handler: n.api.LocalHandler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute,
		MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}
	n.serve(n.localHTTP, l, "local socket")
}
