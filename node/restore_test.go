package node_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
)

// A node restored from a backup holds the backup in Badger only, not in its
// Raft log; a node that joins it later must still get the restored state
// (through a snapshot), and the restored node keeps it across a restart.
func TestNodesJoiningARestoredNodeGetTheBackup(t *testing.T) {
	ctx := context.Background()
	orig := []node.Config{clusterConfig(t, "b1")}
	nodes, tok := startSignedIn(t, orig)
	u, err := clientFor(t, nodes[0], tok).CreateUser(ctx, client.NewUser{UserPrincipalName: "kept", Password: "kept-password-1"})
	if err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if _, err := clientFor(t, nodes[0], tok).Backup(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].Close(ctx); err != nil {
		t.Fatal(err)
	}

	cfgs := []node.Config{clusterConfig(t, "r1")}
	if _, err := raft.Restore(cfgs[0].DataDir, &backup); err != nil {
		t.Fatal(err)
	}
	cfgs = append(cfgs, clusterConfig(t, "r2", cfgs[0].HTTPAddr))
	r1 := testnode.Start(t, &cfgs[0])
	pollUntil(t, "the restored node's snapshot", func() error {
		if _, err := os.Stat(filepath.Join(cfgs[0].DataDir, "restored")); err == nil {
			return fmt.Errorf("the restore marker is still there")
		}
		return nil
	})
	r2 := testnode.Start(t, &cfgs[1])
	for _, n := range []*testnode.Node{r1, r2} {
		pollUntil(t, "the restored user on "+n.Config.NodeID, func() error {
			if _, found, err := n.Store().User(u.ID); err != nil || !found {
				return fmt.Errorf("user %s: found %v, %v", u.ID, found, err)
			}
			return nil
		})
	}
	if _, err := clientFor(t, r2, "").PasswordToken(ctx, "kept", "kept-password-1"); err != nil {
		t.Errorf("the restored user signs in on the node that joined: %v", err)
	}
}
