package node_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
