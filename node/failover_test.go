package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/fanout/webhook/webhooktest"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// A webhook delivery that keeps failing on the node owning its user's slot
// is taken over by a surviving node once that owner stops: the dead member
// is removed (here before the 10 s default grace after which the leader
// would move its slots anyway, see TestUnreachableVoterLosesItsSlotsUntilItReturns),
// the slots are rebalanced, and the new
// owner — chosen to be a follower, so that a leader-runs-everything engine
// would fail this test — rescans and delivers with the same webhook-id.
func TestFailoverMovesPendingDeliveries(t *testing.T) {
	ctx := context.Background()
	hooks := webhooktest.NewReceiver(t)
	edit := func(c node.Config) node.Config {
		c.Webhook.AllowPrivate = true
		c.Webhook.DisableAfter = time.Hour
		c.Delivery.MinBackoff, c.Delivery.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
		c.Delivery.Timeout = time.Second
		return c
	}
	cfgs := []node.Config{edit(clusterConfig(t, "f1"))}
	cfgs = append(cfgs, edit(clusterConfig(t, "f2", cfgs[0].HTTPAddr)))
	cfgs = append(cfgs, edit(clusterConfig(t, "f3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr)))
	nodes, adminToken := startSignedIn(t, cfgs)
	pollUntil(t, "three nodes with their slots", func() error {
		st, err := clientFor(t, nodes[0], adminToken).Cluster(ctx)
		if err != nil {
			return err
		}
		if len(st.Nodes) != 3 {
			return fmt.Errorf("%d nodes", len(st.Nodes))
		}
		for _, n := range st.Nodes {
			if n.Slots < 341 || n.Slots > 342 {
				return fmt.Errorf("node %+v", n)
			}
		}
		return nil
	})
	var leader *testnode.Node
	for _, n := range nodes {
		if n.Store().IsLeader() {
			leader = n
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	table, err := leader.Store().Slots()
	if err != nil || len(table) != raft.SlotCount {
		t.Fatalf("slot table: %d slots, %v", len(table), err)
	}
	// Find a user owned by one follower (the victim) whose slot the
	// rebalance after the victim's removal gives to the other follower
	// (the heir). Rebalance is a pure function, so the test can predict it.
	var victim, heir *testnode.Node
	for _, n := range nodes {
		if n != leader {
			if victim == nil {
				victim = n
			} else {
				heir = n
			}
		}
	}
	next := raft.Rebalance(table, []string{leader.Config.NodeID, heir.Config.NodeID})
	w := startFailingWebhook(t, hooks, leader, adminToken, "tasks.failover.test", func(slot int) bool {
		return table[slot] == victim.Config.NodeID && next[slot] == heir.Config.NodeID
	})
	upn, uid, url, webhookID, sent := w.upn, w.uid, w.url, w.webhookID, w.sent

	if err := victim.Close(ctx); err != nil {
		t.Fatalf("stop the owner: %v", err)
	}
	// The endpoint recovers only now: any 2xx comes from a survivor.
	hooks.Script(url, webhooktest.Answer{})
	via := clientFor(t, heir, adminToken)
	pollUntil(t, "remove the stopped owner", func() error {
		err := via.Do(ctx, http.MethodDelete, "/v1.0/admin/cluster/nodes/"+victim.Config.NodeID, nil, nil)
		var ce *client.Error
		if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
			return nil // an earlier try removed it
		}
		return err
	})
	pollUntil(t, "delivered by a survivor", func() error {
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
	pollUntil(t, "the delivery recorded as delivered", func() error {
		var out struct{ Value []resource.Delivery }
		if err := clientFor(t, leader, w.userToken).Do(ctx, http.MethodGet,
			"/v1.0/me/notifications/"+sent.ID+"/deliveries", nil, &out); err != nil {
			return err
		}
		if len(out.Value) != 1 || out.Value[0].State != resource.DeliveryDelivered {
			return fmt.Errorf("deliveries %+v", out.Value)
		}
		return nil
	})
	// The heir, the slot's new owner, made the delivery; the leader made
	// no attempt at all.
	if got, _ := heir.Store().Slots(); got[raft.SlotOf(uid)] != heir.Config.NodeID {
		t.Fatalf("slot of %s owned by %q after the rebalance, want %s", upn, got[raft.SlotOf(uid)], heir.Config.NodeID)
	}
	if d := webhookAttempts(t, heir, adminToken, "delivered"); d != 1 {
		t.Errorf("the heir delivered %v times, want 1", d)
	}
	if a := webhookAttempts(t, leader, adminToken, ""); a != 0 {
		t.Errorf("the leader made %v webhook attempts, want 0", a)
	}
}

// webhookAttempts sums herald_delivery_attempts_total of the webhook channel
// on n, of one outcome or ("") all.
func webhookAttempts(t *testing.T, n *testnode.Node, token, outcome string) float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "herald_delivery_attempts_total{") || !strings.Contains(line, `channel="webhook"`) ||
			(outcome != "" && !strings.Contains(line, `outcome="`+outcome+`"`)) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q", line)
		}
		sum += v
	}
	return sum
}

// failingWebhook is a webhook delivery that its owner keeps retrying: the
// receiver answers 503 until the test scripts it otherwise.
type failingWebhook struct {
	upn, uid, userToken string
	url, webhookID      string
	sent                *client.Notification
}

// startFailingWebhook creates users until one's slot satisfies pick, gives
// it a webhook subscription of a new application on host, sends it a
// notification, and returns once the owner has retried it at least once.
func startFailingWebhook(t *testing.T, hooks *webhooktest.Receiver, leader *testnode.Node, adminToken, host string,
	pick func(slot int) bool) failingWebhook {
	t.Helper()
	ctx := context.Background()
	admin := clientFor(t, leader, adminToken)
	var w failingWebhook
	for i := 0; w.upn == ""; i++ {
		if i == 60 {
			t.Fatal("no user in a slot that moves as the test needs")
		}
		name := fmt.Sprintf("user%d", i)
		u, err := createUserOnce(ctx, admin, client.NewUser{UserPrincipalName: name, Password: "user-password-1"})
		if err != nil {
			t.Fatal(err)
		}
		if pick(raft.SlotOf(u.ID)) {
			w.upn, w.uid = name, u.ID
		}
	}
	app, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Tasks", TargetHostName: host})
	if err != nil {
		t.Fatal(err)
	}
	anon := clientFor(t, leader, "")
	ut, err := anon.PasswordToken(ctx, w.upn, "user-password-1")
	if err != nil {
		t.Fatal(err)
	}
	w.userToken = ut.AccessToken
	at, err := anon.ClientCredentialsToken(ctx, app.AppID, app.PasswordCredentials[0].SecretText)
	if err != nil {
		t.Fatal(err)
	}
	w.url = hooks.Endpoint()
	hooks.Script(w.url, webhooktest.Answer{Status: http.StatusServiceUnavailable})
	var sub struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if err := clientFor(t, leader, w.userToken).Do(ctx, http.MethodPost, "/v1.0/me/notificationSubscriptions",
		map[string]any{"targetHostName": host, "platformType": "windows", "deviceName": "d",
			"channel": map[string]any{"type": "webhook", "url": w.url}}, &sub); err != nil {
		t.Fatal(err)
	}
	if err := hooks.SetSecret(w.url, sub.Secret); err != nil {
		t.Fatal(err)
	}
	w.sent, err = clientFor(t, leader, at.AccessToken).Send(ctx, sub.ID, &client.Notification{
		AppNotificationID: "hand-over", Payload: &client.Payload{RawContent: "hand-over"}})
	if err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "attempts by the owner", func() error {
		if k := len(hooks.Requests(w.url)); k < 2 {
			return fmt.Errorf("%d attempts", k)
		}
		return nil
	})
	w.webhookID = hooks.Requests(w.url)[0].ID
	return w
}

// createUserOnce creates a user through a client that retries 503s. A 503
// can come after the create was committed (its answer was lost in an
// election), so a 409 for the name on a retry means the user is there.
func createUserOnce(ctx context.Context, admin *client.Client, nu client.NewUser) (*client.User, error) {
	u, err := admin.CreateUser(ctx, nu)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusConflict {
		return u, err
	}
	users, lerr := admin.ListUsers(ctx)
	if lerr != nil {
		return nil, lerr
	}
	for _, u := range users {
		if strings.EqualFold(u.UserPrincipalName, nu.UserPrincipalName) {
			return &u, nil
		}
	}
	return nil, err
}
