// Package cluster holds what makes several Herald nodes one server:
// membership and joining, forwarding of writes to the leader, inter-node
// authentication, peer health and the slot table's upkeep. node/ wires it
// (start-up, shut-down, the delivery engine); httpapi/ sees only the State
// that Cluster.State returns; raft/ knows nothing of it. DESIGN.md beside
// this file says how the parts fit.
package cluster

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-notify/herald/raft"
)

// Options configure a Cluster.
type Options struct {
	Store *raft.Store
	// ID is this node's id; HTTPAdvert the HTTP address others reach it at.
	ID         string
	HTTPAdvert string
	// Join lists other nodes' HTTP addresses to ask for membership.
	Join []string
	// Key is the cluster key. Without one every internal request is
	// refused and a second member cannot be added.
	Key []byte
	// PeerDownAfter is how long a voter's heartbeats must fail before its
	// slots move to the others.
	PeerDownAfter time.Duration
	Logger        *slog.Logger
	// LiveConnections counts this node's open live streams, for status.
	LiveConnections func() int
	// Dial, when set, replaces the TCP dial of every inter-node
	// connection: tests put a fault-injecting proxy in the path with it.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Cluster is this node's part in the cluster.
type Cluster struct {
	opts   Options
	log    *slog.Logger
	id     string
	store  *raft.Store
	auth   *clusterAuth
	client *http.Client
	health *peerHealth
	// fence stops external deliveries while this node cannot be sure it
	// still owns its slots (fence.go).
	fence *fence
	// barrierTerm is the term in which this node, as leader, last issued a
	// Barrier before reading the slot table.
	barrierTerm atomic.Uint64
	// changed wakes the node's housekeeping: a leader change, or a peer
	// down past the grace period or back (see Changes).
	changed chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// New makes a Cluster over an open store. Start begins its background work.
func New(opts Options) *Cluster {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LiveConnections == nil {
		opts.LiveConnections = func() int { return 0 }
	}
	tr := &http.Transport{}
	if opts.Dial != nil {
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return opts.Dial(ctx, addr) }
	}
	return &Cluster{opts: opts, log: opts.Logger, id: opts.ID, store: opts.Store,
		auth:    &clusterAuth{key: opts.Key, seen: map[string]time.Time{}},
		client:  &http.Client{Timeout: 30 * time.Second, Transport: tr},
		health:  &peerHealth{grace: opts.PeerDownAfter, failing: map[string]time.Time{}},
		fence:   newFence(opts.PeerDownAfter),
		changed: make(chan struct{}, 1),
		stop:    make(chan struct{})}
}

// Start asks to join (with Join set) and follows leader changes and peer
// health.
func (c *Cluster) Start() {
	if len(c.opts.Join) > 0 {
		c.wg.Add(1)
		go c.joinLoop()
	}
	c.observe()
	c.watchFence()
}

// Close stops the background work.
func (c *Cluster) Close() {
	c.once.Do(func() { close(c.stop) })
	c.wg.Wait()
}

// Changes fires when the leader changed or a peer went down past the grace
// period or came back: the node rebalances and rescans its deliveries. It
// holds one wake-up; several changes before it is read need only one look.
func (c *Cluster) Changes() <-chan struct{} { return c.changed }

func (c *Cluster) wake() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// ErrNeedKey refuses a second member to a node without a cluster key.
var ErrNeedKey = errors.New("several nodes need a shared --cluster-key (HERALD_CLUSTER_KEY) for now; --insecure-cluster does not allow them")

// State is what the API uses: reads from the local replica, writes proposed
// on the leader (forwarded to it from a follower).
func (c *Cluster) State() forwarder { return forwarder{Store: c.store, c: c} }

// ID is this node's id.
func (c *Cluster) ID() string { return c.id }

// HTTPAdvert is the HTTP address other nodes reach this one at.
func (c *Cluster) HTTPAdvert() string { return c.opts.HTTPAdvert }

// HasKey reports whether the cluster has a key, without which no second
// member can be added.
func (c *Cluster) HasKey() bool { return len(c.auth.key) > 0 }
