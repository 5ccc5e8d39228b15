package node_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
)

// A node left out of a restore keeps the replaced cluster's log and state,
// and the cluster key and addresses it always had. Started with its usual
// line after the others were restored, it asked to join, was made a voter,
// skipped the restored cluster's entries up to its own old applied index
// and served the replaced data as ready. Every cluster now has an identity,
// and a restore makes a new one: the left-out node is refused, whether it
// asks to join or only campaigns in its old configuration, and the
// restored cluster keeps the backup's data. So is one of a cluster that
// never had an identity (its nodes ran an older release): it names none.
func TestANodeLeftOutOfARestoreIsRefused(t *testing.T) {
	t.Run("of a cluster with an identity", func(t *testing.T) { leftOutOfARestore(t, nil) })
	t.Run("of a cluster from before identities", func(t *testing.T) {
		leftOutOfARestore(t, func() int { return raft.IdentityLevel - 1 })
	})
}

// leftOutOfARestore runs the replaced cluster's nodes with the rules level
// known, nil for this binary's.
func leftOutOfARestore(t *testing.T, known func() int) {
	ctx := context.Background()
	cfgs := []node.Config{clusterConfig(t, "o1")}
	cfgs = append(cfgs, clusterConfig(t, "o2", cfgs[0].HTTPAddr), clusterConfig(t, "o3", cfgs[0].HTTPAddr))
	for i := range cfgs {
		cfgs[i].RulesLevel = known
	}
	nodes, tok := startSignedIn(t, cfgs)
	pollUntil(t, "three nodes with their slots", slotsEvenOver(cfgs)(nodes[0]))
	original := ""
	if known == nil {
		original = clusterIDOf(t, nodes[0])
	}
	for _, n := range nodes[1:] {
		pollUntil(t, n.Config.NodeID+" holding the cluster's id", func() error {
			if id, err := n.Store().ClusterID(); err != nil || id != original {
				return fmt.Errorf("%q, %v", id, err)
			}
			return nil
		})
	}
	admin := clientFor(t, nodes[0], tok)
	kept, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "in-the-backup", Password: "kept-password-1"})
	if err != nil {
		t.Fatal(err)
	}
	backup, lost := backupThenWrite(t, admin, nodes)
	closeAll(t, nodes)

	// o1 and o2 are restored into empty directories at their addresses;
	// o3 keeps its directory.
	restored := []node.Config{cfgs[0], cfgs[1]}
	var ids []string
	for i := range cfgs {
		cfgs[i].RulesLevel = nil // this binary, on every node, from here
	}
	for i := range restored {
		restored[i].RulesLevel = nil
		restored[i].DataDir = t.TempDir()
		id, err := raft.Restore(restored[i].DataDir, bytes.NewReader(backup.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if ids[0] != ids[1] || ids[0] == original || ids[0] == "" {
		t.Fatalf("restored ids %q, the replaced cluster %q: want one new id for both", ids, original)
	}
	logs := &syncbuf.Buffer{}
	r1 := startWithLog(t, restored[0], logs)
	r2 := testnode.Start(t, &restored[1])
	pollUntil(t, "the restored cluster of two", func() error {
		conf, err := r1.Store().Configuration()
		if err != nil || len(conf) != 2 {
			return fmt.Errorf("configuration %v, %v", conf, err)
		}
		return nil
	})

	// With its usual line: it asks to join, and is refused with the reason.
	if err := startRefused(ctx, t, cfgs[2], "the node left out of the restore started as a member of the restored cluster"); !strings.Contains(err.Error(), "another cluster") || !strings.Contains(err.Error(), ids[0]) {
		t.Fatalf("the left-out node: %v, want a refusal naming another cluster and the restored one's id", err)
	}

	// Without --join it campaigns in its old configuration, which lists
	// o1 and o2: their transports refuse it.
	alone := cfgs[2]
	alone.Join = nil
	stop := startUntilStopped(alone)
	pollUntil(t, "o1 refusing the left-out node's Raft connections", func() error {
		l := logs.String()
		if !strings.Contains(l, "refused an inter-node connection") ||
			!strings.Contains(l, "another cluster") && !strings.Contains(l, "names no cluster") {
			return fmt.Errorf("no refusal in o1's log")
		}
		return nil
	})
	if err := stop(); err == nil {
		t.Fatal("the left-out node found a leader")
	}

	if !r1.Store().IsLeader() {
		t.Error("o1 lost its leadership to the left-out node")
	}
	conf, err := r1.Store().Configuration()
	if err != nil || len(conf) != 2 {
		t.Errorf("the restored cluster's configuration: %v, %v, want o1 and o2 alone", conf, err)
	}
	for _, n := range []*testnode.Node{r1, r2} {
		if _, found, err := n.Store().User(kept.ID); err != nil || !found {
			t.Errorf("%s: the user in the backup: found %v, %v", n.Config.NodeID, found, err)
		}
		if _, found, err := n.Store().User(lost.ID); err != nil || found {
			t.Errorf("%s: the user made after the backup: found %v, %v, want the backup's data alone", n.Config.NodeID, found, err)
		}
	}
	var st client.ClusterStatus
	if err := clientFor(t, r1, adminTokenOf(t, r1)).Do(ctx, "GET", "/v1.0/admin/cluster", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.ClusterID != ids[0] {
		t.Errorf("GET /v1.0/admin/cluster names cluster %q, want %q", st.ClusterID, ids[0])
	}
}

func clusterIDOf(t *testing.T, n *testnode.Node) string {
	t.Helper()
	var id string
	pollUntil(t, n.Config.NodeID+" with a cluster id", func() error {
		var err error
		if id, err = n.Store().ClusterID(); err != nil || id == "" {
			return fmt.Errorf("%q, %v", id, err)
		}
		return nil
	})
	return id
}

// startWithLog is testnode.Start with the node's log in logs.
func startWithLog(t *testing.T, cfg node.Config, logs *syncbuf.Buffer) *testnode.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Start(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })
	return &testnode.Node{Node: n, URL: "http://" + n.Addr(), Config: cfg}
}

// Restored nodes that wait for each other (--bootstrap-expect) have no
// Raft configuration, and Raft grants a stranger's vote request to a node
// without one: a node left out of the restore of a cluster that never had
// an identity, whose longer log won those votes, wrote the replaced
// history over the restored one. The restored nodes now refuse its Raft
// connections and leave it out; restored from the same backup, it forms
// the cluster with them, over the backup's data alone.
func TestRestoredNodesWaitingForEachOtherRefuseALeftOutNode(t *testing.T) {
	ctx := context.Background()
	cfgs := bootstrapConfigs(t, "w1", "w2", "w3")
	for i := range cfgs {
		cfgs[i].RulesLevel = func() int { return raft.IdentityLevel - 1 }
	}
	chans := make([]<-chan started, 3)
	for i := range cfgs {
		chans[i] = startAsync(t, cfgs[i])
	}
	nodes := collect(t, chans)
	pollUntil(t, "one cluster of three", func() error { return oneCluster(nodes, []string{"w1", "w2", "w3"}) })
	var leader *node.Node
	pollUntil(t, "a leader", func() error {
		for _, n := range nodes {
			if n.Store().IsLeader() {
				leader = n
				return nil
			}
		}
		return fmt.Errorf("none")
	})
	lc := clientFor(t, &testnode.Node{Node: leader, URL: "http://" + leader.Addr()}, "")
	tok, err := lc.PasswordToken(ctx, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	admin := clientFor(t, &testnode.Node{Node: leader, URL: "http://" + leader.Addr()}, tok.AccessToken)
	kept, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "in-the-backup", Password: "kept-password-1"})
	if err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if _, err := admin.Backup(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	lost, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "after-the-backup", Password: "lost-password-1"})
	if err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "every node holding the user made after the backup", func() error {
		for _, n := range nodes {
			if _, found, err := n.Store().User(lost.ID); err != nil || !found {
				return fmt.Errorf("%s: found %v, %v", n.Store().RaftAddr(), found, err)
			}
		}
		return nil
	})
	for _, n := range nodes {
		if err := n.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}

	restore := func(cfg node.Config) node.Config {
		cfg.RulesLevel = nil
		cfg.DataDir = t.TempDir()
		if _, err := raft.Restore(cfg.DataDir, bytes.NewReader(backup.Bytes())); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	restored := []node.Config{restore(cfgs[0]), restore(cfgs[1])}
	logs := &syncbuf.Buffer{}
	w1 := make(chan started, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		n, err := node.Start(sctx, restored[0], slog.New(slog.NewTextHandler(logs, nil)))
		w1 <- started{n, err}
	}()
	w2 := startAsync(t, restored[1])
	leftOut := cfgs[2]
	leftOut.RulesLevel = nil
	stop := startUntilStopped(leftOut)
	pollUntil(t, "w1 refusing the left-out node", func() error {
		l := logs.String()
		if !strings.Contains(l, "names no cluster") || !strings.Contains(l, "holds another cluster's data and is left out") {
			return fmt.Errorf("no refusal in w1's log")
		}
		return nil
	})
	if err := stop(); err == nil {
		t.Fatal("the left-out node found a leader")
	}

	// Restored from the same backup, it forms the cluster with them.
	w3 := startAsync(t, restore(cfgs[2]))
	formed := collect(t, []<-chan started{w1, w2, w3})
	pollUntil(t, "the restored cluster of three", func() error { return oneCluster(formed, []string{"w1", "w2", "w3"}) })
	for _, n := range formed {
		if _, found, err := n.Store().User(kept.ID); err != nil || !found {
			t.Errorf("%s: the user in the backup: found %v, %v", n.Store().RaftAddr(), found, err)
		}
		if _, found, err := n.Store().User(lost.ID); err != nil || found {
			t.Errorf("%s: the user made after the backup: found %v, %v; want the backup's data alone", n.Store().RaftAddr(), found, err)
		}
	}
}

// namelessCluster starts nodes whose binary knows the rules level before
// identities: a cluster of a release from before them.
func namelessCluster(t *testing.T, ids ...string) ([]node.Config, []*testnode.Node, string) {
	t.Helper()
	cfgs := []node.Config{clusterConfig(t, ids[0])}
	for _, id := range ids[1:] {
		cfgs = append(cfgs, clusterConfig(t, id, cfgs[0].HTTPAddr))
	}
	for i := range cfgs {
		cfgs[i].RulesLevel = func() int { return raft.IdentityLevel - 1 }
	}
	nodes, tok := startSignedIn(t, cfgs)
	if len(cfgs) == 3 {
		pollUntil(t, "the nodes with their slots", slotsEvenOver(cfgs)(nodes[0]))
	}
	return cfgs, nodes, tok
}

// One node of a cluster from before identities is restored while the rest
// of that cluster runs on (an operator restoring the wrong node, or too
// early). Its old leader's appends and heartbeats would make the restored
// node follow and take the replaced history; the restored node refuses
// them, and keeps the backup's data.
func TestARestoredNodeRefusesTheRestOfItsOldCluster(t *testing.T) {
	ctx := context.Background()
	cfgs, nodes, tok := namelessCluster(t, "m1", "m2", "m3")
	admin := clientFor(t, nodes[0], tok)
	backup, lost := backupThenWrite(t, admin, nodes)
	if err := nodes[0].Close(ctx); err != nil {
		t.Fatal(err)
	}
	r := cfgs[0]
	r.RulesLevel, r.Join, r.DataDir = nil, nil, t.TempDir()
	if _, err := raft.Restore(r.DataDir, bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	m1 := startWithLog(t, r, logs)
	pollUntil(t, "m1 refusing its old cluster's Raft connections", func() error {
		if !strings.Contains(logs.String(), "names no cluster") {
			return fmt.Errorf("no refusal in m1's log")
		}
		return nil
	})
	conf, err := m1.Store().Configuration()
	if err != nil || len(conf) != 1 || !m1.Store().IsLeader() {
		t.Errorf("the restored node: configuration %v (%v), leader %v; want itself alone, leading", conf, err, m1.Store().IsLeader())
	}
	if _, found, err := m1.Store().User(lost.ID); err != nil || found {
		t.Errorf("the restored node holds the user made after the backup: %v, %v", found, err)
	}
}

// A restored node asked to join a cluster from before identities: made a
// voter, it would refuse the leader's connections (they name no cluster)
// and stay a dead voter, and the next node down would take the cluster's
// majority with it. It is refused instead, and the cluster goes on.
func TestARestoredNodeDoesNotJoinAClusterWithoutAnIdentity(t *testing.T) {
	ctx := context.Background()
	cfgs, nodes, tok := namelessCluster(t, "p1")
	admin := clientFor(t, nodes[0], tok)
	var backup bytes.Buffer
	if _, err := admin.Backup(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	c2 := clusterConfig(t, "p2", cfgs[0].HTTPAddr)
	if _, err := raft.Restore(c2.DataDir, bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := startRefused(ctx, t, c2, "a restored node joined a cluster without an identity"); !strings.Contains(err.Error(), "another cluster") {
		t.Fatalf("the restored node: %v, want a refusal naming another cluster", err)
	}
	if conf, err := nodes[0].Store().Configuration(); err != nil || len(conf) != 1 {
		t.Errorf("configuration %v, %v; want p1 alone", conf, err)
	}
	if _, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "still-writing", Password: "some-password-1"}); err != nil {
		t.Errorf("a write after the refusal: %v", err)
	}
}

// A node removed while its cluster had no identity, and added back once it
// has one, still runs with the data it had: it is of the same history, and
// follows again (a restored cluster would refuse it).
func TestANodeRemovedBeforeTheRaiseIsAddedBack(t *testing.T) {
	ctx := context.Background()
	var level atomic.Int64
	level.Store(int64(raft.IdentityLevel - 1))
	cfgs := []node.Config{clusterConfig(t, "q1")}
	cfgs = append(cfgs, clusterConfig(t, "q2", cfgs[0].HTTPAddr), clusterConfig(t, "q3", cfgs[0].HTTPAddr))
	for i := range cfgs {
		cfgs[i].RulesLevel = func() int { return int(level.Load()) }
	}
	nodes, tok := startSignedIn(t, cfgs)
	pollUntil(t, "three nodes with their slots", slotsEvenOver(cfgs)(nodes[0]))
	admin := clientFor(t, nodes[0], tok)
	if err := admin.RemoveClusterNode(ctx, "q3"); err != nil {
		t.Fatal(err)
	}
	level.Store(raft.IdentityLevel)
	id := clusterIDOf(t, nodes[0])
	if err := admin.AddClusterNode(ctx, client.NewClusterNode{ID: "q3", RaftAddr: nodes[2].Store().RaftAddr(), HTTPAddr: cfgs[2].HTTPAddr}); err != nil {
		t.Fatalf("adding back the removed node: %v", err)
	}
	pollUntil(t, "q3 holding the cluster's identity", func() error {
		if got, err := nodes[2].Store().ClusterID(); err != nil || got != id {
			return fmt.Errorf("%q, %v", got, err)
		}
		return nil
	})
}

// A member of a restored cluster started on its old directory (a restore
// into the wrong path, a virtual machine rolled back) holds the replaced
// history in a member's place: same id, same addresses. Every member of a
// restored cluster names its identity, so one that names none is refused,
// by the leader when it asks to join and by its own transport when the
// leader calls.
func TestAnOldDirectoryInARestoredMembersPlaceIsRefused(t *testing.T) {
	ctx := context.Background()
	cfgs, nodes, tok := namelessCluster(t, "o1", "o2", "o3")
	admin := clientFor(t, nodes[0], tok)
	backup, lost := backupThenWrite(t, admin, nodes)
	closeAll(t, nodes)
	restored := make([]node.Config, 3)
	for i := range cfgs {
		restored[i] = cfgs[i]
		restored[i].RulesLevel, restored[i].DataDir = nil, t.TempDir()
		if _, err := raft.Restore(restored[i].DataDir, bytes.NewReader(backup.Bytes())); err != nil {
			t.Fatal(err)
		}
	}
	r1 := testnode.Start(t, &restored[0])
	testnode.Start(t, &restored[1])
	r3 := testnode.Start(t, &restored[2])
	pollUntil(t, "the restored cluster of three", func() error {
		if conf, err := r1.Store().Configuration(); err != nil || len(conf) != 3 {
			return fmt.Errorf("configuration %v, %v", conf, err)
		}
		return nil
	})
	if err := r3.Close(ctx); err != nil {
		t.Fatal(err)
	}

	old := cfgs[2]
	old.RulesLevel = nil
	if err := startRefused(ctx, t, old, "o3's old directory started as a member of the restored cluster"); !strings.Contains(err.Error(), "another cluster") {
		t.Fatalf("o3 on its old directory: %v, want a refusal naming another cluster", err)
	}
	if _, found, err := r1.Store().User(lost.ID); err != nil || found {
		t.Errorf("the restored leader holds the user made after the backup: %v, %v", found, err)
	}
	rc := clientFor(t, r1, adminTokenOf(t, r1))
	if _, err := rc.CreateUser(ctx, client.NewUser{UserPrincipalName: "after-the-restore", Password: "some-password-1"}); err != nil {
		t.Errorf("a write on the restored cluster: %v", err)
	}
}

// backupThenWrite takes a backup through admin, then makes a user the
// backup does not hold and waits until every node holds it: the replaced
// history runs ahead of the backup.
func backupThenWrite(t *testing.T, admin *client.Client, nodes []*testnode.Node) (*bytes.Buffer, *client.User) {
	t.Helper()
	var backup bytes.Buffer
	if _, err := admin.Backup(context.Background(), &backup); err != nil {
		t.Fatal(err)
	}
	lost, err := admin.CreateUser(context.Background(), client.NewUser{UserPrincipalName: "after-the-backup", Password: "lost-password-1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		pollUntil(t, n.Config.NodeID+" holding the user made after the backup", func() error {
			if _, found, err := n.Store().User(lost.ID); err != nil || !found {
				return fmt.Errorf("found %v, %v", found, err)
			}
			return nil
		})
	}
	return &backup, lost
}

func closeAll(t *testing.T, nodes []*testnode.Node) {
	t.Helper()
	for _, n := range nodes {
		if err := n.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// startRefused starts cfg, which the cluster is expected to refuse within
// 30 s, and returns Start's error; if the node starts, the test fails with
// started.
func startRefused(ctx context.Context, t *testing.T, cfg node.Config, started string) error {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := node.Start(sctx, cfg, quietLogger())
	if err == nil {
		n.Close(ctx)
		t.Fatal(started)
	}
	return err
}

// startUntilStopped starts a node that is not expected to find a leader;
// stop ends the wait and returns Start's error (nil if it did start, and
// the node is closed).
func startUntilStopped(cfg node.Config) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		n, err := node.Start(ctx, cfg, quietLogger())
		if err == nil {
			n.Close(context.Background())
		}
		done <- err
	}()
	return func() error {
		cancel()
		return <-done
	}
}
