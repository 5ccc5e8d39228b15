package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
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

// A restore goes back to the backup's point: the changes made after it are
// gone. A deltaLink taken before the backup still reports what changed since
// (the restored changes and the new ones); one taken after it, which has seen
// changes the restored cluster never had, must be told to resync, even once
// the restored cluster has made as many changes again (TestRestoreRefusesCursorsOfTheLostHistory).
func TestRestoreRefusesCursorsOfTheLostHistory(t *testing.T) {
	ctx := context.Background()
	nodes, tok := startSignedIn(t, []node.Config{clusterConfig(t, "h1")})
	admin := clientFor(t, nodes[0], tok)
	if _, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Tasks", TargetHostName: "tasks.restore.test"}); err != nil {
		t.Fatal(err)
	}
	send := func(c *client.Client, what string, n int) []string {
		var ids []string
		for i := range n {
			got, err := c.SendToUser(ctx, "admin", &client.Notification{TargetHostName: "tasks.restore.test",
				Payload: &client.Payload{RawContent: fmt.Sprintf("%s %d", what, i)}})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, got.ID)
		}
		return ids
	}
	pathOf := func(link string) string {
		u, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		return u.RequestURI()
	}
	send(admin, "kept", 3)
	_, before, err := admin.Delta(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	send(admin, "kept too", 2)
	var backup bytes.Buffer
	if _, err := admin.Backup(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	lost := send(admin, "lost", 3)
	seen, after, err := admin.Delta(ctx, pathOf(before))
	if err != nil || len(seen) != 5 {
		t.Fatalf("delta before the restore: %d changes, %v", len(seen), err)
	}
	if err := nodes[0].Close(ctx); err != nil {
		t.Fatal(err)
	}

	cfg := clusterConfig(t, "h2")
	if _, err := raft.Restore(cfg.DataDir, &backup); err != nil {
		t.Fatal(err)
	}
	r := testnode.Start(t, &cfg)
	restored := clientFor(t, r, tok) // the session is in the backup
	// A sync begun on the restored node before it has a change of its own
	// starts at the restored log's first position.
	_, first, err := restored.Delta(ctx, "")
	if err != nil {
		t.Fatalf("a new sync on the restored node: %v", err)
	}
	fresh := send(restored, "after the restore", 6)
	if got, _, err := restored.Delta(ctx, pathOf(first)); err != nil || len(got) != len(fresh) {
		t.Errorf("the deltaLink of a sync begun after the restore: %d changes, %v; want the %d sent since", len(got), err, len(fresh))
	}

	got, _, err := restored.Delta(ctx, pathOf(before))
	if err != nil {
		t.Fatalf("a deltaLink taken before the backup, after the restore: %v", err)
	}
	ids := map[string]bool{}
	for _, n := range got {
		ids[n.ID] = true
	}
	for _, id := range lost {
		if ids[id] {
			t.Errorf("the delta reports %s, a notification the restore took back, as present", id)
		}
	}
	for _, id := range fresh {
		if !ids[id] {
			t.Errorf("the delta of a deltaLink taken before the backup misses %s, sent after the restore", id)
		}
	}
	if got, _, err := restored.Delta(ctx, pathOf(after)); !errors.Is(err, client.ErrResyncRequired) {
		t.Errorf("a deltaLink that saw the lost changes: %d changes, %v; want 410 resyncRequired", len(got), err)
	}
}
