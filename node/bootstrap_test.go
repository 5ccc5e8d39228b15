package node_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
)

// bootstrapKey is long enough for any check of key strength.
const bootstrapKey = "bootstrap-test-cluster-key-0123456789abcdefghij"

// bootstrapConfigs are the configs of a new cluster of len(ids) nodes started
// with one shared line: --bootstrap-expect N and --join naming every node,
// itself included.
func bootstrapConfigs(t *testing.T, ids ...string) []node.Config {
	cfgs := make([]node.Config, len(ids))
	var join []string
	for i, id := range ids {
		cfgs[i] = clusterConfig(t, id)
		cfgs[i].ClusterKey = bootstrapKey
		join = append(join, cfgs[i].HTTPAddr)
	}
	for i := range cfgs {
		cfgs[i].Join = slices.Clone(join)
		cfgs[i].BootstrapExpect = len(ids)
	}
	return cfgs
}

type started struct {
	n   *node.Node
	err error
}

// startAsync starts a node in the background: a node of a new cluster
// returns from Start only once the others have come. The node is closed when
// the test ends.
func startAsync(t *testing.T, cfg node.Config) <-chan started {
	ch := make(chan started, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := node.Start(ctx, cfg, quietLogger())
		ch <- started{n, err}
	}()
	return ch
}

// collect waits for every start and fails the test on an error. Nodes are
// closed when the test ends.
func collect(t *testing.T, chans []<-chan started) []*node.Node {
	t.Helper()
	nodes := make([]*node.Node, len(chans))
	var errs []error
	for i, ch := range chans {
		s := <-ch
		if s.err != nil {
			errs = append(errs, s.err)
			continue
		}
		nodes[i] = s.n
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.n.Close(ctx)
		})
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start: %v", err)
	}
	return nodes
}

// listening polls until something answers HTTP at addr.
func listening(t *testing.T, addr string) {
	t.Helper()
	pollUntil(t, "node at "+addr+" listening", func() error {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// oneCluster checks that nodes form one cluster of exactly want: one leader
// among them, and every node's configuration lists the same voters, at the
// Raft address each node has.
func oneCluster(nodes []*node.Node, want []string) error {
	leaders := 0
	var first []raft.NodeRecord
	for _, n := range nodes {
		conf, err := n.Store().Configuration()
		if err != nil {
			return err
		}
		slices.SortFunc(conf, func(a, b raft.NodeRecord) int { return strings.Compare(a.ID, b.ID) })
		var ids []string
		for _, s := range conf {
			ids = append(ids, s.ID)
		}
		if !slices.Equal(ids, want) {
			return fmt.Errorf("a node's configuration is %v, want %v", ids, want)
		}
		if first == nil {
			first = conf
		} else if !slices.Equal(conf, first) {
			return fmt.Errorf("configurations differ: %v and %v", first, conf)
		}
		for _, srv := range n.Store().Raft().GetConfiguration().Configuration().Servers {
			if srv.Suffrage.String() != "Voter" {
				return fmt.Errorf("%s is a %s", srv.ID, srv.Suffrage)
			}
		}
		if n.Store().IsLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d leaders", leaders)
	}
	for _, n := range nodes {
		// Every node follows the one leader: none formed a cluster of its own.
		if _, id := n.Store().Raft().LeaderWithID(); id == "" {
			return errors.New("a node without a leader")
		}
	}
	return nil
}

// Three nodes started with the same line (--bootstrap-expect 3, --join
// naming all three) form exactly one cluster, whatever order they start in:
// each start waits until the previous node listens, so every order is
// really taken.
func TestBootstrapExpectEveryStartOrder(t *testing.T) {
	orders := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for _, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			cfgs := bootstrapConfigs(t, "b1", "b2", "b3")
			chans := make([]<-chan started, 3)
			for _, i := range order {
				chans[i] = startAsync(t, cfgs[i])
				listening(t, cfgs[i].HTTPAddr)
			}
			nodes := collect(t, chans)
			pollUntil(t, "one cluster of three", func() error { return oneCluster(nodes, []string{"b1", "b2", "b3"}) })
		})
	}
}

// The same line grows and heals the cluster: a fourth node joins later; a
// node restarted with it rejoins the cluster it belongs to (it forms no
// new one); a member that comes back at new addresses replaces its entry;
// and an id of a live member is refused with a message naming it.
func TestBootstrapExpectGrowsAndHeals(t *testing.T) {
	ctx := context.Background()
	cfgs := bootstrapConfigs(t, "g1", "g2", "g3")
	chans := make([]<-chan started, 3)
	for i := range cfgs {
		chans[i] = startAsync(t, cfgs[i])
	}
	nodes := collect(t, chans)
	pollUntil(t, "one cluster of three", func() error { return oneCluster(nodes, []string{"g1", "g2", "g3"}) })
	leaderOf := func() *node.Node {
		for _, n := range nodes {
			if n != nil && n.Store().IsLeader() {
				return n
			}
		}
		return nil
	}

	// A fourth node with the same line (its own id and addresses) joins.
	fourth := clusterConfig(t, "g4")
	fourth.ClusterKey, fourth.Join, fourth.BootstrapExpect = bootstrapKey, cfgs[0].Join, 3
	nodes = append(nodes, collect(t, []<-chan started{startAsync(t, fourth)})...)
	pollUntil(t, "one cluster of four", func() error { return oneCluster(nodes, []string{"g1", "g2", "g3", "g4"}) })

	// Another node that takes the id of a live member is refused, whether
	// it starts with the shared line or is added through the admin API.
	dup := clusterConfig(t, "g2")
	dup.ClusterKey, dup.Join, dup.BootstrapExpect = bootstrapKey, cfgs[0].Join, 3
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if n, err := node.Start(dctx, dup, quietLogger()); err == nil {
		n.Close(ctx)
		t.Fatal("a second node with the id g2 started")
	} else if !strings.Contains(err.Error(), `"g2"`) || !strings.Contains(err.Error(), "--node-id") {
		t.Fatalf("a second g2: %v, want a message naming the id and --node-id", err)
	}
	pollUntil(t, "a leader", func() error {
		if leaderOf() == nil {
			return errors.New("none")
		}
		return nil
	})
	err := leaderOf().AddNode(ctx, "g2", dup.RaftAddr, dup.HTTPAddr)
	if err == nil || !strings.Contains(err.Error(), `"g2"`) || !strings.Contains(err.Error(), "--node-id") {
		t.Fatalf("adding a second g2 through the admin API: %v, want refused naming the id and --node-id", err)
	}
	if err := oneCluster(nodes, []string{"g1", "g2", "g3", "g4"}); err != nil {
		t.Fatalf("after the duplicates: %v", err)
	}

	// A node restarted with the same line rejoins its cluster.
	pick := func() int {
		for i, n := range nodes {
			if !n.Store().IsLeader() {
				return i
			}
		}
		t.Fatal("no follower")
		return -1
	}
	i := pick()
	if err := nodes[i].Close(ctx); err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(cfgs), fourth)
	nodes[i] = collect(t, []<-chan started{startAsync(t, all[i])})[0]
	pollUntil(t, "one cluster of four after a restart", func() error {
		return oneCluster(nodes, []string{"g1", "g2", "g3", "g4"})
	})

	// A member that comes back on new addresses, with its data and the
	// same line, replaces its entry: Raft address and HTTP address.
	i = pick()
	moved := all[i]
	if err := nodes[i].Close(ctx); err != nil {
		t.Fatal(err)
	}
	moved.HTTPAddr, moved.RaftAddr = testnode.FreeAddr(t), testnode.FreeAddr(t)
	nodes[i] = collect(t, []<-chan started{startAsync(t, moved)})[0]
	pollUntil(t, "the moved member's new addresses on every node", func() error {
		if err := oneCluster(nodes, []string{"g1", "g2", "g3", "g4"}); err != nil {
			return err
		}
		for _, n := range nodes {
			conf, _ := n.Store().Configuration()
			recs, err := n.Store().Nodes()
			if err != nil {
				return err
			}
			for _, s := range conf {
				if s.ID == moved.NodeID && s.RaftAddr != moved.RaftAddr {
					return fmt.Errorf("%s at raft %s, want %s", s.ID, s.RaftAddr, moved.RaftAddr)
				}
			}
			if got := recs[moved.NodeID].HTTPAddr; got != moved.HTTPAddr {
				return fmt.Errorf("%s recorded at http %s, want %s", moved.NodeID, got, moved.HTTPAddr)
			}
		}
		return nil
	})
	// The moved member takes part: it reaches the leader for a change of
	// membership (a no-op here).
	if err := nodes[i].AddNode(ctx, "g4", fourth.RaftAddr, fourth.HTTPAddr); err != nil {
		t.Fatalf("a request through the moved member: %v", err)
	}
}

// --bootstrap-expect cannot form a cluster without the other nodes' addresses
// or without a cluster key; the node says which is missing.
func TestBootstrapExpectNeedsJoinAndKey(t *testing.T) {
	cfg := bootstrapConfigs(t, "e1")[0]
	cfg.BootstrapExpect, cfg.Join = 3, []string{cfg.HTTPAddr, testnode.FreeAddr(t)}
	for _, c := range []struct {
		edit func(*node.Config)
		want string
	}{
		{func(c *node.Config) { c.Join = nil }, "--join"},
		{func(c *node.Config) { c.Join = []string{c.HTTPAddr} }, "--join"},
		{func(c *node.Config) { c.ClusterKey = "" }, "--cluster-key"},
		{func(c *node.Config) { c.ClusterKey, c.InsecureCluster = "", true }, "--insecure-cluster is not supported"},
		{func(c *node.Config) { c.BootstrapExpect = -1 }, "--bootstrap-expect -1"},
	} {
		cc := cfg
		c.edit(&cc)
		n, err := node.Start(context.Background(), cc, quietLogger())
		if err == nil {
			n.Close(context.Background())
			t.Fatalf("started with join %v, key %q, expect %d", cc.Join, cc.ClusterKey, cc.BootstrapExpect)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("refusal %q does not name %s", err, c.want)
		}
	}
}

// A node of a new cluster whose own address is not in --join (a typo in
// its port), still alone after a few seconds, says so: the others never
// asked it, and it waited without a word of why.
func TestANodeMissingFromItsOwnJoinSaysSo(t *testing.T) {
	cfg := bootstrapConfigs(t, "m1")[0]
	cfg.BootstrapExpect, cfg.Join = 3, []string{testnode.FreeAddr(t), testnode.FreeAddr(t)}
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second) // the warning comes after 5 s
	defer cancel()
	if n, err := node.Start(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil))); err == nil {
		n.Close(context.Background())
		t.Fatal("a cluster of three formed with one node")
	}
	if !strings.Contains(logs.String(), "this node's address is not in its --join") || !strings.Contains(logs.String(), cfg.HTTPAddr) {
		t.Fatalf("no word of the missing address %s in:\n%s", cfg.HTTPAddr, logs)
	}
}
