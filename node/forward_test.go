package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// faultyDialer is a node's Dial seam with a fault switch: once told to,
// every connection it made to one address (kept-alive ones too) delivers
// what the node sends but drops every byte that comes back, as a leader
// that paused right after reading a request would look.
type faultyDialer struct {
	mu     sync.Mutex
	mute   string // the address whose answers are dropped
	refuse string // the address that refuses connections and writes
}

func (d *faultyDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	if d.refused(addr) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &faultyConn{Conn: c, d: d, addr: addr}, nil
}

func (d *faultyDialer) muteAnswersFrom(addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mute = addr
}

func (d *faultyDialer) muted(addr string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mute == addr
}

// refuseFrom makes connections to addr fail before a byte is written, as a
// stopped leader's port would.
func (d *faultyDialer) refuseFrom(addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refuse = addr
}

func (d *faultyDialer) refused(addr string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refuse == addr
}

type faultyConn struct {
	net.Conn
	d    *faultyDialer
	addr string
}

func (c *faultyConn) Write(p []byte) (int, error) {
	if c.d.refused(c.addr) {
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return c.Conn.Write(p)
}

func (c *faultyConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if !c.d.muted(c.addr) || err != nil {
			return n, err
		}
	}
}

// forwardCluster starts three keyed nodes, each with its own faulty dialer,
// and returns them with the admin token.
func forwardCluster(t *testing.T) ([]*testnode.Node, []*faultyDialer, string) {
	t.Helper()
	dialers := []*faultyDialer{{}, {}, {}}
	cfgs := []node.Config{clusterConfig(t, "w1")}
	cfgs = append(cfgs, clusterConfig(t, "w2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "w3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	nodes := make([]*testnode.Node, 3)
	for i := range cfgs {
		cfgs[i].Dial = dialers[i].dial
		// What these tests prove needs one leader from step to step
		// (they move it on purpose): with the other cluster tests'
		// 500 ms timers a loaded CI machine sometimes held an election
		// of its own between two steps.
		cfgs[i].Raft.HeartbeatTimeout, cfgs[i].Raft.ElectionTimeout = 2*time.Second, 2*time.Second
		nodes[i] = testnode.Start(t, &cfgs[i])
	}
	ctx := context.Background()
	tok, err := clientFor(t, nodes[0], "").PasswordToken(ctx, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		pollUntil(t, "the admin token and three members on "+n.Config.NodeID, func() error {
			st, err := clientFor(t, n, tok.AccessToken).Cluster(ctx)
			if err != nil {
				return err
			}
			if len(st.Nodes) != 3 {
				return fmt.Errorf("%d members", len(st.Nodes))
			}
			for _, m := range st.Nodes {
				if m.HTTPAddr == "" || (m.State != "leader" && m.State != "follower") {
					return fmt.Errorf("member %+v", m)
				}
			}
			return nil
		})
	}
	return nodes, dialers, tok.AccessToken
}

// leaderAndFollowers polls until one of nodes leads.
func leaderAndFollowers(t *testing.T, nodes []*testnode.Node) (leader *testnode.Node, followers []*testnode.Node) {
	t.Helper()
	pollUntil(t, "a leader", func() error {
		leader, followers = nil, nil
		for _, n := range nodes {
			if n.Store().IsLeader() {
				leader = n
			} else {
				followers = append(followers, n)
			}
		}
		if leader == nil {
			return errors.New("none yet")
		}
		return nil
	})
	return leader, followers
}

// Concurrent writes through a follower go to the leader in shared batches,
// and each caller gets its own command's result: every name created twice
// at once is created once (201) and refused once (409), each 201 names
// the user that request asked for, and each send answers its own
// appNotificationId.
func TestForwardedBatchAnswersEachCaller(t *testing.T) {
	ctx := context.Background()
	nodes, _, adminToken := forwardCluster(t)
	_, followers := leaderAndFollowers(t, nodes)
	f := followers[0]
	// Straight HTTP, no retries: every answer counts.
	admin, err := client.New(f.URL, client.WithToken(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	// Applications, not users: a user's password hash costs real CPU,
	// and a hundred at once on a shared machine would starve Raft.
	const names = 48
	var wg sync.WaitGroup
	created := make([]atomic.Int32, names)
	refused := make([]atomic.Int32, names)
	for i := range names * 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			host := fmt.Sprintf("batch-%02d.forward.test", i%names)
			a, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "d", TargetHostName: host})
			var ce *client.Error
			switch {
			case err == nil && a.TargetHostName == host:
				created[i%names].Add(1)
			case errors.As(err, &ce) && ce.Status == http.StatusConflict:
				refused[i%names].Add(1)
			default:
				t.Errorf("create %s: %+v, %v", host, a, err)
			}
		}()
	}
	wg.Wait()
	for i := range names {
		if created[i].Load() != 1 || refused[i].Load() != 1 {
			t.Errorf("batch-%02d: created %d times, refused %d times; want once each", i, created[i].Load(), refused[i].Load())
		}
	}
	if _, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "batch-user", Password: "batch-password-1"}); err != nil {
		t.Fatal(err)
	}

	app, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Batch", TargetHostName: "batch.forward.test"})
	if err != nil {
		t.Fatal(err)
	}
	at, err := clientFor(t, f, "").ClientCredentialsToken(ctx, app.AppID, app.PasswordCredentials[0].SecretText)
	if err != nil {
		t.Fatal(err)
	}
	ut, err := clientFor(t, f, "").PasswordToken(ctx, "batch-user", "batch-password-1")
	if err != nil {
		t.Fatal(err)
	}
	var sub struct{ ID string }
	if err := clientFor(t, f, ut.AccessToken).Do(ctx, http.MethodPost, "/v1.0/me/notificationSubscriptions",
		map[string]any{"targetHostName": "batch.forward.test", "platformType": "web", "channel": map[string]any{"type": "live"}}, &sub); err != nil {
		t.Fatal(err)
	}
	sender, err := client.New(f.URL, client.WithToken(at.AccessToken))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			aid := "send-" + strconv.Itoa(i)
			n, err := sender.Send(ctx, sub.ID, &client.Notification{AppNotificationID: aid, Payload: &client.Payload{RawContent: aid}})
			if err != nil || n.AppNotificationID != aid || n.Payload == nil || n.Payload.RawContent != aid {
				t.Errorf("send %s answered %+v, %v", aid, n, err)
			}
		}()
	}
	wg.Wait()
	// The follower sent fewer batches than commands: they were shared.
	batches, commands := forwardBatchMetric(t, f)
	if commands < names*2+64 || batches >= commands {
		t.Errorf("the follower forwarded %v commands in %v batches; want at least %d commands in fewer batches", commands, batches, names*2+64)
	}
}

// forwardBatchMetric reads the count and sum of herald_forward_batch_commands
// from a node's /metrics.
func forwardBatchMetric(t *testing.T, n *testnode.Node) (batches, commands float64) {
	t.Helper()
	resp, err := n.GetMetrics()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, _ := strings.Cut(sc.Text(), " ")
		v, _ := strconv.ParseFloat(val, 64)
		switch name {
		case "herald_forward_batch_commands_count":
			batches = v
		case "herald_forward_batch_commands_sum":
			commands = v
		}
	}
	return batches, commands
}

// addressLike matches what a 503 must never show: a URL, an IP address or a
// host:port.
var addressLike = regexp.MustCompile(`https?://|\d+\.\d+\.\d+\.\d+|:\d{2,5}\b|internal/`)

// post503 posts a new user through n and returns the 503's message, failing
// the test on any other answer or on a 503 without Retry-After or with an
// address in it.
func post503(t *testing.T, n *testnode.Node, adminToken, upn string) string {
	t.Helper()
	body := fmt.Sprintf(`{"userPrincipalName":%q,"password":"p-password-1"}`, upn)
	req, _ := http.NewRequest(http.MethodPost, n.URL+"/v1.0/users", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("create %s: %s %s, want 503", upn, resp.Status, b)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("503 with Retry-After %q", resp.Header.Get("Retry-After"))
	}
	var e struct {
		Error struct{ Code, Message, Target string }
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code != "serviceNotAvailable" {
		t.Errorf("503 body %s, want serviceNotAvailable", b)
	}
	if m := addressLike.FindString(e.Error.Message + " " + e.Error.Target); m != "" {
		t.Errorf("503 body shows %q: %s", m, b)
	}
	return e.Error.Message
}

// warmForwards makes a write through f, so that f holds a connection for
// forwarded writes to the leader: muting the answers of a connection still
// to be made stops its TLS handshake, and then nothing was sent ("not
// committed", rightly), which a loaded CI machine met twice.
func warmForwards(t *testing.T, admin *client.Client, f *testnode.Node, prefix string) {
	t.Helper()
	for i := 0; ; i++ {
		_, err := admin.CreateUser(context.Background(), client.NewUser{UserPrincipalName: fmt.Sprintf("%s-%d", prefix, i), Password: "warm-password-1"})
		if err == nil {
			return
		}
		if i == 20 {
			t.Fatalf("no write through %s reaches the leader: %v", f.Config.NodeID, err)
		}
	}
}

// A write through a follower whose leader changes while the write is in
// flight: the follower resends it to the new leader with its request id,
// and the new leader answers the first result, so a create answers 201,
// not 409, and is applied once. A write whose answer never comes back
// answers, after the hold time, a 503 saying it may have been committed
// (it was); one refused before a byte was sent, or that no leader can
// take, answers a 503 saying it was not committed.
func TestForwardedWriteDuringLeaderChange(t *testing.T) {
	ctx := context.Background()
	nodes, dialers, adminToken := forwardCluster(t)
	leader, followers := leaderAndFollowers(t, nodes)
	fi := 0
	for i, n := range nodes {
		if n == followers[0] {
			fi = i
		}
	}
	f, d := nodes[fi], dialers[fi]
	admin, err := client.New(f.URL, client.WithToken(adminToken))
	if err != nil {
		t.Fatal(err)
	}

	// The leader takes the write, its answer is lost, and then it hands
	// leadership on.
	warmForwards(t, admin, f, "warm-a")
	d.muteAnswersFrom(leader.Store().RaftAddr())
	type created struct {
		u   *client.User
		err error
	}
	res := make(chan created, 1)
	go func() {
		u, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "dora", Password: "dora-password-1"})
		res <- created{u, err}
	}()
	pollUntil(t, "the leader applied the write", func() error {
		if _, ok, err := leader.Store().UserByName("dora"); err != nil || !ok {
			return fmt.Errorf("not yet (%v)", err)
		}
		return nil
	})
	heir := followers[1]
	if err := leader.Store().Raft().LeadershipTransferToServer(hraft.ServerID(heir.Config.NodeID),
		hraft.ServerAddress(heir.Store().RaftAddr())).Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	r := <-res
	stored, ok, _ := f.Store().UserByName("dora")
	if r.err != nil || !ok || r.u.ID != stored.ID {
		t.Fatalf("the resent create answered %+v, %v; want 201 with the stored user %+v", r.u, r.err, stored)
	}
	d.muteAnswersFrom("")

	// An answer that never comes: after the hold time, "may have been
	// committed", and it was.
	leader, _ = leaderAndFollowers(t, nodes)
	if leader != heir {
		t.Fatalf("leader %s after the transfer, want %s", leader.Config.NodeID, heir.Config.NodeID)
	}
	warmForwards(t, admin, f, "warm-b")
	d.muteAnswersFrom(leader.Store().RaftAddr())
	// A status call first, which times out against the muted leader and
	// closes the connection it ran on, as a fenced follower's catching up
	// does on its own: that must not have been the connection the
	// forwarded writes use (CI met this).
	if _, err := admin.Cluster(ctx); err != nil {
		t.Fatalf("cluster status with the leader muted: %v", err)
	}
	msg := post503(t, f, adminToken, "ella")
	if !strings.Contains(msg, "may have been committed") || !strings.Contains(msg, "Retrying is safe") {
		t.Errorf("lost answer: %s, want it to say the write may have been committed", msg)
	}
	if _, ok, _ := leader.Store().UserByName("ella"); !ok {
		t.Error("the leader does not hold the write the 503 said may have been committed")
	}
	d.muteAnswersFrom("")

	// A leader whose port refuses: nothing was sent, so "not committed",
	// and indeed nothing was.
	d.refuseFrom(leader.Store().RaftAddr())
	msg = post503(t, f, adminToken, "faye")
	if !strings.Contains(msg, "not committed") {
		t.Errorf("refused connection: %s, want it to say the write was not committed", msg)
	}
	if _, ok, _ := leader.Store().UserByName("faye"); ok {
		t.Error("a write the 503 said was not committed is stored")
	}
	d.refuseFrom("")

	// No quorum: nothing can commit, and the 503 says so.
	for _, n := range nodes {
		if n != f {
			if err := n.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	msg = post503(t, f, adminToken, "fern")
	if !strings.Contains(msg, "not committed") {
		t.Errorf("no quorum: %s, want it to say the write was not committed", msg)
	}
	if _, ok, _ := f.Store().UserByName("fern"); ok {
		t.Error("a write the 503 said was not committed is stored")
	}
}
