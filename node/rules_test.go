package node_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
)

// A rolling upgrade: three nodes whose binaries know only the old rules
// (level 0) form a cluster, which applies level 0 whatever else happens;
// once every one of them knows level 1, the leader raises the cluster's
// level through the log and every replica applies it. A node that knows
// less than the cluster applies is then refused membership.
func TestRulesLevelRisesOnceEveryMemberKnowsIt(t *testing.T) {
	ctx := context.Background()
	var levels [4]atomic.Int64
	withLevel := func(c node.Config, i int) node.Config {
		c.RulesLevel = func() int { return int(levels[i].Load()) }
		return c
	}
	cfgs := []node.Config{withLevel(clusterConfig(t, "r1"), 0)}
	cfgs = append(cfgs, withLevel(clusterConfig(t, "r2", cfgs[0].HTTPAddr), 1))
	cfgs = append(cfgs, withLevel(clusterConfig(t, "r3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr), 2))
	nodes, adminToken := startSignedIn(t, cfgs)
	pollUntil(t, "three nodes with their slots", slotsEvenOver(cfgs)(nodes[0]))
	level := func(n *testnode.Node) int {
		l, err := n.Store().Rules()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, n := range nodes {
		if l := level(n); l != 0 {
			t.Fatalf("%s applies rules level %d while every member knows only 0", n.Config.NodeID, l)
		}
	}

	// Every member upgraded: the leader raises the level (nextRules, in
	// cluster, holds it while any member knows less).
	levels[0].Store(1)
	levels[1].Store(1)
	levels[2].Store(1)
	for _, n := range nodes {
		pollUntil(t, n.Config.NodeID+" at rules level 1", func() error {
			if l := level(n); l != 1 {
				return fmt.Errorf("level %d", l)
			}
			return nil
		})
	}

	// A node whose binary knows only level 0 asks to join: refused, with
	// the reason.
	old := withLevel(clusterConfig(t, "r4"), 3)
	n4 := testnode.Start(t, &old)
	err := clientFor(t, nodes[0], adminToken).Do(ctx, http.MethodPost, "/v1.0/admin/cluster/nodes",
		map[string]string{"id": "r4", "raftAddr": n4.Store().RaftAddr(), "httpAddr": old.HTTPAddr}, nil)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || !strings.Contains(ce.Error(), "older Herald") {
		t.Fatalf("adding a node that knows only rules level 0: %v, want 400 naming the older version", err)
	}
}

// A binary refuses state written under rules newer than it knows (an
// older release started on a newer one's data directory): every entry from
// there on would apply under other rules than the other nodes'.
func TestANodeRefusesStateUnderNewerRules(t *testing.T) {
	ctx := context.Background()
	cfg := testnode.Config(t, t.TempDir())
	n := testnode.Start(t, &cfg)
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// What a later release's raise leaves in the directory. (Proposed to
	// this binary's FSM, the raise stops the process: raft's
	// TestAnOlderBinaryStopsAtARaiseItDoesNotKnow.)
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(cfg.DataDir, "badger")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte("m/rules"), binary.BigEndian.AppendUint64(nil, raft.RulesLevel+1))
	}), db.Close()); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	again, err := node.Start(sctx, cfg, quietLogger())
	if err == nil {
		again.Close(ctx)
		t.Fatal("a node started on state under a rules level its binary does not know")
	}
	if !strings.Contains(err.Error(), "newer than this release knows") {
		t.Fatalf("start: %v, want the reason", err)
	}
}
