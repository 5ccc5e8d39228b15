package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// startThree starts a keyed three-node cluster (n1 bootstraps, the others
// join); edit adjusts each config before its node starts.
func startThree(t *testing.T, edit func(i int, c *node.Config)) []*testnode.Node {
	t.Helper()
	cfgs := make([]node.Config, 3)
	for i := range cfgs {
		var join []string
		for j := range i {
			join = append(join, cfgs[j].HTTPAddr)
		}
		cfgs[i] = clusterConfig(t, fmt.Sprintf("n%d", i+1), join...)
		if edit != nil {
			edit(i, &cfgs[i])
		}
	}
	nodes := make([]*testnode.Node, 3)
	for i := range cfgs {
		nodes[i] = testnode.Start(t, &cfgs[i])
	}
	return nodes
}

// plainClient talks to one node without retrying anything: these tests are
// about the first answer.
func plainClient(t *testing.T, n *testnode.Node, token string) *client.Client {
	t.Helper()
	c, err := client.New(n.URL, client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// strongClient sends ConsistencyLevel: strong on every request; with retry
// it retries a 503 as clientFor does (a strong read answers 503 when it
// cannot confirm the leader's commit index in time).
func strongClient(t *testing.T, n *testnode.Node, token string, retry bool) *client.Client {
	t.Helper()
	var next http.RoundTripper = http.DefaultTransport
	if retry {
		next = retryUnavailable{}
	}
	c, err := client.New(n.URL, client.WithToken(token), client.WithHTTPClient(&http.Client{Transport: strongReads{next}}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type strongReads struct{ next http.RoundTripper }

func (s strongReads) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("ConsistencyLevel", "strong")
	return s.next.RoundTrip(req)
}

func adminTokenOf(t *testing.T, n *testnode.Node) string {
	t.Helper()
	tok, err := clientFor(t, n, "").PasswordToken(context.Background(), "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// Whatever a client got from one node works at once on the two others, 100
// times over while the cluster takes writes: access and refresh tokens, a
// subscription (sent through at once with X-UNS-ID, and read), a
// notification id, a stream cursor and a delta token. Without the read
// barrier a follower a few milliseconds behind answers 401, 403, 404 or 410.
func TestWhatOneNodeHandsOutWorksAtOnceOnTheOthers(t *testing.T) {
	ctx := context.Background()
	nodes := startThree(t, func(_ int, c *node.Config) { c.Limits.MaxSubscriptionsPerUser = 1000 })
	adminToken := adminTokenOf(t, nodes[0])
	// A token issued a moment ago on n1 is known on the others at once.
	for _, n := range nodes[1:] {
		if _, err := plainClient(t, n, adminToken).Cluster(ctx); err != nil {
			t.Errorf("the admin token from n1 on %s: %v", n.Config.NodeID, err)
		}
	}
	admin := clientFor(t, nodes[0], adminToken)
	for _, u := range []string{"carol", "dave"} {
		if _, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: u, Password: u + "-password-1"}); err != nil {
			t.Fatal(err)
		}
	}
	const host = "tasks.consistency.test"
	app, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Tasks", TargetHostName: host})
	if err != nil {
		t.Fatal(err)
	}
	// Each step below uses what it got through one node on the two others.
	others := func(i int) (*testnode.Node, *testnode.Node, *testnode.Node) {
		return nodes[i%3], nodes[(i+1)%3], nodes[(i+2)%3]
	}
	signIn := func(via *testnode.Node, user string) *client.Token {
		tok, err := clientFor(t, via, "").PasswordToken(ctx, user, user+"-password-1")
		if err != nil {
			t.Fatalf("sign in %s on %s: %v", user, via.Config.NodeID, err)
		}
		return tok
	}
	carol := signIn(nodes[1], "carol").AccessToken
	appTok, err := plainClient(t, nodes[2], "").ClientCredentialsToken(ctx, app.AppID, app.PasswordCredentials[0].SecretText)
	if err != nil {
		t.Fatalf("app token on n3 for an app created on n1: %v", err)
	}
	subscribe := func(via *testnode.Node, token string) (string, error) {
		var sub struct {
			ID string `json:"id"`
		}
		if err := clientFor(t, via, token).Do(ctx, http.MethodPost, "/v1.0/me/notificationSubscriptions",
			map[string]any{"targetHostName": host, "platformType": "web", "deviceName": "d",
				"channel": map[string]any{"type": "live"}}, &sub); err != nil {
			return "", fmt.Errorf("subscribe on %s: %w", via.Config.NodeID, err)
		}
		return sub.ID, nil
	}
	carolSub, err := subscribe(nodes[0], carol)
	if err != nil {
		t.Fatal(err)
	}
	daveSub, err := subscribe(nodes[1], signIn(nodes[2], "dave").AccessToken)
	if err != nil {
		t.Fatal(err)
	}

	// The load: dave's notifications through every node in turn, until
	// the checks are done. They move the change sequence on between every
	// two steps of the checks, so a cursor is always fresh.
	stop := make(chan struct{})
	var load sync.WaitGroup
	load.Add(1)
	go func() {
		defer load.Done()
		// Steady, not flat out: the checks' own writes are load too, and
		// the two cores are shared.
		pace := time.NewTicker(50 * time.Millisecond)
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Elections are not what this test is about; a 503 is retried
			// by clientFor's transport.
			clientFor(t, nodes[i%3], appTok.AccessToken).Send(ctx, daveSub, &client.Notification{
				Payload: &client.Payload{RawContent: "load " + strconv.Itoa(i)}})
			select {
			case <-stop:
				return
			case <-pace.C:
			}
		}
	}()
	defer func() {
		close(stop)
		load.Wait()
	}()

	// The guarantee needs a leader that answers in time: a round during
	// which the term changed, or after which some node counts a barrier
	// that gave up (a shared two-core machine under -race can starve one
	// past its bound), runs again instead of failing. A wrong answer after
	// barriers that all completed fails the test.
	term := func() uint64 {
		var highest uint64
		for _, n := range nodes {
			highest = max(highest, n.Store().Raft().CurrentTerm())
		}
		return highest
	}
	gaveUp := func() (sum float64) {
		for _, n := range nodes {
			sum += metric(t, n, "herald_read_barriers_failed_total")
		}
		return sum
	}
	// Each check runs its rounds in two workers: the rounds wait on
	// forwarded writes far more than on the CPU.
	const rounds, workers = 100, 2
	// Each stream-cursor worker reads its own stream on every node.
	var streams [workers][3]*sseStream
	for w := range streams {
		for i, n := range nodes {
			s, err := openStream(ctx, n, carol, "")
			if err != nil || s.status != http.StatusOK {
				t.Fatalf("stream on %s: %v %v", n.Config.NodeID, s, err)
			}
			streams[w][i] = s
			defer s.Close()
		}
	}
	var checks sync.WaitGroup
	check := func(name string, step func(w, i int) error) {
		for w := range workers {
			checks.Add(1)
			go func() {
				defer checks.Done()
				start, again, failedBarriers := time.Now(), 0, gaveUp()
				for i := w * rounds / workers; i < (w+1)*rounds/workers; {
					before := term()
					err := step(w, i)
					if err != nil && again < 10 {
						if term() != before {
							again++
							t.Logf("%s, round %d, during an election: %v; again", name, i, err)
							continue
						}
						if n := gaveUp(); n > failedBarriers {
							again++
							failedBarriers = n
							t.Logf("%s, round %d, after a barrier gave up: %v; again", name, i, err)
							continue
						}
					}
					if err != nil {
						t.Errorf("%s, round %d: %v", name, i, err)
						return
					}
					i++
				}
				t.Logf("%s, worker %d: %d rounds in %v", name, w, rounds/workers, time.Since(start).Round(time.Millisecond))
			}()
		}
	}

	// Tokens: each round refreshes on one node, with the refresh token the
	// previous round got on another, and uses the new access token on the
	// two others.
	var refresh [workers]string
	for w := range refresh {
		refresh[w] = signIn(nodes[w], "carol").RefreshToken
	}
	check("tokens", func(w, i int) error {
		a, b, c := others(i)
		tok, err := plainClient(t, a, "").RefreshToken(ctx, refresh[w])
		var ce *client.Error
		if errors.As(err, &ce) && ce.Status == http.StatusServiceUnavailable {
			// An election: the refresh may or may not have used the
			// token up, so start the chain again.
			again, serr := clientFor(t, a, "").PasswordToken(ctx, "carol", "carol-password-1")
			if serr != nil {
				return fmt.Errorf("sign in again after %v: %w", err, serr)
			}
			refresh[w] = again.RefreshToken
			return fmt.Errorf("refresh on %s: %w", a.Config.NodeID, err)
		}
		if err != nil {
			return fmt.Errorf("refresh on %s with a refresh token from the node before: %w", a.Config.NodeID, err)
		}
		refresh[w] = tok.RefreshToken
		for _, n := range []*testnode.Node{b, c} {
			if _, err := plainClient(t, n, tok.AccessToken).Me(ctx); err != nil {
				return fmt.Errorf("a token from %s on %s: %w", a.Config.NodeID, n.Config.NodeID, err)
			}
		}
		return nil
	})

	// Subscriptions: made on one node, sent through at once on the next
	// with X-UNS-ID, and read on the third.
	check("subscriptions", func(_, i int) error {
		a, b, c := others(i)
		id, err := subscribe(a, carol)
		if err != nil {
			return err
		}
		if _, err := clientFor(t, b, appTok.AccessToken).Send(ctx, id, &client.Notification{
			Payload: &client.Payload{RawContent: "via a new subscription"}}); err != nil {
			return fmt.Errorf("X-UNS-ID from %s on %s: %w", a.Config.NodeID, b.Config.NodeID, err)
		}
		path := "/v1.0/me/notificationSubscriptions/" + id
		if err := plainClient(t, c, carol).Do(ctx, http.MethodGet, path, nil, nil); err != nil {
			return fmt.Errorf("a subscription from %s read on %s: %w", a.Config.NodeID, c.Config.NodeID, err)
		}
		return nil
	})

	// Notifications: one sent through a node is read at once on the others
	// by its id (by the user, and by the sending application with
	// X-UNS-ID); the cursor of its event on that node's stream resumes a
	// stream at once on the others, and so does the deltaLink that node
	// hands out next; every fifth round, a listing with ConsistencyLevel:
	// strong on another node shows it.
	var deltas [workers]string
	check("notification ids, stream cursors and delta tokens", func(w, i int) error {
		a, b, c := others(i)
		n, err := clientFor(t, a, appTok.AccessToken).Send(ctx, carolSub, &client.Notification{
			Payload: &client.Payload{RawContent: "read me elsewhere"}})
		if err != nil {
			return fmt.Errorf("send on %s: %w", a.Config.NodeID, err)
		}
		if err := plainClient(t, b, carol).Do(ctx, http.MethodGet, "/v1.0/me/notifications/"+n.ID, nil, nil); err != nil {
			return fmt.Errorf("a notification sent on %s read by the user on %s: %w", a.Config.NodeID, b.Config.NodeID, err)
		}
		if err := appGet(ctx, c, appTok.AccessToken, carolSub, "/v1.0/me/notifications/"+n.ID); err != nil {
			return fmt.Errorf("a notification sent on %s read by its app on %s: %w", a.Config.NodeID, c.Config.NodeID, err)
		}
		cursor, err := streams[w][i%3].cursorOf(n.ID)
		if err != nil {
			return fmt.Errorf("the stream on %s: %w", a.Config.NodeID, err)
		}
		for _, other := range []*testnode.Node{b, c} {
			s, err := openStream(ctx, other, carol, cursor)
			if err != nil {
				return err
			}
			s.Close()
			if s.status != http.StatusOK {
				return fmt.Errorf("a cursor from %s resumed on %s: %d", a.Config.NodeID, other.Config.NodeID, s.status)
			}
		}
		link, err := deltaLink(ctx, plainClient(t, a, carol), deltas[w])
		if err != nil {
			return fmt.Errorf("delta on %s: %w", a.Config.NodeID, err)
		}
		deltas[w] = link
		for _, other := range []*testnode.Node{b, c} {
			if err := plainClient(t, other, carol).Do(ctx, http.MethodGet, link, nil, nil); err != nil {
				return fmt.Errorf("a deltaLink from %s followed on %s: %w", a.Config.NodeID, other.Config.NodeID, err)
			}
		}
		if i%5 != 0 {
			return nil
		}
		var page notifPage
		if err := strongClient(t, c, carol, true).Do(ctx, http.MethodGet, "/v1.0/me/notifications?$top=50", nil, &page); err != nil {
			return fmt.Errorf("a strong listing on %s: %w", c.Config.NodeID, err)
		}
		for _, got := range page.Value {
			if got.ID == n.ID {
				return nil
			}
		}
		return fmt.Errorf("a strong listing on %s lacks what was sent on %s a moment before", c.Config.NodeID, a.Config.NodeID)
	})

	checks.Wait()
}

// appGet is an application's GET with the user's X-UNS-ID.
func appGet(ctx context.Context, n *testnode.Node, token, unsid, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-UNS-ID", unsid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return nil
}

// deltaLink follows the user's delta on one node from from (a deltaLink,
// or the start when empty) and returns the deltaLink it ends with.
func deltaLink(ctx context.Context, c *client.Client, from string) (string, error) {
	path := from
	if path == "" {
		path = "/v1.0/me/notifications/delta?$top=1000"
	}
	for {
		var page struct {
			NextLink  string `json:"@odata.nextLink"`
			DeltaLink string `json:"@odata.deltaLink"`
		}
		if err := c.Do(ctx, http.MethodGet, path, nil, &page); err != nil {
			return "", err
		}
		if page.DeltaLink != "" {
			return page.DeltaLink, nil
		}
		if page.NextLink == "" {
			return "", errors.New("a delta page with neither link")
		}
		path = page.NextLink
	}
}

// sseStream is a live stream read event by event.
type sseStream struct {
	status int
	body   io.ReadCloser
	r      *bufio.Reader
	cancel context.CancelFunc
}

func openStream(ctx context.Context, n *testnode.Node, token, lastEventID string) (*sseStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v1.0/me/notifications/stream", nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	return &sseStream{status: resp.StatusCode, body: resp.Body, r: bufio.NewReader(resp.Body), cancel: cancel}, nil
}

func (s *sseStream) Close() {
	s.cancel()
	s.body.Close()
}

// cursorOf reads events until the one of notification id and returns its
// cursor.
func (s *sseStream) cursorOf(id string) (string, error) {
	var cursor string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "id:"):
			cursor = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "data:"):
			var n struct {
				ID string `json:"id"`
			}
			if json.Unmarshal([]byte(strings.TrimSpace(line[5:])), &n) == nil && n.ID == id {
				if cursor == "" {
					return "", errors.New("an event without an id")
				}
				return cursor, nil
			}
		case line == "":
			cursor = ""
		}
	}
}

// A flood of unknown tokens against a follower costs the leader one
// read-index request per round of barriers, not one per token: every
// request is answered 401, and the rounds are far fewer than the requests.
func TestUnknownTokenFloodSharesBarrierRounds(t *testing.T) {
	nodes := startThree(t, nil)
	var leader, follower *testnode.Node
	pollUntil(t, "a leader", func() error {
		leader, follower = nil, nil
		for _, n := range nodes {
			if n.Store().IsLeader() {
				leader = n
			} else if follower == nil {
				follower = n
			}
		}
		if leader == nil {
			return errors.New("none yet")
		}
		return nil
	})
	answeredBefore := metric(t, leader, "herald_read_index_requests_total")
	askedBefore := metric(t, follower, "herald_read_barriers_total")
	roundsBefore := metric(t, follower, "herald_read_barrier_rounds_total")

	const clients, each = 40, 10
	var wg sync.WaitGroup
	statuses := make(chan int, clients*each)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				req, _ := http.NewRequest(http.MethodGet, follower.URL+"/v1.0/me", nil)
				req.Header.Set("Authorization", fmt.Sprintf("Bearer garbage-%d-%d", c, i))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				statuses <- resp.StatusCode
			}
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusUnauthorized {
			t.Fatalf("an unknown token got %d, want 401", s)
		}
	}
	asked := metric(t, follower, "herald_read_barriers_total") - askedBefore
	rounds := metric(t, follower, "herald_read_barrier_rounds_total") - roundsBefore
	answered := metric(t, leader, "herald_read_index_requests_total") - answeredBefore
	t.Logf("%d requests: %v barriers, %v rounds on the follower, %v read-index requests answered by the leader",
		clients*each, asked, rounds, answered)
	if asked < clients*each {
		t.Fatalf("%v barriers for %d requests with unknown tokens: each should have looked again", asked, clients*each)
	}
	if rounds > clients*each/4 || answered > clients*each/4 {
		t.Fatalf("%v rounds and %v leader requests for %d barriers: concurrent barriers must share rounds",
			rounds, answered, clients*each)
	}
	if answered == 0 {
		t.Fatal("the leader answered no read-index request: the follower's barriers never asked it")
	}
}

// metric reads a counter from a node's /metrics.
func metric(t *testing.T, n *testnode.Node, name string) float64 {
	t.Helper()
	resp, err := n.GetMetrics()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in the metrics of %s", name, n.Config.NodeID)
	return 0
}

// /readyz asks the leader's commit index: a follower whose incoming Raft
// links are held (it still knows its leader, so its own commit index says
// nothing is missing) answers 503 while the others write, and 200 once the
// links are released and it has caught up. The others stay ready
// throughout.
func TestReadyzIsUnavailableWhileBehindTheLeader(t *testing.T) {
	ctx := context.Background()
	hold := newLinkHold()
	var laggard string // the Raft address of n3, whose incoming links are held
	nodes := startThree(t, func(i int, c *node.Config) {
		if i == 2 {
			laggard = c.RaftAddr
			// Long timers keep n3 a follower that knows its leader while
			// it hears nothing; without them it would call an election
			// and be unready for want of a leader, which proves less.
			c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout = 30*time.Second, 30*time.Second
		}
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil || addr != laggard {
				return conn, err
			}
			return &heldConn{Conn: conn, hold: hold}, nil
		}
	})
	t.Cleanup(hold.release) // before the nodes close (cleanups run last first)
	behind := nodes[2]
	for _, n := range nodes {
		pollUntil(t, "ready "+n.Config.NodeID, func() error { return readyz(n) })
	}
	adminToken := adminTokenOf(t, nodes[0])
	if _, err := clientFor(t, nodes[0], adminToken).CreateApplication(ctx,
		client.NewApplication{DisplayName: "Tasks", TargetHostName: "tasks.ready.test"}); err != nil {
		t.Fatal(err)
	}

	// A live stream on n1 hands out the cursor of the last write below.
	live, err := openStream(ctx, nodes[0], adminToken, "")
	if err != nil || live.status != http.StatusOK {
		t.Fatalf("stream on n1: %v, %v", live, err)
	}
	defer live.Close()
	// n3 must hold the session and the application before its links are
	// held: a commit needs only n1 and n2, so n3 may not have applied the
	// login yet, and would then answer 401 where the test wants 404.
	pollUntil(t, behind.Config.NodeID+" applies what n1 has", func() error {
		if have, want := behind.Store().Applied(), nodes[0].Store().Applied(); have < want {
			return fmt.Errorf("applied %d of %d", have, want)
		}
		return nil
	})

	hold.hold()
	var last *client.Notification
	for i := range 20 {
		var err error
		last, err = clientFor(t, nodes[i%2], adminToken).SendToUser(ctx, "admin", &client.Notification{
			TargetHostName: "tasks.ready.test", Payload: &client.Payload{RawContent: "while n3 hears nothing"}})
		if err != nil {
			t.Fatalf("send while n3's links are held: %v", err)
		}
	}
	err = readyz(behind)
	if err == nil {
		t.Fatalf("/readyz on %s is 200 while it has not applied the last 20 writes", behind.Config.NodeID)
	}
	if !strings.Contains(err.Error(), "not caught up") {
		t.Fatalf("/readyz on the laggard: %v, want a reason naming the lag", err)
	}
	if _, ok, _ := behind.Store().Notification(mustUserID(t, behind, "admin"), last.ID); ok {
		t.Fatal("the laggard holds the last write although its links are held; the test proves nothing")
	}
	for _, n := range nodes[:2] {
		if err := readyz(n); err != nil {
			t.Fatalf("/readyz on %s while n3 lags: %v", n.Config.NodeID, err)
		}
	}
	// A strong read there cannot be served in time: 503, to be retried,
	// never a stale answer. A default read answers from what n3 has once
	// its bounded barrier gives up.
	strong := strongClient(t, behind, adminToken, false)
	var ce *client.Error
	if err := strong.Do(ctx, http.MethodGet, "/v1.0/me/notifications", nil, nil); !errors.As(err, &ce) ||
		ce.Status != http.StatusServiceUnavailable || ce.RetryAfter <= 0 {
		t.Fatalf("a strong read on the laggard: %v, want 503 with Retry-After", err)
	}
	if err := plainClient(t, behind, adminToken).Do(ctx, http.MethodGet, "/v1.0/me/notifications/"+last.ID, nil, nil); !errors.As(err, &ce) ||
		ce.Status != http.StatusNotFound {
		t.Fatalf("the last write read on the laggard: %v, want 404 once the barrier gives up", err)
	}

	// A cursor and a delta token from n1 are beyond what the laggard has,
	// and it cannot catch up in time: 503 to retry, never 410, which
	// would throw a valid cursor away and force a full resync (found by
	// the chaos harness across a whole-cluster restart).
	cursor, err := live.cursorOf(last.ID)
	if err != nil {
		t.Fatalf("the cursor of the last write on n1: %v", err)
	}
	link, err := deltaLink(ctx, plainClient(t, nodes[0], adminToken), "")
	if err != nil {
		t.Fatal(err)
	}
	lu, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	s, err := openStream(ctx, behind, adminToken, cursor)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s.status != http.StatusServiceUnavailable {
		t.Fatalf("n1's cursor %s on the laggard: %d, want 503 (the cursor is valid, the laggard behind)", cursor, s.status)
	}
	if err := plainClient(t, behind, adminToken).Do(ctx, http.MethodGet, lu.RequestURI(), nil, nil); !errors.As(err, &ce) ||
		ce.Status != http.StatusServiceUnavailable || ce.RetryAfter <= 0 {
		t.Fatalf("n1's delta token on the laggard: %v, want 503 with Retry-After", err)
	}
	// So is a token issued through n1 meanwhile: 503 to retry, never a
	// 401, which has a client throw away a token that works on n1 (and a
	// refresh token with it: the three-node soak saw clients signed out).
	fresh, err := plainClient(t, nodes[0], "").PasswordToken(ctx, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	if err := plainClient(t, behind, fresh.AccessToken).Do(ctx, http.MethodGet, "/v1.0/me", nil, nil); !errors.As(err, &ce) ||
		ce.Status != http.StatusServiceUnavailable || ce.RetryAfter <= 0 {
		t.Fatalf("n1's new access token on the laggard: %v, want 503 with Retry-After", err)
	}
	if _, err := plainClient(t, behind, "").RefreshToken(ctx, fresh.RefreshToken); !errors.As(err, &ce) ||
		ce.Status != http.StatusServiceUnavailable {
		t.Fatalf("n1's new refresh token on the laggard: %v, want 503", err)
	}

	hold.release()
	pollUntil(t, "ready again "+behind.Config.NodeID, func() error { return readyz(behind) })
	pollUntil(t, "n1's cursor on the caught-up laggard", func() error {
		s, err := openStream(ctx, behind, adminToken, cursor)
		if err != nil {
			return err
		}
		s.Close()
		if s.status != http.StatusOK {
			return fmt.Errorf("stream from %s: %d", cursor, s.status)
		}
		return nil
	})
	if _, ok, err := behind.Store().Notification(mustUserID(t, behind, "admin"), last.ID); !ok || err != nil {
		t.Fatalf("ready, yet without the last write: %v, %v", ok, err)
	}
}

func mustUserID(t *testing.T, n *testnode.Node, upn string) string {
	t.Helper()
	u, ok, err := n.Store().UserByName(upn)
	if err != nil || !ok {
		t.Fatalf("user %s on %s: %v, %v", upn, n.Config.NodeID, ok, err)
	}
	return u.ID
}

// readyz is nil for a 200, else the status and body.
func readyz(n *testnode.Node) error {
	resp, err := http.Get(n.URL + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	b, _ := io.ReadAll(resp.Body)
	return fmt.Errorf("%s: %s", resp.Status, b)
}

// linkHold holds every write on the connections it wraps while held.
type linkHold struct {
	mu   sync.Mutex
	open chan struct{} // closed while writes flow
}

func newLinkHold() *linkHold {
	open := make(chan struct{})
	close(open)
	return &linkHold{open: open}
}

func (h *linkHold) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.open:
		h.open = make(chan struct{})
	default:
	}
}

func (h *linkHold) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.open:
	default:
		close(h.open)
	}
}

func (h *linkHold) wait() {
	h.mu.Lock()
	open := h.open
	h.mu.Unlock()
	<-open
}

type heldConn struct {
	net.Conn
	hold *linkHold
}

func (c *heldConn) Write(b []byte) (int, error) {
	c.hold.wait()
	return c.Conn.Write(b)
}

// A backup taken from a follower that has not applied a write the cluster
// acknowledged must not be a good-looking file without it: the follower
// answers 503 while it cannot catch up, and once it has, the backup holds
// the write. A backup asked for as is (ConsistencyLevel: eventual, herald
// backup --stale, for a node that has lost its quorum) is what it holds.
func TestBackupOnALaggingFollowerHoldsEveryAcknowledgedWrite(t *testing.T) {
	ctx := context.Background()
	hold := newLinkHold()
	var laggard string
	nodes := startThree(t, func(i int, c *node.Config) {
		if i == 2 {
			laggard = c.RaftAddr
			c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout = 30*time.Second, 30*time.Second
		}
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil || addr != laggard {
				return conn, err
			}
			return &heldConn{Conn: conn, hold: hold}, nil
		}
	})
	t.Cleanup(hold.release)
	behind := nodes[2]
	for _, n := range nodes {
		pollUntil(t, "ready "+n.Config.NodeID, func() error { return readyz(n) })
	}
	adminToken := adminTokenOf(t, nodes[0])
	if _, err := clientFor(t, nodes[0], adminToken).CreateApplication(ctx,
		client.NewApplication{DisplayName: "Tasks", TargetHostName: "tasks.backup.test"}); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, behind.Config.NodeID+" applies what n1 has", func() error {
		if have, want := behind.Store().Applied(), nodes[0].Store().Applied(); have < want {
			return fmt.Errorf("applied %d of %d", have, want)
		}
		return nil
	})

	hold.hold()
	last, err := clientFor(t, nodes[0], adminToken).SendToUser(ctx, "admin", &client.Notification{
		TargetHostName: "tasks.backup.test", Payload: &client.Payload{RawContent: "acknowledged before the backup"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := behind.Store().Notification(mustUserID(t, behind, "admin"), last.ID); ok {
		t.Fatal("the laggard holds the write although its links are held; the test proves nothing")
	}
	var b bytes.Buffer
	_, err = plainClient(t, behind, adminToken).Backup(ctx, &b)
	var ce *client.Error
	if err == nil && !bytes.Contains(b.Bytes(), []byte(last.ID)) {
		t.Fatalf("a backup from the laggard (%d bytes) misses notification %s, acknowledged before it began", b.Len(), last.ID)
	}
	if err != nil && (!errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || !strings.Contains(ce.Message, "another node")) {
		t.Fatalf("a backup from the laggard: %v, want 503 naming what to do", err)
	}
	b.Reset()
	if _, err := plainClient(t, behind, adminToken).StaleBackup(ctx, &b); err != nil || b.Len() == 0 {
		t.Fatalf("a backup as is from the laggard: %d bytes, %v", b.Len(), err)
	}

	hold.release()
	pollUntil(t, "a backup from the caught-up laggard with the write", func() error {
		b.Reset()
		if _, err := plainClient(t, behind, adminToken).Backup(ctx, &b); err != nil {
			return err
		}
		if !bytes.Contains(b.Bytes(), []byte(last.ID)) {
			return fmt.Errorf("the backup misses %s", last.ID)
		}
		return nil
	})
}
