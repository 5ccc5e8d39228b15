package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/internal/testcerts"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// tap records the bytes of every inter-node connection, both ways, as a
// relay between the nodes would see them.
type tap struct {
	mu    sync.Mutex
	conns []*tappedConn
}

type tappedConn struct {
	net.Conn
	from, to string
	mu       sync.Mutex
	sent     bytes.Buffer
	received bytes.Buffer
}

const tapLimit = 4 << 20

func (c *tappedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if c.received.Len() < tapLimit {
		c.received.Write(p[:n])
	}
	c.mu.Unlock()
	return n, err
}

func (c *tappedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	if c.sent.Len() < tapLimit {
		c.sent.Write(p[:n])
	}
	c.mu.Unlock()
	return n, err
}

// dialer is node from's Dial.
func (tp *tap) dialer(from string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		tc := &tappedConn{Conn: c, from: from, to: addr}
		tp.mu.Lock()
		tp.conns = append(tp.conns, tc)
		tp.mu.Unlock()
		return tc, nil
	}
}

type captured struct {
	from, to       string
	sent, received []byte
}

func (tp *tap) captured() []captured {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	out := make([]captured, 0, len(tp.conns))
	for _, c := range tp.conns {
		c.mu.Lock()
		out = append(out, captured{from: c.from, to: c.to, sent: bytes.Clone(c.sent.Bytes()), received: bytes.Clone(c.received.Bytes())})
		c.mu.Unlock()
	}
	return out
}

// Every byte between the nodes of a cluster taking writes is TLS: a
// distinctive display name and the JSON of the commands never appear on the
// wire, though the write went through a follower (an internal request) and
// was replicated (Raft). Replaying every recorded connection, to the node it
// went to and to the others, achieves nothing: no answer in the clear, and
// a user created by a recorded request and since deleted stays deleted.
func TestInterNodeTrafficIsTLSAndCannotBeReplayed(t *testing.T) {
	ctx := context.Background()
	tp := &tap{}
	cfgs := []node.Config{clusterConfig(t, "e1")}
	cfgs = append(cfgs, clusterConfig(t, "e2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "e3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	nodes := make([]*testnode.Node, 3)
	raftAddrs := map[string]bool{}
	for i := range cfgs {
		cfgs[i].Dial = tp.dialer(cfgs[i].NodeID)
		nodes[i] = testnode.Start(t, &cfgs[i])
		raftAddrs[nodes[i].Store().RaftAddr()] = true
	}
	tok, err := clientFor(t, nodes[0], "").PasswordToken(ctx, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	adminToken := tok.AccessToken
	pollUntil(t, "three voters", func() error {
		if n := len(nodes[0].Store().Raft().GetConfiguration().Configuration().Servers); n != 3 {
			return fmt.Errorf("%d voters", n)
		}
		return nil
	})
	var leader, follower *testnode.Node
	pollUntil(t, "a leader", func() error {
		leader, follower = nil, nil
		for _, n := range nodes {
			if n.Store().IsLeader() {
				leader = n
			} else {
				follower = n
			}
		}
		if leader == nil {
			return errors.New("none yet")
		}
		return nil
	})
	for _, n := range nodes {
		pollUntil(t, "admin token on "+n.Config.NodeID, func() error {
			return clientFor(t, n, adminToken).Do(ctx, http.MethodGet, "/v1.0/users/admin", nil, nil)
		})
	}

	const marker = "Quetzalcoatl-Plaintext-Marker-4417"
	if _, err := clientFor(t, follower, adminToken).CreateUser(ctx, client.NewUser{
		UserPrincipalName: "mallory", DisplayName: marker, Password: "mallory-password-1"}); err != nil {
		t.Fatalf("create a user through a follower: %v", err)
	}
	userOn := func(n *testnode.Node, upn string) error {
		return clientFor(t, n, adminToken).Do(ctx, http.MethodGet, "/v1.0/users/"+upn, nil, nil)
	}
	for _, n := range nodes {
		pollUntil(t, "mallory on "+n.Config.NodeID, func() error { return userOn(n, "mallory") })
	}

	conns := tp.captured()
	toLeader := 0
	for _, c := range conns {
		for _, secret := range []string{marker, `"op":`, `"userPrincipalName"`, "POST /internal/cluster/", adminToken} {
			if bytes.Contains(c.sent, []byte(secret)) || bytes.Contains(c.received, []byte(secret)) {
				t.Errorf("%q in the clear on a connection %s → %s", secret, c.from, c.to)
			}
		}
		if !raftAddrs[c.to] {
			// The one plain request: a joining node asks a public listener
			// where its inter-node port is.
			if !bytes.HasPrefix(c.sent, []byte("GET /internal/cluster/peer ")) {
				t.Errorf("a connection %s → %s, not to an inter-node port, sent %q", c.from, c.to, c.sent[:min(40, len(c.sent))])
			}
			continue
		}
		// A TLS handshake record opens every inter-node connection.
		if len(c.sent) > 0 && (len(c.sent) < 3 || c.sent[0] != 0x16 || c.sent[1] != 0x03) {
			t.Errorf("a connection %s → %s starts with %x, not a TLS handshake", c.from, c.to, c.sent[:min(8, len(c.sent))])
		}
		if c.from == follower.Config.NodeID && c.to == leader.Store().RaftAddr() {
			toLeader++
		}
	}
	if toLeader == 0 {
		t.Fatal("no connection from the follower to the leader was recorded")
	}

	if err := clientFor(t, leader, adminToken).DeleteUser(ctx, "mallory"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		pollUntil(t, "mallory gone from "+n.Config.NodeID, func() error {
			var ce *client.Error
			if err := userOn(n, "mallory"); !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
				return fmt.Errorf("GET mallory: %v", err)
			}
			return nil
		})
	}
	for _, c := range conns {
		if !raftAddrs[c.to] || len(c.sent) == 0 {
			continue
		}
		for addr := range raftAddrs {
			if got := replay(t, addr, c.sent); bytes.Contains(got, []byte("HTTP/1.1")) {
				t.Errorf("a replay of %s → %s at %s got an answer in the clear", c.from, c.to, addr)
			}
		}
	}
	// A write after the replays, seen everywhere, is a barrier: whatever
	// a replay had committed would be applied by now.
	if _, err := clientFor(t, leader, adminToken).CreateUser(ctx, client.NewUser{
		UserPrincipalName: "after-replay", Password: "after-password-1"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		pollUntil(t, "the barrier on "+n.Config.NodeID, func() error { return userOn(n, "after-replay") })
		var ce *client.Error
		if err := userOn(n, "mallory"); !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
			t.Errorf("mallory on %s after the replays: %v, want 404", n.Config.NodeID, err)
		}
	}
}

// replay sends recorded bytes to addr as a new connection and returns what
// comes back until the node hangs up.
func replay(t *testing.T, addr string, sent []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A bound, not a wait: the node hangs up long before.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		c.Write(sent)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("a replay at %s was held open", addr)
	}
	return got
}

// With the operator's certificates, and no cluster key, nodes whose
// certificates the CA signed form a cluster; a node with a certificate of
// another CA cannot join.
func TestOperatorCertificatesFormACluster(t *testing.T) {
	ca, other := testcerts.NewCA(t, "herald"), testcerts.NewCA(t, "stranger")
	withCert := func(c node.Config, f testcerts.Files) node.Config {
		c.ClusterKey = ""
		c.ClusterTLSCert, c.ClusterTLSKey, c.ClusterTLSCA = f.Cert, f.Key, f.CA
		return c
	}
	first := withCert(clusterConfig(t, "c1"), ca.Node(t, "c1"))
	n1 := testnode.Start(t, &first)
	second := withCert(clusterConfig(t, "c2", first.HTTPAddr), ca.Node(t, "c2"))
	testnode.Start(t, &second)
	voters := func() int { return len(n1.Store().Raft().GetConfiguration().Configuration().Servers) }
	pollUntil(t, "two voters", func() error {
		if v := voters(); v != 2 {
			return fmt.Errorf("%d voters", v)
		}
		return nil
	})

	f := other.Node(t, "c3")
	f.CA = ca.File // it trusts the cluster; the cluster does not trust it
	stranger := withCert(clusterConfig(t, "c3", first.HTTPAddr), f)
	logs := &syncbuf.Buffer{}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := node.Start(sctx, stranger, slog.New(slog.NewTextHandler(logs, nil))); err == nil {
		n.Close(context.Background())
		t.Fatal("a node with another CA's certificate joined")
	}
	if v := voters(); v != 2 {
		t.Fatalf("%d voters after the stranger tried", v)
	}
	if !strings.Contains(logs.String(), "not trusted") {
		t.Errorf("the stranger's log does not say its certificate is not trusted:\n%s", logs)
	}
}
