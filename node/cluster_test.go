package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/cluster"
	"github.com/herald-notify/herald/fanout/webhook/webhooktest"
	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
)

const clusterKey = "test-cluster-key-0123456789abcdefghij"

// clusterConfig is a test node of a keyed cluster. Its HTTP address is fixed
// up front so that a restarted node comes back where the others recorded it.
func clusterConfig(t *testing.T, id string, join ...string) node.Config {
	cfg := testnode.Config(t, t.TempDir())
	cfg.NodeID = id
	cfg.HTTPAddr = testnode.FreeAddr(t)
	cfg.ClusterKey = clusterKey
	cfg.Join = join
	cfg.Limits.AppRate, cfg.Limits.UserRate = 0, 0 // the test polls
	// Looser than a lone test node's 100 ms: three nodes under -race on a
	// busy two-core CI machine must not lose their leader to a slow
	// heartbeat in the middle of a test step.
	cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout = 500*time.Millisecond, 500*time.Millisecond
	return cfg
}

// slotsEvenOver checks a node's replica of the slot table: every node of
// cfgs holds a third of the slots.
func slotsEvenOver(cfgs []node.Config) func(n *testnode.Node) func() error {
	return func(n *testnode.Node) func() error {
		return func() error {
			table, err := n.Store().Slots()
			if err != nil || len(table) != raft.SlotCount {
				return fmt.Errorf("table of %d slots, %v", len(table), err)
			}
			c := map[string]int{}
			for _, id := range table {
				c[id]++
			}
			for _, cfg := range cfgs {
				if c[cfg.NodeID] < 341 || c[cfg.NodeID] > 342 {
					return fmt.Errorf("owners %v", c)
				}
			}
			return nil
		}
	}
}

// startSignedIn starts a node for each of cfgs (in order: a joining node
// needs the ones before it) and signs in as the first admin.
func startSignedIn(t *testing.T, cfgs []node.Config) ([]*testnode.Node, string) {
	t.Helper()
	nodes := make([]*testnode.Node, len(cfgs))
	for i := range cfgs {
		nodes[i] = testnode.Start(t, &cfgs[i])
	}
	tok, err := clientFor(t, nodes[0], "").PasswordToken(context.Background(), "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	return nodes, tok.AccessToken
}

// pollThreeVoters waits until n's cluster status lists three nodes.
func pollThreeVoters(t *testing.T, n *testnode.Node, adminToken string) {
	t.Helper()
	pollUntil(t, "three voters", func() error {
		st, err := clientFor(t, n, adminToken).Cluster(context.Background())
		if err != nil {
			return err
		}
		if len(st.Nodes) != 3 {
			return fmt.Errorf("%d nodes", len(st.Nodes))
		}
		return nil
	})
}

// pollFor is pollUntil with a deadline of its own.
func pollFor(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pollUntil polls f until it returns nil or the deadline passes.
func pollUntil(t *testing.T, what string, f func() error) {
	t.Helper()
	pollFor(t, 20*time.Second, what, f)
}

func clientFor(t *testing.T, n *testnode.Node, token string) *client.Client {
	c, err := client.New(n.URL, client.WithToken(token), client.WithHTTPClient(&http.Client{Transport: retryUnavailable{}}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type notifPage struct {
	Value []client.Notification `json:"value"`
}

// liveSender makes, through n, a user upn (password upn+"-password-1") and an
// application of host, signs both in, and subscribes the user's device
// to the application live: what an application needs to send to the user.
func liveSender(t *testing.T, n *testnode.Node, adminToken, upn, host string) (userToken, appToken, unsid string) {
	t.Helper()
	ctx := context.Background()
	admin := clientFor(t, n, adminToken)
	if _, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: upn, Password: upn + "-password-1"}); err != nil {
		t.Fatal(err)
	}
	app, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: host, TargetHostName: host})
	if err != nil {
		t.Fatal(err)
	}
	anon := clientFor(t, n, "")
	ut, err := anon.PasswordToken(ctx, upn, upn+"-password-1")
	if err != nil {
		t.Fatal(err)
	}
	at, err := anon.ClientCredentialsToken(ctx, app.AppID, app.PasswordCredentials[0].SecretText)
	if err != nil {
		t.Fatal(err)
	}
	var sub struct {
		ID string `json:"id"`
	}
	if err := clientFor(t, n, ut.AccessToken).Do(ctx, http.MethodPost, "/v1.0/me/notificationSubscriptions",
		map[string]any{"targetHostName": host, "platformType": "web", "deviceName": "d",
			"channel": map[string]any{"type": "live"}}, &sub); err != nil || sub.ID == "" {
		t.Fatalf("subscribe: %q, %v", sub.ID, err)
	}
	return ut.AccessToken, at.AccessToken, sub.ID
}

// appNotificationIds lists the user's feed on one node.
func appNotificationIds(ctx context.Context, c *client.Client) ([]string, error) {
	var page notifPage
	if err := c.Do(ctx, http.MethodGet, "/v1.0/me/notifications?$top=100", nil, &page); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(page.Value))
	for _, n := range page.Value {
		ids = append(ids, n.AppNotificationID)
	}
	slices.Sort(ids)
	return ids, nil
}

// A three-node cluster formed with --join: writes through a follower are
// forwarded and readable at once on that follower and soon on every node; the
// cluster survives losing its leader, and the old leader catches up when it
// returns, with every acknowledged write present exactly once everywhere.
func TestThreeNodeCluster(t *testing.T) {
	ctx := context.Background()
	cfgs := []node.Config{clusterConfig(t, "n1")}
	cfgs = append(cfgs, clusterConfig(t, "n2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "n3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	nodes := make([]*testnode.Node, 3)
	for i := range cfgs {
		nodes[i] = testnode.Start(t, &cfgs[i])
	}

	anon := clientFor(t, nodes[0], "")
	tok, err := anon.PasswordToken(ctx, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	adminToken := tok.AccessToken
	// The token was issued on one node; the others know it once they
	// have applied that entry.
	for _, n := range nodes {
		pollUntil(t, "admin token on "+n.Config.NodeID, func() error {
			_, err := clientFor(t, n, adminToken).Cluster(ctx)
			return err
		})
	}
	pollUntil(t, "every node in the cluster table", func() error {
		st, err := clientFor(t, nodes[0], adminToken).Cluster(ctx)
		if err != nil {
			return err
		}
		if len(st.Nodes) != 3 || st.SlotCount != 1024 {
			return fmt.Errorf("%d nodes, %d slots", len(st.Nodes), st.SlotCount)
		}
		for _, n := range st.Nodes {
			// Each voter owns its third of the slot table.
			if n.HTTPAddr == "" || !n.Voter || (n.State != "leader" && n.State != "follower") ||
				n.Slots < 341 || n.Slots > 342 {
				return fmt.Errorf("node %+v", n)
			}
		}
		return nil
	})

	leaderOf := func(among []*testnode.Node) (leader *testnode.Node, followers []*testnode.Node) {
		for _, n := range among {
			if n.Store().IsLeader() {
				leader = n
			} else {
				followers = append(followers, n)
			}
		}
		return leader, followers
	}
	leader, followers := leaderOf(nodes)
	if leader == nil {
		t.Fatal("no leader")
	}
	f := followers[0]

	// Everything below goes through a follower.
	admin := clientFor(t, f, adminToken)
	if _, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "bob", Password: "bob-password-1"}); err != nil {
		t.Fatalf("create user through a follower: %v", err)
	}
	app, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Tasks", TargetHostName: "tasks.cluster.test"})
	if err != nil {
		t.Fatalf("create app through a follower: %v", err)
	}
	if app.AppID == "" || len(app.PasswordCredentials) == 0 || app.PasswordCredentials[0].SecretText == "" {
		t.Fatalf("forwarded create returned %+v", app)
	}
	fanon := clientFor(t, f, "")
	ut, err := fanon.PasswordToken(ctx, "bob", "bob-password-1")
	if err != nil {
		t.Fatal(err)
	}
	at, err := fanon.ClientCredentialsToken(ctx, app.AppID, app.PasswordCredentials[0].SecretText)
	if err != nil {
		t.Fatal(err)
	}
	var sub struct {
		ID string `json:"id"`
	}
	if err := clientFor(t, f, ut.AccessToken).Do(ctx, http.MethodPost, "/v1.0/me/notificationSubscriptions",
		map[string]any{"targetHostName": "tasks.cluster.test", "platformType": "web", "deviceName": "d",
			"channel": map[string]any{"type": "live"}}, &sub); err != nil || sub.ID == "" {
		t.Fatalf("subscribe through a follower: %q, %v", sub.ID, err)
	}

	var acked []string
	send := func(via *testnode.Node, appNotifID string) {
		t.Helper()
		// A 503 (no leader, outcome unknown) is retried with the same
		// appNotificationId, which makes the retry idempotent.
		pollUntil(t, "send "+appNotifID, func() error {
			n, err := clientFor(t, via, at.AccessToken).Send(ctx, sub.ID, &client.Notification{
				AppNotificationID: appNotifID, Payload: &client.Payload{RawContent: appNotifID}})
			if err != nil {
				var ce *client.Error
				if errors.As(err, &ce) && ce.Status != http.StatusServiceUnavailable {
					t.Fatalf("send %s: %v", appNotifID, err)
				}
				return err
			}
			if n.AppNotificationID != appNotifID || n.ID == "" {
				t.Fatalf("send %s returned %+v", appNotifID, n)
			}
			return nil
		})
		acked = append(acked, appNotifID)
	}
	send(f, "first")

	// Read-after-write on the follower that took the writes, at once.
	got, err := appNotificationIds(ctx, clientFor(t, f, ut.AccessToken))
	if err != nil || !slices.Equal(got, []string{"first"}) {
		t.Fatalf("feed on the writing follower right after the send: %v, %v", got, err)
	}
	sameEverywhere := func(among []*testnode.Node) {
		t.Helper()
		want := slices.Clone(acked)
		slices.Sort(want)
		for _, n := range among {
			pollUntil(t, "feed on "+n.Config.NodeID, func() error {
				if err := clientFor(t, n, adminToken).Do(ctx, http.MethodGet, "/v1.0/users/bob", nil, nil); err != nil {
					return err
				}
				got, err := appNotificationIds(ctx, clientFor(t, n, ut.AccessToken))
				if err != nil {
					return err
				}
				if !slices.Equal(got, want) {
					return fmt.Errorf("feed %v, want %v", got, want)
				}
				return nil
			})
		}
	}
	sameEverywhere(nodes)

	// Stop the leader; the survivors elect another and keep taking writes.
	oldIdx := slices.Index(nodes, leader)
	if err := leader.Close(ctx); err != nil {
		t.Fatalf("stop leader: %v", err)
	}
	survivors := slices.Delete(slices.Clone(nodes), oldIdx, oldIdx+1)
	pollUntil(t, "a new leader", func() error {
		if l, _ := leaderOf(survivors); l == nil {
			return errors.New("none yet")
		}
		return nil
	})
	for i := range 3 {
		for _, n := range survivors {
			send(n, fmt.Sprintf("after-%s-%d", n.Config.NodeID, i))
		}
	}
	sameEverywhere(survivors)

	// The old leader returns with its data and catches up.
	nodes[oldIdx] = testnode.Start(t, &cfgs[oldIdx])
	sameEverywhere(nodes)
	send(nodes[oldIdx], "through-the-returned-node")
	sameEverywhere(nodes)

	// Membership through the admin API of whichever node the client
	// reaches: remove a follower, then add it back with its addresses.
	// The returned node may have started an election: wait for a leader
	// rather than read one that may be nil for a moment.
	pollUntil(t, "a leader after the return", func() error {
		if leader, followers = leaderOf(nodes); leader == nil || len(followers) != 2 {
			return errors.New("none yet")
		}
		return nil
	})
	victim, via := followers[0], followers[1]
	adminVia := clientFor(t, via, adminToken)
	var ce *client.Error
	if err := adminVia.Do(ctx, http.MethodDelete, "/v1.0/admin/cluster/nodes/no-such-node", nil, nil); !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
		t.Fatalf("remove an unknown node: %v", err)
	}
	if err := adminVia.Do(ctx, http.MethodDelete, "/v1.0/admin/cluster/nodes/"+victim.Config.NodeID, nil, nil); err != nil {
		t.Fatalf("remove %s: %v", victim.Config.NodeID, err)
	}
	members := func(want int) func() error {
		return func() error {
			st, err := clientFor(t, leader, adminToken).Cluster(ctx)
			if err != nil {
				return err
			}
			if len(st.Nodes) != want {
				return fmt.Errorf("%d members, want %d", len(st.Nodes), want)
			}
			for _, n := range st.Nodes {
				if n.State != "leader" && n.State != "follower" {
					return fmt.Errorf("member %+v", n)
				}
			}
			return nil
		}
	}
	pollUntil(t, "two members", members(2))
	if err := adminVia.Do(ctx, http.MethodPost, "/v1.0/admin/cluster/nodes", map[string]string{"id": victim.Config.NodeID,
		"raftAddr": victim.Store().RaftAddr(), "httpAddr": victim.Config.HTTPAddr}, nil); err != nil {
		t.Fatalf("add %s back: %v", victim.Config.NodeID, err)
	}
	pollUntil(t, "three members again", members(3))
	send(victim, "after-readding")
	sameEverywhere(nodes)

	// The leader removed (through a follower) steps down and stays able to
	// follow: added back, it is a working voter again, not one that no
	// longer answers.
	pollUntil(t, "a leader after the re-adding", func() error {
		if leader, followers = leaderOf(nodes); leader == nil || len(followers) != 2 {
			return errors.New("none yet")
		}
		return nil
	})
	victim, via = leader, followers[0]
	adminVia = clientFor(t, via, adminToken)
	if err := adminVia.Do(ctx, http.MethodDelete, "/v1.0/admin/cluster/nodes/"+victim.Config.NodeID, nil, nil); err != nil {
		t.Fatalf("remove the leader %s: %v", victim.Config.NodeID, err)
	}
	var rest []*testnode.Node
	for _, n := range nodes {
		if n != victim {
			rest = append(rest, n)
		}
	}
	pollUntil(t, "a leader among the other two", func() error {
		if leader, _ = leaderOf(rest); leader == nil {
			return errors.New("none yet")
		}
		return nil
	})
	pollUntil(t, "two members without the old leader", members(2))
	// Added back under a name rather than its address (docs/cluster.md:
	// moving a cluster's members to names).
	_, port, _ := net.SplitHostPort(victim.Store().RaftAddr())
	if err := adminVia.Do(ctx, http.MethodPost, "/v1.0/admin/cluster/nodes", map[string]string{"id": victim.Config.NodeID,
		"raftAddr": net.JoinHostPort("localhost", port), "httpAddr": victim.Config.HTTPAddr}, nil); err != nil {
		t.Fatalf("add the old leader %s back: %v", victim.Config.NodeID, err)
	}
	pollUntil(t, "three members with the old leader back", members(3))
	send(via, "after-readding-the-leader")
	sameEverywhere(nodes)
}

// A node whose cluster key differs cannot join: its join request is refused
// and it never hears from the leader. A node asked to join without any key
// is refused at start unless --insecure-cluster.
func TestJoinNeedsTheClusterKey(t *testing.T) {
	first := clusterConfig(t, "k1")
	leader := testnode.Start(t, &first)

	stranger := clusterConfig(t, "stranger", first.HTTPAddr)
	stranger.ClusterKey = "not-the-cluster-key-but-just-as-long"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	logs := &syncbuf.Buffer{}
	n, err := node.Start(ctx, stranger, slog.New(slog.NewTextHandler(logs, nil)))
	if err == nil {
		n.Close(context.Background())
		t.Fatal("a node with the wrong key joined")
	}
	st := leader.Store().Raft().GetConfiguration()
	if err := st.Error(); err != nil || len(st.Configuration().Servers) != 1 {
		t.Fatalf("membership after the stranger tried: %+v, %v", st.Configuration().Servers, err)
	}
	// The stranger is told its key is wrong, once, not that the leader is
	// slow or down.
	if got := strings.Count(logs.String(), "wrong cluster key"); got != 1 {
		t.Errorf("the stranger logged \"wrong cluster key\" %d times, want once:\n%s", got, logs)
	}

	short := clusterConfig(t, "short", first.HTTPAddr)
	short.ClusterKey = "k"
	if n, err := node.Start(context.Background(), short, quietLogger()); err == nil || !strings.Contains(err.Error(), "herald cluster key") {
		if n != nil {
			n.Close(context.Background())
		}
		t.Fatalf("a one-letter key: %v, want refused naming herald cluster key", err)
	}

	keyless := clusterConfig(t, "keyless", first.HTTPAddr)
	keyless.ClusterKey = ""
	if n, err := node.Start(context.Background(), keyless, quietLogger()); err == nil {
		n.Close(context.Background())
		t.Fatal("a node joined without a cluster key")
	}
	keyless.InsecureCluster = true
	if n, err := node.Start(context.Background(), keyless, quietLogger()); err == nil || !strings.Contains(err.Error(), "--cluster-key") {
		if n != nil {
			n.Close(context.Background())
		}
		t.Fatalf("--insecure-cluster --join without a key: %v, want refused naming --cluster-key", err)
	}
}

// A node without a cluster key, even with --insecure-cluster, serves none of
// the inter-node routes that act on its public listener (they live on the
// authenticated inter-node port, which a keyless node does not open), and it
// refuses to add a member.
func TestKeylessNodeRefusesInternalRoutes(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	cfg.InsecureCluster = true
	n := testnode.Start(t, &cfg)
	body := []byte(`{"op":"bootstrapAdmin"}`)
	for _, path := range []string{"/internal/cluster/propose", "/internal/cluster/join", "/internal/cluster/remove", "/internal/cluster/status"} {
		method := http.MethodPost
		if strings.HasSuffix(path, "/status") {
			method = http.MethodGet
		}
		req, _ := http.NewRequest(method, n.URL+path, bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s %s on the public listener: %s, want 404", method, path, resp.Status)
		}
	}
	// The one public route says where the inter-node port is, nothing more.
	var peer struct{ ID, RaftAddr string }
	resp, err := http.Get(n.URL + "/internal/cluster/peer")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&peer)
	resp.Body.Close()
	if err != nil || peer.ID != cfg.NodeID || peer.RaftAddr != n.Store().RaftAddr() {
		t.Errorf("GET /internal/cluster/peer: %+v, %v", peer, err)
	}
	err = n.AddNode(context.Background(), "other", "127.0.0.1:1", "127.0.0.1:2")
	if err == nil || !strings.Contains(err.Error(), "--cluster-key") {
		t.Errorf("adding a member to a keyless node: %v, want refused naming --cluster-key", err)
	}
	if got := n.Store().Raft().GetConfiguration().Configuration().Servers; len(got) != 1 {
		t.Errorf("members %+v", got)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A fresh node has its slot table as soon as Start returns, not after the
// first housekeeping tick (here an hour away).
func TestFreshNodeOwnsItsSlotsAtStart(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	cfg.PurgeInterval = time.Hour
	n := testnode.Start(t, &cfg)
	table, err := n.Store().Slots()
	if err != nil || len(table) != node.SlotCount {
		t.Fatalf("slot table at start: %d slots, %v", len(table), err)
	}
	for i, id := range table {
		if id != cfg.NodeID {
			t.Fatalf("slot %d owned by %q, want %s", i, id, cfg.NodeID)
		}
	}
}

// A follower that stops keeps its Raft membership, yet after the grace
// period (and not before) the leader moves its slots to the survivors: a
// pending webhook delivery of one of its users, failing on it so far, is
// delivered by a survivor with the same webhook-id, exactly once. When the
// stopped node returns, it gets its third of the slots back.
func TestUnreachableVoterLosesItsSlotsUntilItReturns(t *testing.T) {
	ctx := context.Background()
	const grace = time.Second
	hooks := webhooktest.NewReceiver(t)
	edit := func(c node.Config) node.Config {
		c.Webhook.AllowPrivate = true
		c.Webhook.DisableAfter = time.Hour
		c.Delivery.MinBackoff, c.Delivery.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
		c.Delivery.Timeout = time.Second
		c.Raft.PeerDownAfter = grace
		// Housekeeping's tick would also rebalance; an hour away, only
		// the health observer can make the move this test waits for.
		c.PurgeInterval = time.Hour
		return c
	}
	cfgs := []node.Config{edit(clusterConfig(t, "h1"))}
	cfgs = append(cfgs, edit(clusterConfig(t, "h2", cfgs[0].HTTPAddr)))
	cfgs = append(cfgs, edit(clusterConfig(t, "h3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr)))
	nodes, adminToken := startSignedIn(t, cfgs)
	// evenOverThree checks n's replica of the table: every node holds a
	// third.
	evenOverThree := slotsEvenOver(cfgs)
	pollUntil(t, "three nodes with their slots", evenOverThree(nodes[0]))
	leader, followers := leaderAndFollowers(t, nodes)
	victim, heir := followers[0], followers[1]
	table, _ := leader.Store().Slots()
	// The health-aware rebalance is a pure function of the table and the
	// reachable voters, so the test predicts where the victim's slots go,
	// and picks a user moving to the heir, a follower: a survivor that is
	// not the leader must take over.
	next := raft.Rebalance(table, []string{leader.Config.NodeID, heir.Config.NodeID})
	w := startFailingWebhook(t, hooks, leader, adminToken, "tasks.health.test", func(slot int) bool {
		return table[slot] == victim.Config.NodeID && next[slot] == heir.Config.NodeID
	})
	slot, url, webhookID := raft.SlotOf(w.uid), w.url, w.webhookID

	// No heartbeat can fail before the stop begins, so the grace period
	// is measured from here.
	stopping := time.Now()
	if err := victim.Close(ctx); err != nil {
		t.Fatalf("stop the owner: %v", err)
	}
	// The endpoint recovers only now: any 2xx comes from a survivor.
	hooks.Script(url, webhooktest.Answer{})
	// Within the grace period nothing moves (a blip moves no slots).
	if got, _ := leader.Store().Slots(); got[slot] != victim.Config.NodeID && time.Since(stopping) < grace {
		t.Fatalf("slot %d moved to %q within the grace period", slot, got[slot])
	}
	pollUntil(t, "the slot moved to the heir", func() error {
		if got, _ := heir.Store().Slots(); got[slot] != heir.Config.NodeID {
			return fmt.Errorf("slot %d owned by %q", slot, got[slot])
		}
		return nil
	})
	if took := time.Since(stopping); took < grace {
		t.Fatalf("the slot moved %v after the stop, before the %v grace period", took, grace)
	}
	// The victim is still a voter: nobody removed it.
	if servers := leader.Store().Raft().GetConfiguration().Configuration().Servers; len(servers) != 3 {
		t.Fatalf("members %+v, want all three", servers)
	}
	// The leader's status says for how long it has not heard from it, at
	// least the grace period, not 0 ("just now"), and so do its metrics.
	for _, ns := range leader.Cluster().(cluster.ClusterStatus).Nodes {
		if ns.ID == victim.Config.NodeID && (ns.State != "unreachable" || ns.LastContactMs < grace.Milliseconds()) {
			t.Errorf("the stopped node's status %+v, want unreachable for at least %v", ns, grace)
		}
	}
	peer := func(name, id string) float64 { return metric(t, leader, name+`{peer="`+id+`"}`) }
	if a, s := peer("herald_cluster_peer_answering", victim.Config.NodeID), peer("herald_cluster_peer_silent_seconds", victim.Config.NodeID); a != 0 || s < grace.Seconds() {
		t.Errorf("the leader's metrics of the stopped node: answering %v, silent %vs", a, s)
	}
	if a := peer("herald_cluster_peer_answering", heir.Config.NodeID); a != 1 {
		t.Errorf("the leader's metrics of the heir: answering %v", a)
	}
	if got, _ := leader.Store().Slots(); !slices.Equal(got, next) {
		t.Fatal("the table after the move is not the predicted rebalance over the two survivors")
	}
	pollUntil(t, "delivered by the heir", func() error {
		ok := hooks.Delivered(url)
		if len(ok) == 0 {
			return errors.New("not yet")
		}
		if len(ok) > 1 {
			t.Fatalf("%d deliveries, want 1", len(ok))
		}
		return nil
	})
	for _, q := range hooks.Requests(url) {
		if q.ID != webhookID {
			t.Errorf("an attempt with webhook-id %s, want %s throughout", q.ID, webhookID)
		}
	}
	for _, q := range hooks.Rejected() {
		t.Errorf("the receiver refused %s: %v", q.URL, q.Err)
	}
	// The receiver records the request before the heir has its answer and
	// counts it, so the heir's counter is polled, not read once.
	pollUntil(t, "the heir counts its delivery", func() error {
		if d := webhookAttempts(t, heir, adminToken, "delivered"); d != 1 {
			return fmt.Errorf("the heir delivered %v times, want 1", d)
		}
		return nil
	})

	// The victim returns and gets its share back, on every replica.
	vi := slices.Index(nodes, victim)
	nodes[vi] = testnode.Start(t, &cfgs[vi])
	for _, n := range nodes {
		pollUntil(t, "the table spread over three again on "+n.Config.NodeID, evenOverThree(n))
	}
}

// retryUnavailable retries a request answered 503, as the contract asks of
// clients (Retry-After): an election can happen during any step of a
// cluster test, and what the tests prove is that writes go on afterwards.
type retryUnavailable struct{}

func (retryUnavailable) RoundTrip(req *http.Request) (*http.Response, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) || req.GetBody == nil && req.Body != nil {
			return resp, err
		}
		resp.Body.Close()
		time.Sleep(100 * time.Millisecond)
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// A removed node stays out when it restarts with its usual --join (found by
// an operator's review: it asked to join again and the leader took it back
// as a voter, undoing the removal). It stops with what to do: emptied, it
// joins again as a new node.
func TestARemovedNodeDoesNotRejoinByItself(t *testing.T) {
	ctx := context.Background()
	cfgs := []node.Config{clusterConfig(t, "n1")}
	cfgs = append(cfgs, clusterConfig(t, "n2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "n3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	nodes, adminToken := startSignedIn(t, cfgs)
	admin := clientFor(t, nodes[0], adminToken)
	members := func(want int) func() error {
		return func() error {
			st, err := admin.Cluster(ctx)
			if err != nil {
				return err
			}
			if len(st.Nodes) != want {
				return fmt.Errorf("%d members, want %d", len(st.Nodes), want)
			}
			return nil
		}
	}
	pollUntil(t, "three members", members(3))
	pollUntil(t, "n3 removed", func() error {
		err := admin.Do(ctx, http.MethodDelete, "/v1.0/admin/cluster/nodes/n3", nil, nil)
		var ce *client.Error
		if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
			return nil // an earlier try removed it
		}
		return err
	})
	pollUntil(t, "two members", members(2))
	// While it runs outside the cluster, its /readyz says so, not only
	// "no leader", which sends an operator looking for a lost quorum.
	pollUntil(t, "the removed node's /readyz says it was removed", func() error {
		var body bytes.Buffer
		if code := httpGet(t, nodes[2].URL+"/readyz", &body); code != http.StatusServiceUnavailable || !strings.Contains(body.String(), "not a member of the cluster") {
			return fmt.Errorf("%d %s", code, body.String())
		}
		return nil
	})
	if err := nodes[2].Close(ctx); err != nil {
		t.Fatal(err)
	}

	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := node.Start(sctx, cfgs[2], quietLogger())
	if err == nil {
		n.Close(ctx)
		t.Fatal("the removed node started, and joined again by itself")
	}
	if !strings.Contains(err.Error(), "it was removed") || !strings.Contains(err.Error(), "empty its data directory") {
		t.Fatalf("the removed node's start: %v; want the refusal that says how to have it join again", err)
	}
	if err := members(2)(); err != nil {
		t.Fatalf("after the removed node's restart: %v", err)
	}

	// As the refusal says: emptied, it joins as a new node.
	if err := os.RemoveAll(cfgs[2].DataDir); err != nil {
		t.Fatal(err)
	}
	testnode.Start(t, &cfgs[2])
	pollUntil(t, "three members again", members(3))
}

// Removing a node through its own API, as docs/cluster.md removes n4 with
// --server naming n4, records the removal, and the removed node, which
// cannot apply the record any more, does not log it as lost: it used to
// warn "could not write an audit record" for a record the others hold.
func TestRemovingANodeThroughItselfRecordsIt(t *testing.T) {
	ctx := context.Background()
	cfgs := []node.Config{clusterConfig(t, "n1")}
	cfgs = append(cfgs, clusterConfig(t, "n2", cfgs[0].HTTPAddr))
	nodes, adminToken := startSignedIn(t, cfgs)
	third := clusterConfig(t, "n3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr)
	var out syncbuf.Buffer
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	n3, err := node.Start(sctx, third, slog.New(slog.NewTextHandler(&out, nil)))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n3.Close(context.Background()) })
	admin := clientFor(t, nodes[0], adminToken)
	pollUntil(t, "three members", func() error {
		st, err := admin.Cluster(ctx)
		if err == nil && len(st.Nodes) != 3 {
			err = fmt.Errorf("%d members", len(st.Nodes))
		}
		return err
	})

	through3, err := client.New("http://"+third.HTTPAddr, client.WithToken(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	if err := through3.Do(ctx, http.MethodDelete, "/v1.0/admin/cluster/nodes/n3", nil, nil); err != nil {
		t.Fatalf("removing n3 through n3: %v", err)
	}
	pollUntil(t, "the removal in the audit log", func() error {
		var page struct {
			Value []struct {
				Action, Target, Result string
			} `json:"value"`
		}
		if err := admin.Do(ctx, http.MethodGet, "/v1.0/admin/auditLog?action=cluster.removeNode", nil, &page); err != nil {
			return err
		}
		if len(page.Value) != 1 || page.Value[0].Result != "success" {
			return fmt.Errorf("audit records %+v", page.Value)
		}
		return nil
	})
	if log := out.String(); strings.Contains(log, "could not write an audit record") {
		t.Errorf("the removed node says the record it wrote is lost:\n%s", log)
	}
}

// An admin's "herald cluster join" naming a node that does not answer (a
// typo in the address, or the node not started yet) is refused with what is
// wrong; it used to read "the cluster has no leader right now", with a
// Retry-After, on a cluster with a leader.
func TestJoiningANodeThatDoesNotAnswerSaysSo(t *testing.T) {
	ctx := context.Background()
	cfg := clusterConfig(t, "n1")
	nodes, adminToken := startSignedIn(t, []node.Config{cfg})
	admin := clientFor(t, nodes[0], adminToken)
	ghostRaft := testnode.FreeAddr(t)
	err := admin.Do(ctx, http.MethodPost, "/v1.0/admin/cluster/nodes",
		map[string]string{"id": "ghost", "raftAddr": ghostRaft, "httpAddr": testnode.FreeAddr(t)}, nil)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest ||
		!strings.Contains(ce.Message, "does not answer at "+ghostRaft) {
		t.Fatalf("adding a node that does not answer: %v; want 400 saying it does not answer", err)
	}
	st, err := admin.Cluster(ctx)
	if err != nil || len(st.Nodes) != 1 {
		t.Fatalf("after the refused join: %+v, %v; want the one member", st, err)
	}
}

// A voter whose slots moved away because it stopped answering does not get
// them back from a new leader that has not heard from it: the new leader's
// view of its peers starts empty, and it used to hand the stopped node its
// share at once (its first rebalance, "slots moved ... not_answering=[]"),
// stalling those users' deliveries for another grace period. Here the
// leadership moves between the two survivors while the third is stopped.
func TestNewLeaderDoesNotGiveSlotsBackToAStoppedVoter(t *testing.T) {
	ctx := context.Background()
	const grace = time.Second
	edit := func(c node.Config) node.Config {
		c.Raft.PeerDownAfter = grace
		c.PurgeInterval = time.Hour // only the health observer rebalances
		return c
	}
	cfgs := []node.Config{edit(clusterConfig(t, "g1"))}
	cfgs = append(cfgs, edit(clusterConfig(t, "g2", cfgs[0].HTTPAddr)))
	cfgs = append(cfgs, edit(clusterConfig(t, "g3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr)))
	nodes, _ := startSignedIn(t, cfgs)
	pollUntil(t, "three nodes with their slots", slotsEvenOver(cfgs)(nodes[0]))
	leader, followers := leaderAndFollowers(t, nodes)
	victim, heir := followers[0], followers[1]
	if err := victim.Close(ctx); err != nil {
		t.Fatal(err)
	}
	owns := func(n *testnode.Node) int {
		table, _ := n.Store().Slots()
		return slices.Index(table, victim.Config.NodeID)
	}
	// On both survivors' replicas: the heir must not be caught applying
	// the move after it leads.
	pollUntil(t, "the stopped node's slots moved", func() error {
		for _, n := range []*testnode.Node{leader, heir} {
			if i := owns(n); i >= 0 {
				return fmt.Errorf("it still owns slot %d on %s", i, n.Config.NodeID)
			}
		}
		return nil
	})
	if err := leader.Store().Raft().LeadershipTransferToServer(hraft.ServerID(heir.Config.NodeID),
		hraft.ServerAddress(heir.Store().RaftAddr())).Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	pollUntil(t, "the heir leads", func() error {
		if !heir.Store().IsLeader() {
			return errors.New("not yet")
		}
		return nil
	})
	// The old view would have the stopped node back within moments, for
	// at least the grace period; watch for three of them.
	until := time.Now().Add(3 * grace)
	for time.Now().Before(until) {
		if i := owns(heir); i >= 0 {
			t.Fatalf("the new leader gave the stopped node slot %d back", i)
		}
		time.Sleep(10 * time.Millisecond) // sampling the table, not waiting for luck
	}
}

// A leader that hands over (here a leadership transfer) fences itself until
// it has caught up with the new leader, and says why in terms that are true:
// it stopped leading. It used to measure the gap from the last contact it had
// as a follower, before its term, and log "no contact with the leader for"
// that long, sending the operator after a network fault that never was.
func TestAStepDownIsNotLoggedAsALostContact(t *testing.T) {
	ctx := context.Background()
	const grace = time.Second // a lease of 500 ms
	cfgs := []node.Config{clusterConfig(t, "s1")}
	cfgs = append(cfgs, clusterConfig(t, "s2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "s3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	logs := make([]*syncbuf.Buffer, len(cfgs))
	nodes := make([]*node.Node, len(cfgs))
	for i := range cfgs {
		cfgs[i].Raft.PeerDownAfter = grace
		logs[i] = &syncbuf.Buffer{}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := node.Start(sctx, cfgs[i], slog.New(slog.NewTextHandler(logs[i], nil)))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close(context.Background()) })
		nodes[i] = n
	}
	leaderIndex := func() int {
		for i, n := range nodes {
			if n.Store().IsLeader() {
				return i
			}
		}
		return -1
	}
	// transfer hands the leadership from the leader to the next node and
	// returns the new leader's index.
	transfer := func() int {
		t.Helper()
		var from int
		pollUntil(t, "a leader", func() error {
			if from = leaderIndex(); from < 0 {
				return errors.New("none")
			}
			return nil
		})
		to := (from + 1) % len(nodes)
		if err := nodes[from].Store().Raft().LeadershipTransferToServer(hraft.ServerID(cfgs[to].NodeID),
			hraft.ServerAddress(nodes[to].Store().RaftAddr())).Error(); err != nil {
			t.Fatalf("leadership transfer: %v", err)
		}
		pollUntil(t, "the new leader leads", func() error {
			if !nodes[to].Store().IsLeader() {
				return errors.New("not yet")
			}
			return nil
		})
		return to
	}
	// The next leader was a follower in contact with the first one; it
	// leads for longer than the lease.
	led := transfer()
	for start := time.Now(); time.Since(start) < 2*grace; {
		time.Sleep(20 * time.Millisecond) // leading for longer than the lease is the point
	}
	before := len(logs[led].String())
	transfer()
	pollUntil(t, "the old leader fences itself", func() error {
		if !strings.Contains(logs[led].String()[before:], "external deliveries stopped") {
			return errors.New("not yet")
		}
		return nil
	})
	for _, line := range strings.Split(logs[led].String()[before:], "\n") {
		if strings.Contains(line, "external deliveries stopped") && strings.Contains(line, "no contact with the leader for") {
			t.Errorf("the old leader logs a lost contact: %s", line)
		}
	}
}

// httpGet answers the status of a GET of url and copies its body to body
// (discarded when nil).
func httpGet(t *testing.T, url string, body io.Writer) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body == nil {
		body = io.Discard
	}
	io.Copy(body, resp.Body)
	return resp.StatusCode
}
