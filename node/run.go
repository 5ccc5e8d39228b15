// Package node runs one Herald node: it opens the replicated store, starts
// the live hub and the HTTP API, runs the leader's housekeeping, and shuts
// everything down in order.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/herald-notify/herald/cluster"
	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/httpapi"
	"github.com/herald-notify/herald/internal/connlimit"
	"github.com/herald-notify/herald/internal/publictls"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
	"github.com/herald-notify/herald/ui"
)

// Node is one running Herald node.
type Node struct {
	cfg    Config
	log    *slog.Logger
	id     string
	store  *raft.Store
	hub    *fanout.Hub
	engine *fanout.Engine
	api    *httpapi.Server
	// cluster is this node's part in the cluster: membership, forwarding
	// of writes, peer health, the slot table.
	cluster *cluster.Cluster
	// transport is the inter-node port (nil on a node without a cluster
	// key or certificates, whose Raft runs over plain TCP alone).
	transport *cluster.Transport
	http      *http.Server
	conns     *connTracker // the public listener's connections
	listener  net.Listener
	// keyPair is the operator's certificate of the public listener, acme
	// the automatic one's manager (both nil: plain HTTP; https.go).
	keyPair *publictls.KeyPair
	acme    *publictls.ACME
	// acmeHTTP answers HTTP-01 challenges; metricsHTTP serves /metrics on
	// --metrics-addr. Either may be nil.
	acmeHTTP    *http.Server
	metricsHTTP *http.Server
	// localHTTP serves password resets on the data directory's socket
	// (local.go); nil when it could not listen.
	localHTTP       *http.Server
	localPath       string
	metricsListener net.Listener
	stop            chan struct{}
	wg              sync.WaitGroup

	started atomic.Bool // the first admin exists and the engine runs
	// lastOwned and lastLeader are what housekeeping last saw of ownership
	// (housekeeping goroutine only).
	lastOwned  []bool
	lastLeader bool
	closeOnce  sync.Once
	closeErr   error
	// stopped is closed when the shutdown's last stage is done.
	stopped     chan struct{}
	stoppedOnce sync.Once
}

// Run starts a node with cfg and blocks until ctx is cancelled, then shuts the
// node down gracefully.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	n, err := Start(ctx, cfg, logger)
	if err != nil && ctx.Err() != nil {
		// Stopped while it waited for its peers: nothing failed.
		logger.Info("stopped before the node joined a cluster", "error", err)
		return nil
	}
	if err != nil {
		return err
	}
	// SIGHUP reloads the public listener's certificate (a renewal put new
	// files in place), as systemd's ExecReload sends it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-hup:
			n.ReloadTLS()
		case <-ctx.Done():
		}
	}
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	stopping := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = n.Close(sctx)
	if err == nil {
		// Without it a clean stop and a process killed mid-shutdown
		// (systemd's TimeoutStopSec, docker stop's grace) left the same
		// last line in the log.
		logger.Info("stopped cleanly", "took", time.Since(stopping).Round(time.Millisecond))
	}
	var te *ShutdownTimeoutError
	if errors.As(err, &te) {
		// The caller exits now, leaving the stuck stage behind: the Raft
		// log is the durable record, so nothing acknowledged is lost, and
		// the next start replays what Badger had not synced.
		logger.Error("shutdown did not finish in time; exiting anyway", "timeout", cfg.ShutdownTimeout,
			"stuck_in", te.Stage, "not_run", strings.Join(te.Pending, ", "))
	}
	return err
}

// Start opens the node's storage, waits for a leader, creates the first
// admin on an empty cluster, and starts serving HTTP.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Node, error) {
	if err := checkBootstrapExpect(cfg); err != nil {
		return nil, err
	}
	if err := cluster.CheckKey(cfg.ClusterKey); err != nil {
		return nil, err
	}
	if err := checkPublicListener(cfg); err != nil {
		return nil, err
	}
	tlsFiles := cluster.TLSFiles{Cert: cfg.ClusterTLSCert, Key: cfg.ClusterTLSKey, CA: cfg.ClusterTLSCA}
	secured := cfg.ClusterKey != "" || tlsFiles != (cluster.TLSFiles{})
	// --insecure-cluster does not lift this: without a key or certificates
	// nothing tells a member from anyone who reaches the Raft port.
	if len(cfg.Join) > 0 && !secured {
		return nil, cluster.ErrNeedKey
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := CheckDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	id, err := nodeID(cfg)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: logger, id: id, hub: fanout.NewHub(), stop: make(chan struct{}), conns: newConnTracker()}
	tlsConfig, err := n.setupPublicTLS()
	if err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if kp := n.keyPair; kp != nil {
		// The operator renews this pair; nothing else warns before it
		// expires (ACME certificates are renewed by the node itself).
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_tls_certificate_not_after_seconds",
			Help: "Expiry (Unix time) of the --tls-cert certificate the public listener serves."},
			func() float64 { return float64(kp.Leaf().NotAfter.Unix()) }))
	}
	for _, c := range []prometheus.Collector{anonResident(), minorFaults()} {
		if c != nil {
			reg.MustRegister(c)
		}
	}
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "herald_raft_batch_commands",
		Help: "Commands per group-committed Raft entry.", Buckets: prometheus.ExponentialBuckets(1, 2, 9)})
	apply := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "herald_raft_apply_seconds",
		Help:    "Time from handing an entry to Raft until it is committed and applied.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14)})
	forwarded := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "herald_forward_batch_commands",
		Help: "Commands per batch of writes this node forwarded to the leader.", Buckets: prometheus.ExponentialBuckets(1, 2, 9)})
	reg.MustRegister(batch, apply, forwarded)
	// The FSM may apply entries (a replay) before the engine exists; what
	// it misses then, the engine reads from the pending index at start.
	var engine atomic.Pointer[fanout.Engine]
	var api atomic.Pointer[httpapi.Server] // likewise; no stream is open before it exists

	reserve, err := raft.ParseDiskReserve(cfg.DiskReserve)
	if err != nil {
		return nil, err
	}
	memory, err := raft.ParseMemory(cfg.Memory)
	if err != nil {
		return nil, err
	}
	if secured {
		// One inter-node port, the Raft address, carries Raft and the
		// internal requests over TLS (cluster/transport.go).
		n.transport, err = cluster.NewTransport(cluster.TransportOptions{Bind: cfg.RaftAddr, Listen: cfg.RaftBindAddr,
			Key: []byte(cfg.ClusterKey), TLS: tlsFiles, Dial: cfg.Dial, Logger: logger})
		if err != nil {
			return nil, err
		}
	}
	ropts := raft.Options{
		DiskReserve: &reserve, Memory: memory,
		// A joining node waits to be added; any other forms a one-node
		// cluster the first time (later starts find their Raft state).
		Bootstrap: len(cfg.Join) == 0,
		Dir:       cfg.DataDir, NodeID: id, RaftAddr: cfg.RaftAddr,
		HeartbeatTimeout: cfg.Raft.HeartbeatTimeout, ElectionTimeout: cfg.Raft.ElectionTimeout,
		SnapshotInterval: cfg.Raft.SnapshotInterval, SnapshotThreshold: cfg.Raft.SnapshotThreshold,
		Logger: logger, OnChange: n.hub.Publish,
		OnDeliveries: func(refs []resource.DeliveryRef) {
			if e := engine.Load(); e != nil {
				e.Notify(refs)
			}
		},
		OnRevoked: func(principals []string) {
			if a := api.Load(); a != nil {
				a.RecheckStreams(principals)
			}
		},
		ObserveBatch: func(cmds int, took time.Duration) {
			batch.Observe(float64(cmds))
			apply.Observe(took.Seconds())
		},
	}
	if n.transport != nil {
		ropts.Layer = n.transport.RaftLayer()
	}
	n.store, err = raft.Open(ropts)
	if err != nil {
		if n.transport != nil {
			n.transport.Close()
		}
		return nil, err
	}
	if level, err := n.store.Rules(); err != nil || level > raft.RulesLevel {
		// Entries from here on would apply under rules this binary
		// does not know, and its state would part from the others'.
		n.store.Close()
		if n.transport != nil {
			n.transport.Close()
		}
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s holds state under rules level %d, newer than this release knows (%d): "+
			"run the release that wrote it, or a later one", cfg.DataDir, level, raft.RulesLevel)
	}
	if n.transport != nil {
		n.transport.SetIdentity(n.store.Identity)
	}
	if cfg.AdminPassword != "" {
		// Changing it in an environment file and restarting is a natural
		// thing to try for a lost password; it did nothing, silently.
		if page, err := n.store.ListUsers("", 1); err == nil && len(page.Items) > 0 {
			logger.Info("admin-password (HERALD_ADMIN_PASSWORD) is ignored: it only sets the first admin's password, "+
				"and this data directory has users already; herald users reset-password sets a new one", "data_dir", cfg.DataDir)
		}
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_disk_free_bytes",
		Help: "Free bytes on the data directory's filesystem, checked every second."},
		func() float64 { return float64(n.store.DiskSpace().Free) }),
		// The reserve scales with the disk (2 % by default): an alert
		// on free space needs it, as no fixed figure fits every disk.
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_disk_reserve_bytes",
			Help: "Free bytes the data directory's filesystem keeps (--disk-reserve); below them writes that add data get 507."},
			func() float64 { return float64(n.store.DiskSpace().Reserve) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_disk_full",
			Help: "1 while free space is below --disk-reserve and writes that add data get 507."},
			func() float64 {
				if n.store.DiskSpace().Full {
					return 1
				}
				return 0
			}))
	reg.MustRegister(n.store.Metrics()...)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_raft_applied_index",
		Help: "Last Raft index applied to this node's state."}, func() float64 { return float64(n.store.Applied()) }))

	n.listener, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		n.store.Close()
		if n.transport != nil {
			n.transport.Close()
		}
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_http_connections_refused_total",
		Help: "Connections closed on arrival: over max-conns (limit=\"server\") or max-conns-per-ip (limit=\"client\")."},
		[]string{"limit"})
	reg.MustRegister(refused)
	connLimits := connlimit.New(n.listener, cfg.Limits.MaxConns, cfg.Limits.MaxConnsPerIP, func(_ net.Addr, perIP bool) {
		if perIP {
			refused.WithLabelValues("client").Inc()
		} else {
			refused.WithLabelValues("server").Inc()
		}
	})
	// markListener lets a shutdown tell connections that never sent a
	// byte (conns.go).
	n.listener = markListener{connLimits}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_http_connections_open",
		Help: "Open connections of the public listener."}, func() float64 { return float64(connLimits.Open()) }))
	n.cluster = cluster.New(cluster.Options{Store: n.store, ID: id,
		HTTPAdvert: cluster.AdvertiseHTTP(n.listener.Addr(), n.store.RaftAddr()),
		HTTPAddr:   n.cfg.HTTPAddr,
		Join:       cfg.Join, BootstrapExpect: cfg.BootstrapExpect, Transport: n.transport,
		PeerDownAfter: peerDownAfter(cfg.Raft.PeerDownAfter),
		Logger:        logger, LiveConnections: n.hub.Open, Dial: cfg.Dial, RulesLevel: cfg.RulesLevel, Clock: cfg.Clock,
		// Tests that move the token or audit clock mean the times they
		// store to lie away from the node's clock.
		UncheckedTimes: cfg.TokenClock != nil || cfg.AuditClock != nil,
		ObserveForward: func(cmds int) { forwarded.Observe(float64(cmds)) }})
	reg.MustRegister(n.cluster.BarrierMetrics()...)
	reg.MustRegister(n.cluster.PeerMetrics(), n.cluster.ClockMetrics())
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_cluster_fenced",
		Help: "1 while this node's external deliveries are stopped: it has not heard from a quorum within the fencing lease."},
		func() float64 {
			if n.cluster.Fenced() {
				return 1
			}
			return 0
		}))
	l := cfg.Limits
	tokenClock := cfg.TokenClock
	if tokenClock == nil {
		tokenClock = cfg.Clock
	}
	n.api = httpapi.New(httpapi.Options{
		State: n.cluster.State(), Hub: n.hub, Ops: n, Logger: logger, Registry: reg, Gatherer: reg,
		PublicURL: cfg.PublicURL, AppRate: l.AppRate, AppBurst: l.AppBurst, UserRate: l.UserRate, UserBurst: l.UserBurst,
		MaxNotificationsPerUser: l.MaxNotificationsPerUser, MaxSubscriptionsPerUser: l.MaxSubscriptionsPerUser,
		MaxStreamsPerUser: l.MaxStreamsPerUser, ChangeRetention: l.ChangeRetention, Heartbeat: cfg.StreamHeartbeat,
		AllowPrivateWebPush: cfg.WebPush.AllowPrivate, AllowPrivateWebhook: cfg.Webhook.AllowPrivate,
		MaxInFlight: l.MaxInFlight, BodyTimeout: l.BodyTimeout, BodyMinRate: int64(l.BodyMinRate),
		MetricsToken: cfg.MetricsToken, MetricsElsewhere: cfg.MetricsAddr != "", Profiling: cfg.Profiling,
		SignInLimits: func(ctx context.Context, addr, user string, failed bool) (time.Duration, bool, error) {
			return n.cluster.SignInLimits(ctx, cluster.SignInAttempt{Addr: addr, User: user, Failed: failed})
		},
		AuditClock: cfg.AuditClock, SignInClock: cfg.SignInClock, TokenClock: tokenClock,
		UI: ui.Handler(), ClusterPeer: n.cluster.PublicHandler(), VAPIDPublicKey: n.vapidPublicKey, ReportDelivery: func(o raft.DeliveryOutcome) {
			if e := engine.Load(); e != nil {
				e.Report(o)
			}
		},
	})
	api.Store(n.api)
	n.cluster.ServeSignInLimits(func(a cluster.SignInAttempt, now time.Time) time.Duration {
		return n.api.SignInCounters(a.Addr, a.User, a.Failed, now)
	})
	n.cluster.ShareRateLimits(cluster.RateLimits{
		Take: func(count bool) cluster.RateReport {
			apps, users := n.api.TakeAdmitted(count)
			return cluster.RateReport{Apps: apps, Users: users}
		},
		Charge: func(r cluster.RateReport, debt int) { n.api.ChargeAdmitted(r.Apps, r.Users, debt) },
	})
	// Of the inter-node routes only the lookup of a node's inter-node
	// address is public (the API serves it, ClusterPeer); the others are
	// served over the transport.
	mux := http.NewServeMux()
	mux.Handle("/", n.api)
	// A path that is not clean goes to the API whole, which answers it in
	// its error shape; the mux would redirect it in HTML.
	routes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != httpapi.CleanPath(r.URL.Path) {
			n.api.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	// No ReadTimeout or WriteTimeout: they would cut live streams, which
	// last for hours. Bodies have their own deadline (httpapi), and
	// streams their own write deadline.
	n.http = &http.Server{Handler: securityHeaders(routes), ReadHeaderTimeout: l.HeaderTimeout, IdleTimeout: l.IdleTimeout,
		MaxHeaderBytes: l.MaxHeaderBytes, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		TLSConfig: tlsConfig, ConnState: n.conns.hook}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		var err error
		if tlsConfig != nil {
			// ServeTLS adds HTTP/2 to the config; the certificates come
			// from its GetCertificate, not from files named here.
			err = n.http.ServeTLS(n.listener, "", "")
		} else {
			err = n.http.Serve(n.listener)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server stopped", "error", err)
		}
	}()
	if err := n.startMetricsListener(); err != nil {
		n.Close(context.Background())
		return nil, err
	}
	if err := n.startACME(); err != nil {
		n.Close(context.Background())
		return nil, err
	}

	n.cluster.Start()
	if err := n.waitMember(ctx); err != nil {
		n.Close(context.Background())
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// A node with Raft state that the cluster refused for good (it holds
	// another cluster's data) has no leader to wait for.
	go func() {
		select {
		case <-n.cluster.JoinFailed():
			cancel()
		case <-wctx.Done():
		}
	}()
	if err := n.store.WaitLeader(wctx); err != nil {
		n.Close(context.Background())
		if refused := n.cluster.JoinRefused(); refused != nil {
			return nil, fmt.Errorf("the cluster refused this node: %w", refused)
		}
		return nil, fmt.Errorf("no raft leader: %w", err)
	}
	if err := n.cluster.Announce(wctx); err != nil {
		// Housekeeping tries again; the node serves meanwhile.
		logger.Warn("could not record this node's addresses yet", "error", err)
	}
	// A leader fills in or repairs the slot table now, so that a fresh or
	// restored node shows (and its engine starts with) its slots at once
	// rather than after the first housekeeping tick. Housekeeping retries.
	if err := n.cluster.Rebalance(wctx); err != nil {
		logger.Warn("could not rebalance the slots yet", "error", err)
	}
	if err := n.bootstrapAdmin(ctx); errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrUnknownOutcome) {
		// Leadership moved while a new cluster was settling: the next
		// leader creates the admin (rebalanceAndRescan).
		logger.Warn("the first admin is left to the next leader", "error", err)
	} else if err != nil {
		n.Close(context.Background())
		return nil, err
	}
	if err := n.cluster.WaitCaughtUp(wctx); err != nil {
		n.Close(context.Background())
		return nil, fmt.Errorf("catching up with the leader: %w", err)
	}
	senders, err := n.senders()
	if err != nil {
		n.Close(context.Background())
		return nil, fmt.Errorf("delivery channels: %w", err)
	}
	d := cfg.Delivery
	n.engine = fanout.NewEngine(fanout.EngineOptions{Store: n.cluster.State(), Senders: senders,
		// Each user's deliveries run on the owner of the user's slot (the
		// leader, until there is a slot table).
		Owns:    n.cluster.Owns,
		Workers: d.Workers, PerHost: d.PerHost, Timeout: d.Timeout, MinBackoff: d.MinBackoff, MaxBackoff: d.MaxBackoff,
		Logger: logger, Registry: reg, WebhookDisableAfter: cfg.Webhook.DisableAfter})
	engine.Store(n.engine)
	// What the engine's start scan sees is the baseline; housekeeping
	// rescans when ownership differs from it.
	n.ownershipChanged()
	if err := n.engine.Start(); err != nil {
		n.Close(context.Background())
		return nil, fmt.Errorf("delivery engine: %w", err)
	}
	n.startLocalSocket()
	n.started.Store(true)
	n.wg.Add(1)
	go n.housekeeping()
	logger.Info("herald node serving", "node_id", id, "http", n.listener.Addr().String(), "https", n.TLS(),
		"metrics", n.metricsWhere(), "raft", cfg.RaftAddr, "data_dir", cfg.DataDir)
	if n.openProfiling() {
		// Documented, but easy to miss in one INFO line: a profile shows
		// the code's paths and a heap dump may hold tokens in flight.
		logger.Warn("--profiling serves /debug/pprof/ to anyone who can reach the metrics listener; "+
			"set --metrics-token or bind --metrics-addr to loopback", "metrics_addr", n.metricsListener.Addr().String())
	}
	return n, nil
}

// Addr is the address the HTTP API listens on.
func (n *Node) Addr() string { return n.listener.Addr().String() }

// Store is the node's replicated store.
func (n *Node) Store() *raft.Store { return n.store }

// Close shuts down in order: end live streams with a retry hint, stop
// accepting requests and finish those in flight, stop the delivery engine
// and the cluster machinery, then close Raft and Badger. Each stage gets
// what remains of ctx's deadline; once it has passed, Close returns a
// *ShutdownTimeoutError naming the stage that did not finish, while the
// stages go on in the background (Stopped tells when they are done).
// Closing again returns the first result.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		start := time.Now()
		var stage atomic.Value
		stage.Store("")
		result := make(chan error, 1)
		go func() {
			defer close(n.stoppedCh())
			result <- n.shutdown(ctx, func(name string) { stage.Store(name) })
		}()
		select {
		case n.closeErr = <-result:
		case <-ctx.Done():
			select {
			case n.closeErr = <-result: // finished as the deadline came
			default:
				cur := stage.Load().(string)
				n.closeErr = &ShutdownTimeoutError{After: time.Since(start), Stage: cur, Pending: stagesAfter(cur)}
			}
		}
	})
	return n.closeErr
}

// checkBootstrapExpect refuses a --bootstrap-expect that cannot form a
// cluster, saying what is missing.
func checkBootstrapExpect(cfg Config) error {
	switch {
	case cfg.BootstrapExpect < 0:
		return fmt.Errorf("--bootstrap-expect %d: give the number of nodes of the new cluster, or 0", cfg.BootstrapExpect)
	case cfg.BootstrapExpect <= 1:
		return nil
	case !slices.ContainsFunc(cfg.Join, func(a string) bool { return a != cfg.HTTPAddr }):
		return fmt.Errorf("--bootstrap-expect %d needs --join with the HTTP addresses (host:port) of the other nodes, "+
			"the same list on every node (it may include this node's own)", cfg.BootstrapExpect)
	case cfg.ClusterKey == "" && cfg.ClusterTLSCert == "" && cfg.InsecureCluster:
		return fmt.Errorf("--insecure-cluster is not supported: Raft traffic between nodes is always authenticated; " +
			"give every node the same --cluster-key (HERALD_CLUSTER_KEY; herald cluster key prints a new one), " +
			"or --cluster-tls-cert/--cluster-tls-key/--cluster-tls-ca")
	case cfg.ClusterKey == "" && cfg.ClusterTLSCert == "":
		return fmt.Errorf("--bootstrap-expect %d needs --cluster-key (HERALD_CLUSTER_KEY), the same on every node "+
			"(herald cluster key prints a new one), or --cluster-tls-cert/--cluster-tls-key/--cluster-tls-ca", cfg.BootstrapExpect)
	}
	return nil
}

// Stopped is closed once every stage of Close has finished, which may be
// after Close returned on its deadline.
func (n *Node) Stopped() <-chan struct{} { return n.stoppedCh() }

func (n *Node) stoppedCh() chan struct{} {
	n.stoppedOnce.Do(func() { n.stopped = make(chan struct{}) })
	return n.stopped
}

// The stages of a shutdown, in order; the last ones are the store's.
const (
	StageHTTP        = "http drain"
	StageStreams     = "live streams"
	StageEngine      = "delivery engine"
	StageLeadership  = "leadership hand-off"
	StageCluster     = "cluster"
	StageHousekeeper = "housekeeping"
	StageInterNode   = "inter-node transport close"
)

var shutdownStages = []string{StageHTTP, StageStreams, StageEngine, StageLeadership, StageCluster, StageHousekeeper,
	raft.StageProposals, raft.StageSnapshot, raft.StageRaft, raft.StageTransport, raft.StageLog, raft.StageBadger, StageInterNode}

func stagesAfter(stage string) []string {
	for i, s := range shutdownStages {
		if s == stage {
			return slices.Clone(shutdownStages[i+1:])
		}
	}
	return nil
}

// waitMember waits until this node belongs to a cluster. A node of a new
// cluster (--bootstrap-expect) waits as long as it takes, since an operator
// starts the nodes one after the other; a node that joins an existing one
// gives up after a minute.
func (n *Node) waitMember(ctx context.Context) error {
	if n.cfg.BootstrapExpect <= 1 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	return n.cluster.WaitMember(ctx)
}

// ErrShutdownTimeout is what a *ShutdownTimeoutError is.
var ErrShutdownTimeout = errors.New("shutdown did not finish in time")

// ShutdownTimeoutError says which stage of a shutdown was still running
// when its deadline passed, and which had not started.
type ShutdownTimeoutError struct {
	After   time.Duration
	Stage   string
	Pending []string
}

func (e *ShutdownTimeoutError) Error() string {
	msg := fmt.Sprintf("shutdown did not finish within %s: still waiting for %s", e.After.Round(time.Millisecond), e.Stage)
	if len(e.Pending) > 0 {
		msg += " (not run yet: " + strings.Join(e.Pending, ", ") + ")"
	}
	return msg
}

func (e *ShutdownTimeoutError) Is(target error) bool { return target == ErrShutdownTimeout }

// shutdown runs the stages in order. Only the HTTP drain and the store's
// snapshot can be cut short by ctx; the others cannot, which is why Close
// waits for this in a goroutine it can stop waiting for.
func (n *Node) shutdown(ctx context.Context, stage func(string)) error {
	close(n.stop)
	stage(StageHTTP)
	if n.cluster != nil {
		n.cluster.Drain()
	}
	n.api.Stop()
	var errs []error
	if err := n.drainHTTP(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http drain: %w", err))
	}
	for _, srv := range []*http.Server{n.metricsHTTP, n.acmeHTTP, n.localHTTP} {
		if srv != nil && srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}
	stage(StageStreams)
	n.hub.CloseAll()
	stage(StageEngine)
	if n.engine != nil {
		n.engine.Stop()
	}
	stage(StageLeadership)
	n.handOff(ctx)
	stage(StageCluster)
	if n.cluster != nil {
		n.cluster.Close()
	}
	stage(StageHousekeeper)
	n.wg.Wait()
	errs = append(errs, n.store.Shutdown(ctx, stage))
	if n.transport != nil {
		stage(StageInterNode)
		errs = append(errs, n.transport.Close())
	}
	return errors.Join(errs...)
}

// handOff passes a leader's leadership to another voter once its own
// requests are done and before it stops serving the others' forwarded
// writes, so a rolling restart costs the cluster a transfer (a few round
// trips) instead of a heartbeat timeout and an election. It is bounded by
// a quarter of what remains of ctx, leaving the rest to Raft and Badger;
// a hand-off that fails leaves the election to the others, as before.
func (n *Node) handOff(ctx context.Context) {
	if n.cluster == nil {
		return
	}
	hctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		hctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/4))
		defer cancel()
	}
	start := time.Now()
	to, handed, err := n.store.HandOff(hctx)
	switch {
	case err != nil:
		n.log.Warn("could not hand the leadership to another node before stopping; the others elect one after their heartbeat timeout",
			"err", err)
	case handed:
		if to == "" {
			to = "(not heard from yet)"
		}
		n.log.Info("handed the leadership to another node before stopping", "to", to,
			"took", time.Since(start).Round(time.Millisecond))
	}
}

// drainHTTP stops the public listener and waits for the requests in flight,
// closing at once the connections that never sent a request (conns.go)
// rather than waiting for them to be five seconds old, as
// http.Server.Shutdown would. It waits at most half of what remains of
// ctx, so that Raft and Badger still close cleanly: a handler that has not
// returned by then has its connection cut, and the log names every
// connection cut.
func (n *Node) drainHTTP(ctx context.Context) error {
	dctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		dctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
		defer cancel()
	}
	done := make(chan struct{})
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		// The listener closes as Shutdown begins, but a connection accepted
		// just before may reach StateNew after a first sweep: sweep until
		// the drain ends.
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		unused := 0
		for {
			unused += n.conns.closeUnused()
			select {
			case <-done:
				if unused > 0 {
					n.log.Debug("closed connections that had sent no request", "count", unused)
				}
				return
			case <-tick.C:
			}
		}
	}()
	err := n.http.Shutdown(dctx)
	close(done)
	<-swept
	if err == nil {
		return nil
	}
	if ctx.Err() == nil {
		// Our own bound passed, not the caller's deadline: cutting what is
		// left is the plan, not a failure.
		err = nil
	}
	cut := n.conns.open()
	n.http.Close()
	n.log.Warn("http drain: cut the connections still open at its bound", "bound", "half the shutdown timeout",
		"count", len(cut), "connections", cut)
	return err
}

// nodeID is the configured id, or the one this data directory was first
// started with, or a new one saved for next time.
func nodeID(cfg Config) (string, error) {
	path := filepath.Join(cfg.DataDir, "node-id")
	if cfg.NodeID != "" {
		return cfg.NodeID, nil
	}
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	id := "node-" + strings.ToLower(resource.NewSecret(6))
	if host, err := os.Hostname(); err == nil && host != "" {
		id = host
	}
	return id, writeSynced(path, []byte(id+"\n"))
}

// writeSynced puts data at path so that a power loss leaves either no file
// or the whole one: a file written in place could come back empty, and a
// node on a host without a name would then take a new id, one its cluster
// does not know.
func writeSynced(path string, data []byte) error {
	tmp := path + ".tmp"
	// Made anew, never opened through whatever has its name.
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if runtime.GOOS == "windows" {
		return nil // a directory there is not opened for a sync (Access is denied); NTFS journals the rename
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// bootstrapAdmin creates the user admin on a cluster without users.
func (n *Node) bootstrapAdmin(ctx context.Context) error {
	if !n.store.IsLeader() {
		return nil
	}
	page, err := n.store.ListUsers("", 1)
	if err != nil || len(page.Items) > 0 {
		return err
	}
	pw, generated := n.cfg.AdminPassword, false
	if pw == "" {
		pw, generated = resource.NewSecret(15), true
	}
	rec, err := httpapi.NewUserRecord("admin", "Administrator", pw, []string{resource.RoleAdmin}, true, time.Now())
	if err != nil {
		return fmt.Errorf("admin password: %w", err)
	}
	_, err = n.store.Propose(ctx, &raft.Command{Op: raft.OpBootstrapAdmin, Now: time.Now().UnixNano(), User: rec})
	var re *resource.Error
	if errors.As(err, &re) && re.Code == resource.CodeNameExists {
		return nil
	}
	if errors.Is(err, raft.ErrUnknownOutcome) && generated {
		// The entry may have committed, and then no later leader makes
		// another admin: this is the only chance to show its password.
		n.log.Warn("the first admin may have been created as leadership moved; if so, this is its password",
			"user", "admin", "password", pw)
	}
	if err != nil {
		return fmt.Errorf("create admin: %w", err)
	}
	if generated {
		n.log.Warn("created the first admin; its password is shown only this once", "user", "admin", "password", pw)
	} else {
		n.log.Info("created the first admin with HERALD_ADMIN_PASSWORD", "user", "admin")
	}
	return nil
}

// housekeeping runs the leader's periodic work: purging what expired.
func (n *Node) housekeeping() {
	defer n.wg.Done()
	tick := time.NewTicker(n.cfg.PurgeInterval)
	defer tick.Stop()
	// A follower learns of a new slot table only by applying it, which
	// nothing signals; looking often (a cached read and a compare) lets a
	// node that gained slots, say from a peer found down, pick up their
	// deliveries soon rather than at the next purge tick.
	owners := time.NewTicker(min(n.cfg.PurgeInterval, ownershipPoll))
	defer owners.Stop()
	full := time.NewTicker(fullLeaderCheck)
	defer full.Stop()
	var lastHandOff time.Time
	saidNoRoom := false // once a spell of being full, not every retry
	for {
		select {
		case <-n.stop:
			return
		case <-owners.C:
			n.rescanIfOwnershipChanged()
		case <-full.C:
			if !n.store.IsLeader() || !n.store.DiskSpace().Full {
				saidNoRoom = false
			} else if time.Since(lastHandOff) >= fullLeaderRetry {
				lastHandOff = time.Now()
				saidNoRoom = n.handOffFull(saidNoRoom)
			}
		case <-n.cluster.Changes():
			// A new leader (maybe this node) rebalances away from what
			// the old one left, or a peer went down past the grace period
			// or came back; every node picks up what it gained.
			n.rebalanceAndRescan()
		case <-tick.C:
			if n.store.IsLeader() {
				n.purge()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := n.cluster.Announce(ctx); err != nil {
				n.log.Warn("could not record this node's addresses", "error", err)
			}
			if err := n.cluster.Rebalance(ctx); err != nil {
				n.log.Warn("could not rebalance the slots", "error", err)
			}
			// The last member upgraded: its rules can apply now.
			if err := n.cluster.RaiseRules(ctx); err != nil {
				n.log.Warn("could not raise the rules level", "error", err)
			}
			cancel()
			n.rescanIfOwnershipChanged()
		}
	}
}

// A leader whose disk is full refuses every write that adds data, for
// the whole cluster; it looks this often whether it should hand off, and
// tries again no sooner than fullLeaderRetry, so that two nodes that both
// fill do not pass the leadership back and forth.
const (
	fullLeaderCheck = time.Second
	fullLeaderRetry = 10 * time.Second
)

// handOffFull answers whether it has said that no voter has room.
func (n *Node) handOffFull(saidNoRoom bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	to, err := n.cluster.HandOffFull(ctx)
	switch {
	case err != nil:
		n.log.Warn("the disk is full and this node leads: could not hand the leadership to a node with room", "err", err)
	case to != "":
		n.log.Warn("the disk is full: handed the leadership to a node with room, which takes the writes", "to", to)
	case !saidNoRoom && len(n.store.Raft().GetConfiguration().Configuration().Servers) > 1:
		n.log.Warn("the disk is full and this node leads: no other voter says it has room, so writes that add data get 507")
		return true
	}
	return saidNoRoom
}

// peerDownAfter is the grace period before a silent voter loses its slots:
// the configured one, or the default when unset (a Config not built from
// DefaultConfig), never zero, which would move slots on a single missed
// heartbeat.
func peerDownAfter(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultConfig().Raft.PeerDownAfter
	}
	return d
}

// rebalanceAndRescan has a leader bring the slot table in line with the
// reachable voters, then has this node pick up what it gained.
func (n *Node) rebalanceAndRescan() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.cluster.Rebalance(ctx); err != nil {
		n.log.Warn("could not rebalance the slots", "error", err)
	}
	if err := n.cluster.RaiseRules(ctx); err != nil {
		n.log.Warn("could not raise the rules level", "error", err)
	}
	// In a new cluster the first leader may lose its leadership before it
	// created the first admin; whoever leads next does it.
	if err := n.bootstrapAdmin(ctx); err != nil {
		n.log.Warn("could not create the first admin", "error", err)
	}
	n.rescanIfOwnershipChanged()
}

// ownershipPoll bounds how long a node takes to notice it gained or lost
// slots.
const ownershipPoll = 500 * time.Millisecond

const purgeBatch = 1000

func (n *Node) purge() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		// The cluster's clock, not this node's alone: a leader whose
		// clock runs ahead would purge early for everyone (cluster/clock.go).
		now, err := n.cluster.ClusterNow(ctx)
		if err != nil {
			n.log.Warn("purge postponed: the cluster's clock is not known", "error", err)
			return
		}
		v, err := n.store.Propose(ctx, &raft.Command{Op: raft.OpPurge, Now: now.UnixNano(),
			MaxItems: purgeBatch, Retention: int64(n.cfg.Limits.ChangeRetention),
			AuditRetention: int64(max(n.cfg.AuditRetention, 0))})
		if err != nil {
			n.log.Warn("purge failed", "error", err)
			return
		}
		res := v.(raft.PurgeResult)
		if res != (raft.PurgeResult{}) {
			n.log.Debug("purged", "notifications", res.Notifications, "changes", res.Changes,
				"tokens", res.Tokens, "subscriptions", res.Subscriptions, "sessions", res.Sessions, "audit", res.Audit)
		}
		if max(res.Notifications, res.Changes, res.Tokens, res.Subscriptions, res.Sessions, res.Audit) < purgeBatch {
			return
		}
	}
}
