package node_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// passwordGrant posts a password grant to n from loopback address src and
// returns the status and Retry-After.
func passwordGrant(t *testing.T, n *testnode.Node, src, user, pw string) (int, string) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pw}}
	resp, err := hc.Post(n.URL+"/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("password grant on %s from %s: %v", n.Config.NodeID, src, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// Guesses at one account spread over the three nodes of a cluster are
// limited, in total, to what one node allows (the followers ask the
// leader's counters), and the account's owner still signs in from another
// address meanwhile, through any node. A follower cut off from the leader
// refuses password sign-ins with 503 and Retry-After (fail closed), and
// takes them again once the link is back.
func TestSignInLimitsAreSharedByTheCluster(t *testing.T) {
	ctx := context.Background()
	cfgs := []node.Config{clusterConfig(t, "n1")}
	cfgs = append(cfgs, clusterConfig(t, "n2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "n3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	m := newMesh(t, cfgs)
	nodes, tok := startSignedIn(t, cfgs)
	const user, pw = "victim", "the-right-password-1"
	if _, err := clientFor(t, nodes[0], tok).CreateUser(ctx, client.NewUser{UserPrincipalName: user, Password: pw}); err != nil {
		t.Fatal(err)
	}

	// What one node allows one address against one account: a burst of
	// 10, then 2 a second (httpapi's loginPair limits); failures from one
	// address are held to a burst of 20 and 1 a second besides.
	const burst, rate = 10, 2
	const guesses = 45
	admitted := 0
	refusedBy := map[string]int{}
	start := time.Now()
	for i := range guesses {
		n := nodes[i%len(nodes)]
		switch status, ra := passwordGrant(t, n, "127.0.0.1", user, "wrong-guess-"+strconv.Itoa(i)); status {
		case http.StatusBadRequest: // invalid_grant: the guess was checked
			admitted++
		case http.StatusTooManyRequests:
			if s, err := strconv.Atoi(ra); err != nil || s < 1 {
				t.Errorf("429 from %s with Retry-After %q", n.Config.NodeID, ra)
			}
			refusedBy[n.Config.NodeID]++
		default:
			t.Fatalf("guess %d on %s: status %d", i, n.Config.NodeID, status)
		}
	}
	elapsed := time.Since(start)
	// A shared limit admits the burst and what refilled meanwhile; three
	// separate ones would each have admitted a burst (30).
	bound := burst + int(rate*elapsed.Seconds()) + 1
	t.Logf("%d guesses over three nodes in %v: %d checked, refused by %v (bound %d; one limit per node would check %d)",
		guesses, elapsed.Round(time.Millisecond), admitted, refusedBy, bound, min(guesses, len(nodes)*burst+int(float64(len(nodes)*rate)*elapsed.Seconds())))
	if admitted > bound {
		t.Errorf("%d guesses were checked, more than one node's limit allows in %v (%d)", admitted, elapsed, bound)
	}
	for _, n := range nodes {
		if refusedBy[n.Config.NodeID] == 0 {
			t.Errorf("%s refused no guess", n.Config.NodeID)
		}
	}

	// The owner, from another address, signs in through every node.
	for _, n := range nodes {
		if status, _ := passwordGrant(t, n, "127.0.0.2", user, pw); status != http.StatusOK {
			t.Errorf("the owner's sign-in from 127.0.0.2 through %s under attack: status %d", n.Config.NodeID, status)
		}
	}

	// Cut a follower off: it cannot ask the leader, so it refuses.
	fi := -1
	for i, n := range nodes {
		if !n.Store().IsLeader() {
			fi = i
			break
		}
	}
	if fi < 0 {
		t.Fatal("no follower")
	}
	f := nodes[fi]
	m.of(fi).Cut()
	status, ra := passwordGrant(t, f, "127.0.0.3", user, pw)
	if s, err := strconv.Atoi(ra); status != http.StatusServiceUnavailable || err != nil || s < 1 {
		t.Errorf("the owner's sign-in through %s cut off from the leader: status %d, Retry-After %q; want 503 with Retry-After", f.Config.NodeID, status, ra)
	}
	m.all().Heal()
	pollUntil(t, "sign-in through "+f.Config.NodeID+" after the heal", func() error {
		if status, _ := passwordGrant(t, f, "127.0.0.3", user, pw); status != http.StatusOK {
			return fmt.Errorf("status %d", status)
		}
		return nil
	})
	m.check(t)
}
