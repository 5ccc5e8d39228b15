// Package cluster holds what makes several Herald nodes one server:
// membership and joining, forwarding of writes to the leader, read-index barriers, the
// inter-node transport (TLS, authentication, Raft and internal requests on
// one port), peer health and the slot table's upkeep. node/ wires it
// (start-up, shut-down, the delivery engine); httpapi/ sees only the State
// that Cluster.State returns; raft/ knows nothing of it. DESIGN.md beside
// this file says how the parts fit.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-notify/herald/internal/logthrottle"
	"github.com/herald-notify/herald/raft"
)

// Options configure a Cluster.
type Options struct {
	Store *raft.Store
	// ID is this node's id; HTTPAdvert the HTTP address others reach it at.
	ID         string
	HTTPAdvert string
	// HTTPAddr is --http-addr as given (a host name, say), which a node's
	// own --join may name it by.
	HTTPAddr string
	// Join lists other nodes' HTTP addresses to ask for membership.
	Join []string
	// Transport is the inter-node port (transport.go), shared with Raft.
	// Without one (no cluster key, no cluster certificates) a second
	// member cannot be added.
	Transport *Transport
	// BootstrapExpect, above 1, has a node without Raft state form a new
	// cluster with the nodes of Join once that many agree (join.go).
	BootstrapExpect int
	// PeerDownAfter is how long a voter's heartbeats must fail before its
	// slots move to the others.
	PeerDownAfter time.Duration
	Logger        *slog.Logger
	// LiveConnections counts this node's open live streams, for status.
	LiveConnections func() int
	// ObserveForward, when set, is told the number of commands in every
	// batch of forwarded writes sent to the leader.
	ObserveForward func(commands int)
	// Dial, when set, replaces the TCP dial of every inter-node
	// connection: tests put a fault-injecting proxy in the path with it.
	// The Transport has its own (TransportOptions.Dial); this one serves
	// the plain-HTTP lookup of a peer's inter-node address.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// RulesLevel, when set, is the rules level this node says it knows
	// instead of raft.RulesLevel: tests stand in an older binary with it.
	RulesLevel func() int
	// Clock, when set, replaces this node's wall clock where the cluster
	// reads it against the other nodes' (clock.go): tests set one node's
	// clock off with it.
	Clock func() time.Time
	// UncheckedTimes, when set, lets the leader take writes whatever
	// their time: tests that date tokens or audit records away from the
	// node's clock on purpose (node.Config.TokenClock, AuditClock) set it.
	UncheckedTimes bool
}

// Cluster is this node's part in the cluster.
type Cluster struct {
	opts  Options
	log   *slog.Logger
	id    string
	store *raft.Store
	tr    *Transport
	// client makes internal requests over tr, and forwards the forwarded
	// writes on connections of their own (see New); lookup asks a node's
	// public listener for its inter-node address (GET
	// /internal/cluster/peer).
	client   *http.Client
	forwards *http.Client
	lookup   *http.Client
	internal *http.Server
	health   *peerHealth
	join     *joinState
	// batch sends this node's forwarded writes to the leader (batch.go).
	batch *batcher
	// fence stops external deliveries while this node cannot be sure it
	// still owns its slots (fence.go).
	fence *fence
	// barrierTerm is the term in which this node, as leader, last issued a
	// Barrier before reading the slot table.
	barrierTerm atomic.Uint64
	// reads shares the read-index rounds of concurrent barriers
	// (barrier.go).
	reads readRounds
	// signIn holds this node's sign-in counters, which are the cluster's
	// while it leads (signin.go); signInLog reports a leader that cannot
	// be asked about them.
	signIn atomic.Pointer[SignInCounters]
	// clockRef is this node's latest reading, as leader, of the voters'
	// clocks; readingClocks is set while one is taken (clock.go).
	clockRef      atomic.Pointer[clockReading]
	readingClocks atomic.Bool
	signInLog     *logthrottle.Logger
	// rates are this node's request buckets, shared with the other nodes
	// (ratelimits.go); ratePeers is how many other members it last saw.
	rates     atomic.Pointer[RateLimits]
	ratePeers atomic.Int32
	// changed wakes the node's housekeeping: a leader change, or a peer
	// down past the grace period or back (see Changes).
	changed chan struct{}
	stop    chan struct{}
	// drainOver closes drainHold after Drain: from then on a forwarded
	// write still waiting for a leader is answered at once.
	drainOver chan struct{}
	drainOnce sync.Once
	// stopped ends with Close, and with it every request to another node
	// still waiting: a peer that stopped answering must not hold a
	// shutdown.
	stopped       context.Context
	cancelStopped context.CancelFunc
	wg            sync.WaitGroup
	// wgMu orders the work a request starts (track) against Close's
	// Wait: once closed is set, nothing is added that Wait would miss.
	wgMu   sync.Mutex
	closed bool
	once   sync.Once
}

// track counts one piece of background work that a request starts, for
// Close to wait for, unless the cluster is closing: then it reports false
// and the caller starts nothing. The caller calls c.wg.Done when done.
func (c *Cluster) track() bool {
	c.wgMu.Lock()
	defer c.wgMu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// New makes a Cluster over an open store. Start begins its background work.
func New(opts Options) *Cluster {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LiveConnections == nil {
		opts.LiveConnections = func() int { return 0 }
	}
	// A peer whose public listener is HTTPS may present a certificate for
	// its public host name, or a throwaway one, rather than for the
	// address in --join: the lookup does not verify it, since the answer
	// only says where the inter-node port is, and everything there is
	// authenticated by the cluster key or certificates.
	lookup := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	if opts.Dial != nil {
		lookup.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return opts.Dial(ctx, addr) }
	}
	c := &Cluster{opts: opts, log: opts.Logger, id: opts.ID, store: opts.Store, tr: opts.Transport,
		lookup:    &http.Client{Timeout: 10 * time.Second, Transport: lookup},
		health:    &peerHealth{grace: opts.PeerDownAfter, failing: map[string]time.Time{}},
		join:      &joinState{failed: make(chan struct{})},
		fence:     newFence(opts.PeerDownAfter),
		changed:   make(chan struct{}, 1),
		stop:      make(chan struct{}),
		drainOver: make(chan struct{})}
	c.stopped, c.cancelStopped = context.WithCancel(context.Background())
	// Keep-alive connections to the leader carry the forwarded writes, so
	// a follower holds a long-lived connection to it. They have a pool of
	// their own: a status or read-index call that times out against a
	// slow leader closes the connection it ran on, and a forward that
	// found its pool's connections so taken would pay a handshake, or
	// (with the leader slow to answer) fail to make one and give up on a
	// write it could have sent.
	newClient := func() *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 2 * time.Minute,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				if c.tr == nil {
					return nil, ErrNeedKey
				}
				return c.tr.Dial(ctx, addr, protoHTTP)
			}}}
	}
	c.client, c.forwards = newClient(), newClient()
	c.batch = newBatcher(c)
	c.signInLog = logthrottle.New(opts.Logger, time.Minute)
	return c
}

// Start joins or forms the cluster (with Join set) and follows leader
// changes and peer health.
func (c *Cluster) Start() {
	if c.tr != nil {
		c.internal = &http.Server{Handler: c.handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute,
			ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelWarn)}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := c.internal.Serve(c.tr.http); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.log.Error("inter-node HTTP stopped", "error", err)
			}
		}()
	}
	c.startJoin()
	if c.tr != nil {
		// Without a transport there is no other node to tell.
		c.wg.Add(1)
		go c.shareRates()
	}
	c.observe()
	c.batch.start()
	c.watchFence()
}

// Drain tells the cluster that the node is stopping and is draining its
// requests. Writes forwarded to the leader go on as before, but one that
// still finds no leader drainHold after it is answered 503 (the node is
// shutting down) rather than after its whole hold: when the whole cluster
// stops, the last node has no leader to wait for, and its drain would
// otherwise last forwardHold. A client gets its answer sooner and can
// retry elsewhere; a node stopping in a rolling restart still has a leader
// and answers as usual.
func (c *Cluster) Drain() {
	c.drainOnce.Do(func() {
		time.AfterFunc(drainHold, func() { close(c.drainOver) })
	})
}

func (c *Cluster) drained() bool {
	select {
	case <-c.drainOver:
		return true
	default:
		return false
	}
}

// Close stops the background work and the inter-node HTTP server, letting
// requests in flight finish for a moment. The Transport is the caller's.
func (c *Cluster) Close() {
	c.once.Do(func() {
		c.wgMu.Lock()
		c.closed = true
		c.wgMu.Unlock()
		close(c.stop)
		c.cancelStopped()
		if c.internal != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			if c.internal.Shutdown(ctx) != nil {
				c.internal.Close()
			}
			cancel()
		}
		c.client.CloseIdleConnections()
		c.forwards.CloseIdleConnections()
	})
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
var ErrNeedKey = errors.New("several nodes need a shared --cluster-key (HERALD_CLUSTER_KEY; make one with `herald cluster key`) or --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca; --insecure-cluster does not allow them")

// State is what the API uses: reads from the local replica, writes proposed
// on the leader (forwarded to it from a follower).
func (c *Cluster) State() forwarder { return forwarder{Store: c.store, c: c} }

// ID is this node's id.
func (c *Cluster) ID() string { return c.id }

// HTTPAdvert is the HTTP address other nodes reach this one at.
func (c *Cluster) HTTPAdvert() string { return c.opts.HTTPAdvert }

// HasKey reports whether the nodes can authenticate one another (a cluster
// key or cluster certificates), without which no second member can be
// added.
func (c *Cluster) HasKey() bool { return c.tr != nil }

// rulesLevel is the newest rules level this node says it knows.
func (c *Cluster) rulesLevel() int {
	if c.opts.RulesLevel != nil {
		return c.opts.RulesLevel()
	}
	return raft.RulesLevel
}
