package node_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
)

// A lone node's start (first and again on its data), and its stop, log no
// warning or error: its own election is expected. The election is still
// there at debug level, which shows the test reads what raft logs.
func TestSingleNodeStartLogsNoWarning(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	var out syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		n, err := node.Start(ctx, cfg, logger)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		err = n.Close(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	log := out.String()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Errorf("a single-node start logged: %s", line)
		}
	}
	if n := strings.Count(log, "starting an election"); n != 2 {
		t.Errorf("%d election lines at debug level over two starts, want 2:\n%s", n, log)
	}
}

// pausableDialer routes a node's links to other nodes through connections
// that, once paused, deliver nothing more in either direction, like a peer
// whose process is stopped (SIGSTOP) while its kernel keeps the connection
// open. Unlike a real stopped peer it ignores deadlines, so a stage that
// waits on it waits until resume.
type pausableDialer struct {
	mu     sync.Mutex
	gate   chan struct{} // closed while the links run
	only   map[string]bool
	paused bool
	// stalled counts reads waiting on a pause.
	stalled atomic.Int32
}

func newPausableDialer(only ...string) *pausableDialer {
	d := &pausableDialer{gate: make(chan struct{}), only: map[string]bool{}}
	close(d.gate)
	for _, a := range only {
		d.only[a] = true
	}
	return d
}

func (d *pausableDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil || !d.only[addr] {
		return c, err
	}
	return &pausableConn{Conn: c, d: d}, nil
}

func (d *pausableDialer) pause() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.paused {
		d.paused, d.gate = true, make(chan struct{})
	}
}

func (d *pausableDialer) resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.paused {
		d.paused = false
		close(d.gate)
	}
}

func (d *pausableDialer) wait() {
	d.mu.Lock()
	g := d.gate
	d.mu.Unlock()
	<-g
}

type pausableConn struct {
	net.Conn
	d *pausableDialer
}

func (c *pausableConn) Read(p []byte) (int, error) {
	c.d.stalled.Add(1)
	c.d.wait()
	c.d.stalled.Add(-1)
	return c.Conn.Read(p)
}

// A leader whose Raft links stall (its followers paused) cannot finish
// shutting Raft down: its replication waits on them. Close still returns
// on its deadline, with an error naming the stage that did not finish, and
// the rest of the shutdown completes in the background once the links run
// again.
func TestCloseReturnsOnItsDeadlineWhenRaftHangs(t *testing.T) {
	cfgs := []node.Config{clusterConfig(t, "s1")}
	cfgs = append(cfgs, clusterConfig(t, "s2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "s3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	dialer := newPausableDialer(cfgs[0].RaftAddr, cfgs[1].RaftAddr, cfgs[2].RaftAddr)
	nodes := make([]*testnode.Node, 3)
	for i := range cfgs {
		cfgs[i].Dial = dialer.Dial
		// No housekeeping tick: its writes, forwarded to a leader that
		// cannot be elected, would hold the shutdown in another stage.
		cfgs[i].PurgeInterval = time.Hour
		nodes[i] = testnode.Start(t, &cfgs[i])
	}
	// Runs before the nodes' own cleanups, which would otherwise wait on
	// the paused links.
	t.Cleanup(dialer.resume)
	var leader *testnode.Node
	pollUntil(t, "all three voters", func() error {
		for _, n := range nodes {
			if n.Store().IsLeader() {
				leader = n
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		if s := leader.Store().Raft().Stats()["num_peers"]; s != "2" {
			return errors.New("peers: " + s)
		}
		return nil
	})

	dialer.pause()
	// The leader heartbeats each follower every few tens of milliseconds
	// and steps down once it has heard from neither for its lease: by then
	// both heartbeats wait for an answer that does not come.
	pollUntil(t, "the leader's heartbeats stalled", func() error {
		if n := dialer.stalled.Load(); n < 2 || leader.Store().IsLeader() {
			return fmt.Errorf("%d reads waiting, leader %v", n, leader.Store().IsLeader())
		}
		return nil
	})
	const timeout = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := leader.Close(ctx)
	took := time.Since(start)
	if !errors.Is(err, node.ErrShutdownTimeout) {
		t.Fatalf("Close with stalled raft links: %v, want a shutdown timeout", err)
	}
	var te *node.ShutdownTimeoutError
	if !errors.As(err, &te) || te.Stage != raft.StageRaft || !strings.Contains(err.Error(), "raft shutdown") ||
		!strings.Contains(err.Error(), "badger close") {
		t.Errorf("error %q: want it stuck in %q with badger close not run yet", err, raft.StageRaft)
	}
	// Without the deadline Close waits as long as the links stay paused,
	// which is until this test resumes them: any bound catches that.
	if took > timeout+5*time.Second {
		t.Errorf("Close took %s with a %s deadline", took, timeout)
	}
	select {
	case <-leader.Stopped():
		t.Fatal("the shutdown finished although raft was stalled; the test did not make it hang")
	default:
	}
	dialer.resume()
	select {
	case <-leader.Stopped():
	case <-time.After(20 * time.Second):
		t.Fatal("the shutdown did not finish in the background once the links ran again")
	}
}

// startLogged runs a node on a fresh directory with its log (warnings too)
// in out; the test closes it.
func startLogged(t *testing.T, out *syncbuf.Buffer, shutdown time.Duration) *node.Node {
	t.Helper()
	cfg := testnode.Config(t, t.TempDir())
	cfg.ShutdownTimeout = shutdown
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Start(ctx, cfg, slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })
	return n
}

// acceptedBefore makes one request on a connection of its own. The server
// accepts connections in order, so once it is answered every connection
// dialled before it has been accepted (and is in http.StateNew at least).
func acceptedBefore(t *testing.T, n *node.Node) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + n.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// closedByServer reads c until the server closes it, and fails the test if
// that does not happen within d.
func closedByServer(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server left the connection open: %v", err)
	}
}

// A connection that never sent a request (a browser's pre-connect, the
// spare connection go1.27's Transport dials while an earlier one drains)
// does not hold up the shutdown: http.Server.Shutdown alone waits for such
// a connection until it is five seconds old, so this shutdown (budget 4 s)
// used to end in "http drain" past its deadline.
func TestShutdownClosesConnectionsThatSentNothing(t *testing.T) {
	var out syncbuf.Buffer
	n := startLogged(t, &out, 4*time.Second)
	spare, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer spare.Close()
	acceptedBefore(t, n)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("close with a connection that sent nothing: %v\n%s", err, out.String())
	}
	closedByServer(t, spare, 10*time.Second)
	if log := out.String(); strings.Contains(log, "cut the connections") {
		t.Errorf("the unused connection was left to the drain's bound, not closed at once:\n%s", log)
	}
}

// A request whose handler does not finish within half the shutdown budget
// (here one waiting for a body the client does not send) has its
// connection cut, and the log names it; the rest of the shutdown runs.
func TestShutdownCutsWhatOutlastsTheDrainAndSaysSo(t *testing.T) {
	var out syncbuf.Buffer
	n := startLogged(t, &out, 4*time.Second)
	c, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// With Expect: 100-continue the server answers "100 Continue" only
	// when the handler reads the body: then the request is in flight.
	fmt.Fprintf(c, "POST /ui/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("no 100 Continue: %q %v", line, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("close with a request in flight past the drain's bound: %v\n%s", err, out.String())
	}
	closedByServer(t, c, 10*time.Second)
	log := out.String()
	if !strings.Contains(log, "cut the connections") || !strings.Contains(log, c.LocalAddr().String()) {
		t.Errorf("no log line naming the connection cut (%s):\n%s", c.LocalAddr(), log)
	}
}
