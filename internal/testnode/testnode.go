// Package testnode starts real Herald nodes for tests: real Raft, real
// Badger on a temporary directory, real HTTP on loopback.
package testnode

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/herald-notify/herald/node"
)

// AdminPassword is the bootstrap admin's password on every test node.
const AdminPassword = "test-admin-password"

// Node is a running node and where to reach it.
type Node struct {
	*node.Node
	URL    string
	Config node.Config
}

// Config returns a config for a test node on dir, with short timers and free
// loopback ports.
func Config(t testing.TB, dir string) node.Config {
	cfg := node.DefaultConfig()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RaftAddr = FreeAddr(t)
	cfg.NodeID = "test-node"
	cfg.AdminPassword = AdminPassword
	cfg.Raft.HeartbeatTimeout = 100 * time.Millisecond
	cfg.Raft.ElectionTimeout = 100 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.PurgeInterval = 200 * time.Millisecond
	// A small reserve: the default's 64 MiB ballast file per test node
	// would be written at every start, and a busy CI disk with less than
	// 256 MiB free would refuse every write.
	cfg.DiskReserve = "8MiB"
	return cfg
}

// Start runs a node with cfg until the test ends. Pass nil for defaults on a
// fresh temporary directory.
func Start(t testing.TB, cfg *node.Config) *Node {
	t.Helper()
	if cfg == nil {
		c := Config(t, t.TempDir())
		cfg = &c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	n, err := node.Start(ctx, *cfg, logger)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &Node{Node: n, URL: "http://" + n.Addr(), Config: *cfg}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return tn
}

// FreeAddr returns a loopback address with a port free at the time of asking.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
