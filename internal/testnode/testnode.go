// Package testnode starts real Herald nodes for tests: real Raft, real
// Badger on a temporary directory, real HTTP on loopback.
package testnode

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/freeport"
	"github.com/herald-notify/herald/node"
)

// AdminPassword is the bootstrap admin's password on every test node.
const AdminPassword = "test-admin-password"

// MetricsToken is the scrape token of every test node (--metrics-token).
const MetricsToken = "test-metrics-scrape-token"

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
	cfg.MetricsToken = MetricsToken
	cfg.Raft.HeartbeatTimeout = 100 * time.Millisecond
	cfg.Raft.ElectionTimeout = 100 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.PurgeInterval = 200 * time.Millisecond
	// A small reserve: the default's 64 MiB ballast file per test node
	// would be written at every start, and a busy CI disk with less than
	// 256 MiB free would refuse every write.
	cfg.DiskReserve = "8MiB"
	// In-process nodes and their clients all connect from 127.0.0.1; the
	// per-address cap has tests of its own.
	cfg.Limits.MaxConnsPerIP = 0
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
	scheme := "http://"
	if n.TLS() {
		scheme = "https://"
	}
	tn := &Node{Node: n, URL: scheme + n.Addr(), Config: *cfg}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return tn
}

// FreeAddr returns a loopback address with a port free at the time of
// asking (freeport.Addr).
func FreeAddr(t testing.TB) string { return freeport.Addr(t) }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// GetMetrics fetches the node's /metrics with the scrape token, from the
// public listener.
func (n *Node) GetMetrics() (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, n.URL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+MetricsToken)
	return http.DefaultClient.Do(req)
}
