package node

import (
	"context"
	"net"
	"time"
)

// Config is everything a node needs to run. Defaults live in DefaultConfig and
// nowhere else; the command line overlays a YAML file, then environment
// variables, then flags (see main.go).
type Config struct {
	DataDir         string   `yaml:"data-dir"`
	HTTPAddr        string   `yaml:"http-addr"`
	NodeID          string   `yaml:"node-id"`
	RaftAddr        string   `yaml:"raft-addr"`
	RaftBindAddr    string   `yaml:"raft-bind-addr"`
	Join            []string `yaml:"join"`
	BootstrapExpect int      `yaml:"bootstrap-expect"`
	ClusterKey      string   `yaml:"cluster-key"`
	// ClusterTLSCert, ClusterTLSKey and ClusterTLSCA are the operator's
	// certificates for inter-node TLS (PEM files): each node presents its
	// certificate and trusts the nodes whose certificates chain to the CA.
	// Without them the nodes use throwaway certificates and prove the
	// cluster key bound to each TLS session (cluster/DESIGN.md).
	ClusterTLSCert string `yaml:"cluster-tls-cert"`
	ClusterTLSKey  string `yaml:"cluster-tls-key"`
	ClusterTLSCA   string `yaml:"cluster-tls-ca"`
	// TLSCert and TLSKey are PEM files of the public listener's
	// certificate (its chain) and key: the API and the UI are then served
	// over HTTPS only, and SIGHUP reloads the pair. ACMEDomain instead has
	// the node obtain and renew certificates from an ACME CA for those
	// host names, keeping them under the data directory.
	TLSCert    string   `yaml:"tls-cert"`
	TLSKey     string   `yaml:"tls-key"`
	ACMEDomain []string `yaml:"acme-domain"`
	// ACMEEmail is the contact the CA may write to about expiring
	// certificates or problems with the account.
	ACMEEmail string `yaml:"acme-email"`
	// ACMEDirectory is the CA's directory URL; empty: Let's Encrypt.
	ACMEDirectory string `yaml:"acme-directory"`
	// ACMEHTTPAddr is where HTTP-01 challenges are answered (the CA comes
	// to port 80), and other plain requests are sent on to HTTPS. Empty:
	// no such listener, leaving TLS-ALPN-01, which needs the public
	// listener on port 443.
	ACMEHTTPAddr string `yaml:"acme-http-addr"`
	// MetricsAddr, when set, serves /metrics to scrapers on a plain-HTTP
	// listener of its own, open to whoever reaches it unless MetricsToken
	// is set. On the public listener /metrics needs an admin's access
	// token, or MetricsToken as a bearer token when there is no
	// MetricsAddr.
	MetricsAddr  string `yaml:"metrics-addr"`
	MetricsToken string `yaml:"metrics-token"`
	// Profiling serves Go's runtime profiles (CPU, heap, goroutines,
	// blocking, lock contention, an execution trace) at /debug/pprof/ on
	// the MetricsAddr listener, to the same callers as its /metrics.
	Profiling bool `yaml:"profiling"`
	// InsecureCluster is accepted but allows nothing yet: several nodes
	// need ClusterKey or the cluster certificates (cluster/DESIGN.md).
	InsecureCluster bool          `yaml:"insecure-cluster"`
	AdminPassword   string        `yaml:"admin-password"`
	LogLevel        string        `yaml:"log-level"`
	LogFormat       string        `yaml:"log-format"` // text or json
	PublicURL       string        `yaml:"public-url"` // used in nextLink/deltaLink when set
	ShutdownTimeout time.Duration `yaml:"shutdown-timeout"`
	// StreamHeartbeat is the interval of keep-alive comments on live streams.
	StreamHeartbeat time.Duration `yaml:"stream-heartbeat"`
	// PurgeInterval is how often the leader purges expired notifications.
	PurgeInterval time.Duration `yaml:"purge-interval"`
	// DiskReserve is the free space on the data directory's disk below
	// which writes that add data get 507: a size ("512MiB"), a share
	// ("2%"), or both, the larger counting ("256MiB,2%"). See
	// raft.ParseDiskReserve.
	DiskReserve string `yaml:"disk-reserve"`
	// Memory is the storage engine's budget for memtables and caches
	// ("64MiB"); see raft.ParseMemory. The process needs about 30 MiB more.
	Memory string `yaml:"memory"`
	// AuditRetention is how long the audit log keeps a record; the
	// leader's purge deletes older ones. Zero or less keeps them all.
	AuditRetention time.Duration `yaml:"audit-retention"`

	Limits   Limits        `yaml:"limits"`
	Delivery Delivery      `yaml:"delivery"`
	FCM      FCMConfig     `yaml:"fcm"`
	APNs     APNsConfig    `yaml:"apns"`
	Raft     RaftTuning    `yaml:"raft"`
	WebPush  ChannelConfig `yaml:"webPush"`
	Webhook  ChannelConfig `yaml:"webhook"`

	// Dial, when set, replaces the TCP dial of every connection to another
	// node (Raft and internal requests): tests route links through a
	// fault-injecting proxy with it. Not configurable from outside.
	Dial func(ctx context.Context, addr string) (net.Conn, error) `yaml:"-"`
	// AuditClock, when set, replaces the clock that dates audit records
	// and session activity: tests of the retention date records in the
	// past with it rather than wait. Not configurable from outside.
	AuditClock func() time.Time `yaml:"-"`
	// SignInClock, when set, replaces the sign-in throttle's clock: tests
	// stop it, so that how fast a loaded machine hashes does not refill
	// the buckets they mean to empty. Not configurable from outside.
	SignInClock func() time.Time `yaml:"-"`
	// TokenClock, when set, replaces the clock tokens are issued and
	// refresh tokens judged by: tests move a refresh past its grace
	// (raft.RefreshReuseGrace) with it. Not configurable from outside.
	TokenClock func() time.Time `yaml:"-"`
	// Clock, when set, replaces the node's wall clock where it is read
	// against the other nodes' and where the leader dates its purge, and
	// is the token clock unless TokenClock is set: tests set one node's
	// clock off with it. Not configurable from outside.
	Clock func() time.Time `yaml:"-"`
	// RulesLevel, when set, is the rules level the node says its binary
	// knows (raft/rules.go): tests stand in an older binary with it. Not
	// configurable from outside.
	RulesLevel func() int `yaml:"-"`
}

// Limits are the rate limits and quotas of API.md §1 and §5.
type Limits struct {
	// AppRate is the sustained requests per second of one application; AppBurst
	// the bucket size. Zero rate disables the limit.
	AppRate  float64 `yaml:"app-rate"`
	AppBurst int     `yaml:"app-burst"`
	// UserRate and UserBurst are the same for one user's requests.
	UserRate  float64 `yaml:"user-rate"`
	UserBurst int     `yaml:"user-burst"`
	// MaxNotificationsPerUser caps a user's active notifications (507 beyond).
	MaxNotificationsPerUser int `yaml:"max-notifications-per-user"`
	// MaxSubscriptionsPerUser caps a user's subscriptions (507 beyond).
	MaxSubscriptionsPerUser int `yaml:"max-subscriptions-per-user"`
	// ChangeRetention is how long the per-user change log (delta and stream
	// cursors) is kept; older cursors get 410.
	ChangeRetention time.Duration `yaml:"change-retention"`
	// MaxStreamsPerUser caps concurrent live streams of one user.
	MaxStreamsPerUser int `yaml:"max-streams-per-user"`

	// MaxConns bounds the public listener's open connections, well under
	// the process's file limit so that Badger, Raft and deliveries always
	// find a file; MaxConnsPerIP bounds one client address (an IPv6 /64).
	// Connections beyond either are closed at once. Zero: no bound.
	MaxConns      int `yaml:"max-conns"`
	MaxConnsPerIP int `yaml:"max-conns-per-ip"`
	// MaxInFlight bounds the requests a node works on at once (live
	// streams and /healthz aside); beyond it, 503 with Retry-After. The
	// bound in force is lower while replicated writes are slow.
	MaxInFlight int `yaml:"max-in-flight"`
	// MaxHeaderBytes bounds a request's header block; beyond it, 431.
	MaxHeaderBytes int `yaml:"max-header-bytes"`
	// HeaderTimeout is how long a client may take to send its headers.
	HeaderTimeout time.Duration `yaml:"header-timeout"`
	// BodyTimeout is how long a request body may take to start arriving;
	// each BodyMinRate bytes received add a second. Slower bodies are cut
	// off. There is no whole-request timeout: live streams last for hours.
	BodyTimeout time.Duration `yaml:"body-timeout"`
	BodyMinRate int           `yaml:"body-min-rate"`
	// IdleTimeout closes a keep-alive connection that sends no request.
	IdleTimeout time.Duration `yaml:"idle-timeout"`
}

// RaftTuning holds the Raft timers; tests shorten them.
type RaftTuning struct {
	HeartbeatTimeout  time.Duration `yaml:"heartbeat-timeout"`
	ElectionTimeout   time.Duration `yaml:"election-timeout"`
	SnapshotInterval  time.Duration `yaml:"snapshot-interval"`
	SnapshotThreshold uint64        `yaml:"snapshot-threshold"`
	// PeerDownAfter is how long the leader's heartbeats to a voter must
	// keep failing before its slots move to the other voters (they come
	// back when it answers again). Long enough that a blip or a restart
	// moves nothing; zero or less means the default.
	PeerDownAfter time.Duration `yaml:"peer-down-after"`
}

// ChannelConfig is the outbound policy of one delivery channel.
type ChannelConfig struct {
	AllowPrivate bool `yaml:"allowPrivate"`
	// DisableAfter disables a webhook subscription whose deliveries have
	// kept failing this long (webhooks only).
	DisableAfter time.Duration `yaml:"disableAfter,omitempty"`
	// Subject is the VAPID contact of Web Push, a mailto: or https: URL
	// that push services may use to reach the operator (webPush only).
	Subject string `yaml:"subject,omitempty"`
}

// Delivery tunes the engine that sends to webPush, webhook, FCM and APNs.
type Delivery struct {
	Workers int `yaml:"workers"`  // concurrent attempts
	PerHost int `yaml:"per-host"` // concurrent attempts per destination host
	// Timeout bounds one attempt.
	Timeout time.Duration `yaml:"timeout"`
	// MinBackoff and MaxBackoff bound the retry delay, which doubles per
	// attempt (with jitter) until the notification expires.
	MinBackoff time.Duration `yaml:"min-backoff"`
	MaxBackoff time.Duration `yaml:"max-backoff"`
}

// FCMConfig enables delivery to Android (and other FCM) devices.
type FCMConfig struct {
	// CredentialsFile is a Google service-account key (JSON) of the
	// Firebase project. Empty: FCM deliveries wait until it is configured.
	CredentialsFile string `yaml:"credentialsFile"`
	// Endpoint and TokenURL override Google's, for tests and proxies.
	Endpoint string `yaml:"endpoint"`
	TokenURL string `yaml:"tokenURL"`
}

// APNsConfig enables delivery to Apple devices with token (.p8) auth.
type APNsConfig struct {
	KeyFile string `yaml:"keyFile"` // the .p8 key; empty: APNs deliveries wait
	KeyID   string `yaml:"keyID"`
	TeamID  string `yaml:"teamID"`
	// URL overrides both Apple hosts (production and sandbox), for tests.
	URL string `yaml:"url"`
	// CAFile holds PEM certificates trusted for the APNs hosts instead of
	// the system's roots: for a TLS-inspecting proxy, or a test stand-in.
	CAFile string `yaml:"caFile"`
}

// DefaultConfig returns a config that runs a one-node cluster with no file.
func DefaultConfig() Config {
	return Config{
		DataDir:         "./herald-data",
		HTTPAddr:        ":8750",
		RaftAddr:        "127.0.0.1:8751",
		ACMEHTTPAddr:    ":80",
		LogLevel:        "info",
		LogFormat:       "text",
		ShutdownTimeout: 15 * time.Second,
		StreamHeartbeat: 25 * time.Second,
		PurgeInterval:   30 * time.Second,
		DiskReserve:     "256MiB,2%",
		Memory:          "64MiB",
		AuditRetention:  90 * 24 * time.Hour,
		Limits: Limits{
			AppRate:                 200,
			AppBurst:                400,
			UserRate:                50,
			UserBurst:               100,
			MaxNotificationsPerUser: 10000,
			MaxSubscriptionsPerUser: 100,
			ChangeRetention:         7 * 24 * time.Hour,
			MaxStreamsPerUser:       20,
			// 16384 stays well under a 20,000-file limit, leaving room
			// for Badger, Raft and deliveries; the shipped systemd unit
			// allows 65536 files.
			MaxConns:      16384,
			MaxConnsPerIP: 256,
			MaxInFlight:   1024,
			// 32 KiB takes a long Authorization header and the UI's
			// session cookie many times over.
			MaxHeaderBytes: 32 << 10,
			HeaderTimeout:  10 * time.Second,
			BodyTimeout:    10 * time.Second,
			BodyMinRate:    1024,
			IdleTimeout:    2 * time.Minute,
		},
		Webhook: ChannelConfig{DisableAfter: 72 * time.Hour},
		Delivery: Delivery{Workers: 32, PerHost: 8, Timeout: 15 * time.Second,
			MinBackoff: time.Second, MaxBackoff: time.Hour},
		WebPush: ChannelConfig{Subject: "mailto:admin@herald.invalid"},
		Raft: RaftTuning{
			// 500 ms: a follower notices a dead or paused leader within
			// 0.5–1 s, so writes stall for well under 2 s (BENCHMARKS.md),
			// while a loaded LAN node still answers heartbeats in time.
			HeartbeatTimeout:  500 * time.Millisecond,
			ElectionTimeout:   500 * time.Millisecond,
			SnapshotInterval:  10 * time.Second,
			SnapshotThreshold: 8192,
			PeerDownAfter:     10 * time.Second,
		},
	}
}
