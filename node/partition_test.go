package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/fanout/webhook/webhooktest"
	"github.com/herald-notify/herald/internal/faultproxy"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// mesh routes every connection node i makes to node j (Raft and internal
// HTTP) through proxies of its own, so that a test can cut any link.
type mesh struct {
	cfgs []node.Config
	// links[i][j] are the proxies of i → j: Raft, then HTTP.
	links [][]faultproxy.Group

	mu       sync.Mutex
	unrouted []string
}

// newMesh fixes the configs' dials. Call it before starting the nodes, so
// that the proxies outlive them (cleanups run last first).
func newMesh(t *testing.T, cfgs []node.Config) *mesh {
	t.Helper()
	m := &mesh{cfgs: cfgs, links: make([][]faultproxy.Group, len(cfgs))}
	// The nodes' addresses were free when picked but are not bound yet: a
	// proxy on port 0 could be given one of them.
	taken := map[string]bool{}
	for _, c := range cfgs {
		taken[c.RaftAddr], taken[c.HTTPAddr] = true, true
	}
	newProxy := func(target string) *faultproxy.Proxy {
		for {
			p, err := faultproxy.New(target)
			if err != nil {
				t.Fatal(err)
			}
			if !taken[p.Addr()] {
				t.Cleanup(func() { p.Close() })
				return p
			}
			p.Close()
		}
	}
	for i := range cfgs {
		m.links[i] = make([]faultproxy.Group, len(cfgs))
		route := map[string]string{}
		for j := range cfgs {
			if i == j {
				continue
			}
			for _, target := range []string{cfgs[j].RaftAddr, cfgs[j].HTTPAddr} {
				p := newProxy(target)
				m.links[i][j] = append(m.links[i][j], p)
				route[target] = p.Addr()
			}
		}
		own := map[string]bool{cfgs[i].RaftAddr: true, cfgs[i].HTTPAddr: true}
		cfgs[i].Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			to, ok := route[addr]
			if !ok {
				to = addr
				if !own[addr] {
					// A link around the proxies would make any cut a lie.
					m.mu.Lock()
					m.unrouted = append(m.unrouted, fmt.Sprintf("%s → %s", cfgs[i].NodeID, addr))
					m.mu.Unlock()
				}
			}
			return (&net.Dialer{}).DialContext(ctx, "tcp", to)
		}
	}
	return m
}

// of is every link from or to node i.
func (m *mesh) of(i int) faultproxy.Group {
	var g faultproxy.Group
	for j := range m.cfgs {
		g = append(append(g, m.links[i][j]...), m.links[j][i]...)
	}
	return g
}

// all is every link.
func (m *mesh) all() faultproxy.Group {
	var g faultproxy.Group
	for i := range m.links {
		for j := range m.links[i] {
			g = append(g, m.links[i][j]...)
		}
	}
	return g
}

func (m *mesh) check(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.unrouted {
		t.Errorf("a connection around the proxies: %s", u)
	}
}

// metricValue reads an unlabelled metric of n.
func metricValue(t *testing.T, n *testnode.Node, token, name string) (float64, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no metric %s on %s (%s)", name, n.Config.NodeID, resp.Status)
}

// A follower cut off from both others, while it keeps failing to deliver
// webhooks of a user in one of its slots, fences itself before the leader
// moves its slots: once the fence is up it makes no new attempt, the new
// owner delivers each notification exactly once with the webhook-id the
// cut-off node used, and after the partition heals the node rejoins,
// catches up, delivers nothing twice, and delivers again for the users it
// owns. Every inter-node connection runs
// through a fault-injecting proxy of its own.
func TestPartitionedOwnerFencesItselfBeforeItsSlotsMove(t *testing.T) {
	partitionOwner(t, false)
}

// The same when the cut-off owner is the leader: it steps down and fences
// itself, the others elect a leader that moves its slots, and the old
// leader, back as a follower, catches up before it delivers again.
func TestPartitionedLeaderFencesItselfBeforeItsSlotsMove(t *testing.T) {
	partitionOwner(t, true)
}

// partitionOwner cuts off the node owning a failing webhook delivery (the
// leader, or a follower) and checks that the delivery is made exactly once.
func partitionOwner(t *testing.T, cutLeader bool) {
	ctx := context.Background()
	const (
		peerDownAfter = 3 * time.Second
		attemptBound  = 500 * time.Millisecond // Delivery.Timeout
		notifications = 3
	)
	hooks := webhooktest.NewReceiver(t)
	edit := func(c node.Config) node.Config {
		c.Webhook.AllowPrivate = true
		c.Webhook.DisableAfter = time.Hour
		// Short backoff: an owner that did not fence would be seen
		// attempting many times in any window the test looks at.
		c.Delivery.MinBackoff, c.Delivery.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
		c.Delivery.Timeout = attemptBound
		c.Raft.PeerDownAfter = peerDownAfter
		return c
	}
	cfgs := []node.Config{edit(clusterConfig(t, "p1"))}
	cfgs = append(cfgs, edit(clusterConfig(t, "p2", cfgs[0].HTTPAddr)))
	cfgs = append(cfgs, edit(clusterConfig(t, "p3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr)))
	m := newMesh(t, cfgs)
	nodes, adminToken := startSignedIn(t, cfgs)
	evenOverThree := slotsEvenOver(cfgs)
	for _, n := range nodes {
		pollUntil(t, "three nodes with their slots on "+n.Config.NodeID, evenOverThree(n))
		pollUntil(t, "the admin token and an open fence on "+n.Config.NodeID, func() error {
			if v, err := metricValue(t, n, adminToken, "herald_cluster_fenced"); err != nil || v != 0 {
				return fmt.Errorf("fenced %v, %v", v, err)
			}
			return nil
		})
	}
	leader, followers := leaderAndFollowers(t, nodes)
	table, _ := leader.Store().Slots()
	// The move is a pure function of the table and the reachable voters,
	// so the test picks the user and the node to cut together: with a
	// follower cut off, a user of that follower whose slot goes to the
	// other follower, so that the leader (which makes the move) is not the
	// one that takes over; with the leader cut off, any of its users.
	nodeOf := func(id string) *testnode.Node {
		return nodes[slices.IndexFunc(nodes, func(n *testnode.Node) bool { return n.Config.NodeID == id })]
	}
	victimOf := func(s int) *testnode.Node {
		owner := nodeOf(table[s])
		if cutLeader {
			if owner == leader {
				return owner
			}
			return nil
		}
		if owner == leader {
			return nil
		}
		other := followers[0]
		if other == owner {
			other = followers[1]
		}
		if raft.Rebalance(table, []string{leader.Config.NodeID, other.Config.NodeID})[s] != other.Config.NodeID {
			return nil
		}
		return owner
	}
	const host = "tasks.partition.test"
	admin := clientFor(t, leader, adminToken)
	var upn, uid string
	var victim *testnode.Node
	users := map[string]string{} // every user made, by name: its id
	newUser := func(i int) (string, string) {
		name := fmt.Sprintf("user%d", i)
		u, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: name, Password: "user-password-1"})
		if err != nil {
			t.Fatal(err)
		}
		users[name] = u.ID
		return name, u.ID
	}
	for i := 0; upn == ""; i++ {
		if i == 60 {
			t.Fatal("no user in a slot that moves as the test needs")
		}
		name, id := newUser(i)
		if victim = victimOf(raft.SlotOf(id)); victim != nil {
			upn, uid = name, id
		}
	}
	vi := slices.Index(nodes, victim)
	var survivors []*testnode.Node
	for _, n := range nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	slot := raft.SlotOf(uid)
	app, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Tasks", TargetHostName: host})
	if err != nil {
		t.Fatal(err)
	}
	anon := clientFor(t, leader, "")
	ut, err := anon.PasswordToken(ctx, upn, "user-password-1")
	if err != nil {
		t.Fatal(err)
	}
	at, err := anon.ClientCredentialsToken(ctx, app.AppID, app.PasswordCredentials[0].SecretText)
	if err != nil {
		t.Fatal(err)
	}
	url := hooks.Endpoint()
	hooks.Script(url, webhooktest.Answer{Status: http.StatusInternalServerError})
	var sub struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if err := clientFor(t, leader, ut.AccessToken).Do(ctx, http.MethodPost, "/v1.0/me/notificationSubscriptions",
		map[string]any{"targetHostName": host, "platformType": "windows", "deviceName": "d",
			"channel": map[string]any{"type": "webhook", "url": url}}, &sub); err != nil {
		t.Fatal(err)
	}
	if err := hooks.SetSecret(url, sub.Secret); err != nil {
		t.Fatal(err)
	}
	sender := clientFor(t, leader, at.AccessToken)
	var ids []string
	for i := range notifications {
		n, err := sender.Send(ctx, sub.ID, &client.Notification{AppNotificationID: fmt.Sprintf("cut-%d", i),
			Payload: &client.Payload{RawContent: "partition"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, n.ID)
	}
	// requestsOf groups the receiver's requests by notification id.
	requestsOf := func(reqs []webhooktest.Request) map[string][]webhooktest.Request {
		out := map[string][]webhooktest.Request{}
		for _, q := range reqs {
			id, _ := q.Notification()["id"].(string)
			out[id] = append(out[id], q)
		}
		return out
	}
	pollUntil(t, "failed attempts by the owner", func() error {
		by := requestsOf(hooks.Requests(url))
		for _, id := range ids {
			if len(by[id]) < 2 {
				return fmt.Errorf("%d attempts of %s", len(by[id]), id)
			}
		}
		return nil
	})
	// Until the cut only the victim owns the slot: these are its attempts,
	// and their webhook-ids are the ones every later attempt must carry.
	webhookID := map[string]string{}
	for id, qs := range requestsOf(hooks.Requests(url)) {
		webhookID[id] = qs[0].ID
	}
	for _, n := range survivors {
		if a := webhookAttempts(t, n, adminToken, ""); a != 0 {
			t.Fatalf("%v attempts by %s, which does not own the slot", a, n.Config.NodeID)
		}
	}

	m.of(vi).Cut()
	pollUntil(t, "the cut-off node fenced", func() error {
		if v, err := metricValue(t, victim, adminToken, "herald_cluster_fenced"); err != nil || v != 1 {
			return fmt.Errorf("fenced %v, %v", v, err)
		}
		return nil
	})
	fencedSeen := time.Now()
	// Attempts end (and are counted) at most attemptBound after they
	// start; one per notification may have been in flight at the fence.
	victimAttempts := webhookAttempts(t, victim, adminToken, "")
	// Reads and streams are not external deliveries: the cut-off node
	// still serves its own clients from its replica.
	if got, err := appNotificationIds(ctx, clientFor(t, victim, ut.AccessToken)); err != nil || len(got) != notifications {
		t.Fatalf("the feed on the cut-off node: %v, %v", got, err)
	}

	// Wait for the leader of the survivors to move the slot, noting the
	// last moment at which neither survivor's replica had the move
	// applied: until then neither owned the slot nor attempted.
	var notMovedAt time.Time
	var heir *testnode.Node
	pollUntil(t, "the slot moved to a survivor", func() error {
		now := time.Now()
		moved := 0
		for _, n := range survivors {
			if st, _ := n.Store().Slots(); st[slot] != victim.Config.NodeID {
				moved++
				heir = nodeOf(st[slot])
			}
		}
		if moved == 0 {
			notMovedAt = now
		}
		if moved < len(survivors) {
			return fmt.Errorf("slot %d moved on %d survivors", slot, moved)
		}
		return nil
	})
	if heir == victim {
		t.Fatalf("slot %d moved to %s", slot, heir.Config.NodeID)
	}
	idle := survivors[0]
	if idle == heir {
		idle = survivors[1]
	}
	// Every request that reached the receiver after the fence (past the
	// bound of an attempt in flight) and before the move would be the
	// cut-off node's: there must be none.
	if quiet := notMovedAt.Sub(fencedSeen.Add(attemptBound)); quiet > 0 {
		for _, q := range hooks.Requests(url) {
			if q.At.After(fencedSeen.Add(attemptBound)) && q.At.Before(notMovedAt) {
				t.Errorf("a request at %v, %v after the fence was seen, before the slot moved",
					q.At.Format(time.StampMilli), q.At.Sub(fencedSeen))
			}
		}
	} else {
		t.Logf("the slot moved %v after the fence was seen: no window to look for late attempts in", notMovedAt.Sub(fencedSeen))
	}

	// The endpoint recovers only now: every 2xx comes from the heir.
	hooks.Script(url, webhooktest.Answer{})
	pollUntil(t, "every notification delivered", func() error {
		by := requestsOf(hooks.Delivered(url))
		for _, id := range ids {
			if len(by[id]) == 0 {
				return fmt.Errorf("%s not delivered", id)
			}
		}
		return nil
	})
	pollUntil(t, "the heir counts its deliveries", func() error {
		if d := webhookAttempts(t, heir, adminToken, "delivered"); d != notifications {
			return fmt.Errorf("the heir delivered %v times, want %d", d, notifications)
		}
		return nil
	})
	if a := webhookAttempts(t, victim, adminToken, ""); a > victimAttempts+notifications {
		t.Errorf("the fenced node made %v attempts after its fence was seen; at most %d could have been in flight",
			a-victimAttempts, notifications)
	}
	if d := webhookAttempts(t, victim, adminToken, "delivered"); d != 0 {
		t.Errorf("the fenced node delivered %v times", d)
	}
	if a := webhookAttempts(t, idle, adminToken, ""); a != 0 {
		t.Errorf("%s, which never owned the slot, made %v attempts", idle.Config.NodeID, a)
	}

	// Heal: the node hears from the leader again, catches up, lifts its
	// fence and gets its share of the slots back.
	m.all().Heal()
	pollUntil(t, "the healed node rejoined and lifted its fence", func() error {
		if v, err := metricValue(t, victim, adminToken, "herald_cluster_fenced"); err != nil || v != 0 {
			return fmt.Errorf("fenced %v, %v", v, err)
		}
		if victim.Store().IsLeader() {
			return nil // it won an election again: its log is the cluster's
		}
		if victim.Store().Applied() < heir.Store().Applied() {
			return errors.New("behind the others")
		}
		return nil
	})
	for _, n := range nodes {
		pollUntil(t, "the table spread over three again on "+n.Config.NodeID, evenOverThree(n))
	}
	// One more notification after the heal, delivered by whichever node
	// now owns the slot, shows the engines at work; by then a node that
	// delivered from a stale replica would have delivered again too.
	after, err := clientFor(t, heir, at.AccessToken).Send(ctx, sub.ID, &client.Notification{AppNotificationID: "after-heal",
		Payload: &client.Payload{RawContent: "partition"}})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, after.ID)
	pollUntil(t, "the notification after the heal delivered", func() error {
		if len(requestsOf(hooks.Delivered(url))[after.ID]) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	delivered := requestsOf(hooks.Delivered(url))
	all := requestsOf(hooks.Requests(url))
	for _, id := range ids {
		if len(delivered[id]) != 1 {
			t.Errorf("notification %s delivered %d times, want exactly once", id, len(delivered[id]))
		}
		want := webhookID[id]
		if want == "" && len(all[id]) > 0 {
			want = all[id][0].ID
		}
		for _, q := range all[id] {
			if q.ID != want {
				t.Errorf("notification %s: an attempt with webhook-id %s, want %s throughout", id, q.ID, want)
			}
		}
	}
	pollUntil(t, "every delivery recorded as delivered", func() error {
		for _, id := range ids {
			var out struct{ Value []resource.Delivery }
			if err := clientFor(t, leader, ut.AccessToken).Do(ctx, http.MethodGet,
				"/v1.0/me/notifications/"+id+"/deliveries", nil, &out); err != nil {
				return err
			}
			if len(out.Value) != 1 || out.Value[0].State != resource.DeliveryDelivered {
				return fmt.Errorf("deliveries of %s: %+v", id, out.Value)
			}
		}
		return nil
	})

	// The healed node delivers again for the users it owns now: a user of
	// one of its slots (made before the cut, or now) gets a webhook
	// delivered by it.
	vt, _ := victim.Store().Slots()
	var upn2 string
	for name, id := range users {
		if name != upn && vt[raft.SlotOf(id)] == victim.Config.NodeID {
			upn2 = name
		}
	}
	for i := len(users); upn2 == ""; i++ {
		if i == 60 {
			t.Fatal("no user in a slot of the healed node")
		}
		if name, id := newUser(i); vt[raft.SlotOf(id)] == victim.Config.NodeID {
			upn2 = name
		}
	}
	// Through the node the users were made on, which has applied them
	// (reading a write at once on another node is not this test's matter).
	ut2, err := clientFor(t, leader, "").PasswordToken(ctx, upn2, "user-password-1")
	if err != nil {
		t.Fatal(err)
	}
	url2 := hooks.Endpoint()
	if err := clientFor(t, leader, ut2.AccessToken).Do(ctx, http.MethodPost, "/v1.0/me/notificationSubscriptions",
		map[string]any{"targetHostName": host, "platformType": "windows", "deviceName": "d",
			"channel": map[string]any{"type": "webhook", "url": url2}}, &sub); err != nil {
		t.Fatal(err)
	}
	if err := hooks.SetSecret(url2, sub.Secret); err != nil {
		t.Fatal(err)
	}
	// The slot of the first user may have come back to it too, with the
	// notification sent after the heal.
	before := webhookAttempts(t, victim, adminToken, "delivered")
	healed, err := clientFor(t, leader, at.AccessToken).Send(ctx, sub.ID, &client.Notification{
		AppNotificationID: "healed-owner", Payload: &client.Payload{RawContent: "partition"}})
	if err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "a delivery by the healed node", func() error {
		if n := len(hooks.Delivered(url2)); n != 1 {
			return fmt.Errorf("%d deliveries to the healed node's user", n)
		}
		if d := webhookAttempts(t, victim, adminToken, "delivered"); d != before+1 {
			return fmt.Errorf("the healed node delivered %v times, want %v", d, before+1)
		}
		// Recorded through Raft too, so that no outcome is still on its
		// way when the nodes stop.
		var out struct{ Value []resource.Delivery }
		if err := clientFor(t, leader, ut2.AccessToken).Do(ctx, http.MethodGet,
			"/v1.0/me/notifications/"+healed.ID+"/deliveries", nil, &out); err != nil {
			return err
		}
		if len(out.Value) != 1 || out.Value[0].State != resource.DeliveryDelivered {
			return fmt.Errorf("deliveries %+v", out.Value)
		}
		return nil
	})
	for _, q := range hooks.Rejected() {
		t.Errorf("the receiver refused %s: %v", q.URL, q.Err)
	}
	m.check(t)
}
