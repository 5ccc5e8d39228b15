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
	"sync"
	"sync/atomic"
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
	status, ra, _, err := tryPasswordGrant(n, src, user, pw)
	if err != nil {
		t.Fatal(err)
	}
	return status, ra
}

func tryPasswordGrant(n *testnode.Node, src, user, pw string) (status int, retryAfter, body string, err error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pw}}
	resp, err := hc.Post(n.URL+"/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		return 0, "", "", fmt.Errorf("password grant on %s from %s: %w", n.Config.NodeID, src, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b), err
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
	for i := range cfgs {
		// The counters are the leader's, in its memory: an election in
		// the middle of the guesses (500 ms timers, hashes starving a
		// loaded CI machine) gave the new leader a fresh burst, and 23
		// guesses were admitted where one leader allows 19.
		cfgs[i].Raft.HeartbeatTimeout, cfgs[i].Raft.ElectionTimeout = 2*time.Second, 2*time.Second
	}
	m := newMesh(t, cfgs)
	nodes, tok := startSignedIn(t, cfgs)
	const user, pw = "victim", "the-right-password-1"
	if _, err := clientFor(t, nodes[0], tok).CreateUser(ctx, client.NewUser{UserPrincipalName: user, Password: pw}); err != nil {
		t.Fatal(err)
	}

	// What one node allows one address against one account: a burst of
	// 10, then 2 a second (httpapi's loginPair limits). The guesses go out
	// at once, a third to each node, so that they are decided (before any
	// hash) within a moment, however slow the hashes are: each node hashes
	// a few at a time and answers the rest of those it admitted 503 at
	// once (its hash pool is full). Admitted is everything but 429.
	const burst, rate = 10, 2
	const guesses = 45
	type answer struct {
		node     string
		status   int
		ra, body string
		err      error
	}
	answers := make(chan answer, guesses)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range guesses {
		n := nodes[i%len(nodes)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, ra, body, err := tryPasswordGrant(n, "127.0.0.1", user, "wrong-guess-"+strconv.Itoa(i))
			answers <- answer{n.Config.NodeID, status, ra, body, err}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(answers)
	admitted, checked, unshared := 0, 0, 0
	refusedBy := map[string]int{}
	for a := range answers {
		switch {
		case a.err != nil:
			t.Fatal(a.err)
		case a.status == http.StatusBadRequest: // invalid_grant: the guess was checked
			admitted++
			checked++
		case a.status == http.StatusServiceUnavailable && strings.Contains(a.body, "Too many sign-ins are being checked"):
			admitted++ // the hash pool was full
		case a.status == http.StatusServiceUnavailable && strings.Contains(a.body, "cannot reach the cluster's leader"):
			// Refused, as it must be while the follower cannot ask the
			// leader: under -race on a loaded machine the hashes can
			// starve Raft's heartbeats into an election.
			unshared++
		case a.status == http.StatusTooManyRequests:
			if s, err := strconv.Atoi(a.ra); err != nil || s < 1 {
				t.Errorf("429 from %s with Retry-After %q", a.node, a.ra)
			}
			refusedBy[a.node]++
		default:
			t.Fatalf("a guess on %s: status %d %s", a.node, a.status, a.body)
		}
	}
	// A shared limit admits the burst and what refilled meanwhile; three
	// separate ones would each have admitted a burst (30) and more.
	bound := burst + int(rate*elapsed.Seconds()) + 1
	t.Logf("%d guesses at once over three nodes, all answered in %v: %d admitted (%d checked), refused by %v, %d refused while the leader could not be asked (bound %d; one limit per node would admit %d)",
		guesses, elapsed.Round(time.Millisecond), admitted, checked, refusedBy, unshared, bound, min(guesses, len(nodes)*burst+int(float64(len(nodes)*rate)*elapsed.Seconds())))
	if admitted > bound {
		t.Errorf("%d guesses were admitted, more than one node's limit allows in %v (%d)", admitted, elapsed, bound)
	}
	for _, n := range nodes {
		if refusedBy[n.Config.NodeID] == 0 && unshared == 0 {
			t.Errorf("%s refused no guess", n.Config.NodeID)
		}
	}

	// The owner, from another address, signs in through every node (a
	// 503 is retried, as the contract asks: an election may be on).
	for _, n := range nodes {
		pollUntil(t, "the owner's sign-in from 127.0.0.2 through "+n.Config.NodeID+" under attack", func() error {
			switch status, _ := passwordGrant(t, n, "127.0.0.2", user, pw); status {
			case http.StatusOK:
				return nil
			case http.StatusServiceUnavailable:
				return fmt.Errorf("status %d", status)
			default:
				t.Fatalf("the owner's sign-in from 127.0.0.2 through %s under attack: status %d", n.Config.NodeID, status)
				return nil
			}
		})
	}

	// An address that sprays many names through the followers is slowed
	// on the leader too: the followers report its failures there. Four at
	// a time until a 429, so that slow hashing outpaces the refill.
	var leader *testnode.Node
	var followers []int
	for i, n := range nodes {
		if n.Store().IsLeader() {
			leader = n
		} else {
			followers = append(followers, i)
		}
	}
	if leader == nil || len(followers) != 2 {
		t.Fatalf("leader %v, followers %v", leader, followers)
	}
	var seq atomic.Int32
	var limited atomic.Bool
	var sprayers sync.WaitGroup
	for range 4 {
		sprayers.Add(1)
		go func() {
			defer sprayers.Done()
			for !limited.Load() {
				i := int(seq.Add(1))
				if i > 150 {
					return
				}
				n := nodes[followers[i%2]]
				status, _, body, err := tryPasswordGrant(n, "127.0.2.1", fmt.Sprintf("nobody-%d", i), "a wrong guess")
				switch {
				case err != nil:
					t.Error(err)
					return
				case status == http.StatusTooManyRequests:
					limited.Store(true)
				case status == http.StatusBadRequest, status == http.StatusServiceUnavailable:
				default:
					t.Errorf("spraying through %s: status %d %s", n.Config.NodeID, status, body)
					return
				}
			}
		}()
	}
	sprayers.Wait()
	if !limited.Load() {
		t.Fatalf("150 wrong sign-ins for distinct names from 127.0.2.1 through the followers were never refused")
	}
	if status, ra := passwordGrant(t, leader, "127.0.2.1", user, pw); status != http.StatusTooManyRequests {
		t.Errorf("the spraying address through the leader: status %d (Retry-After %q), want 429", status, ra)
	}
	t.Logf("the spraying address was first refused after %d attempts through the followers", seq.Load())

	// Cut a follower off: it cannot ask the leader, so it refuses.
	fi := followers[0]
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
