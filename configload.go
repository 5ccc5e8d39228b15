package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/herald-notify/herald/node"
	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// configFlag ties one serve flag (and so its HERALD_ variable) to the Config
// field it overrides. The YAML key of the same setting is the field's yaml
// tag, so one table serves all three sources.
type configFlag struct {
	flag  cli.Flag
	apply func(c *cli.Context, cfg *node.Config)
}

// envName is the environment variable of a serve flag, per API.md §9.
func envName(flag string) string {
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindFlag makes the flag for the Config field that field points at. The
// flag's default is read from node.DefaultConfig so that help shows the real
// default, and defaults stay in one place.
func bindFlag[T any](category, name, usage string, field func(*node.Config) *T) configFlag {
	def := node.DefaultConfig()
	env := []string{envName(name)}
	var (
		f   cli.Flag
		get func(*cli.Context) any
	)
	switch d := any(*field(&def)).(type) {
	case string:
		f = &cli.StringFlag{Category: category, Name: name, Usage: usage, EnvVars: env, Value: d}
		get = func(c *cli.Context) any { return c.String(name) }
	case []string:
		f = &cli.StringSliceFlag{Category: category, Name: name, Usage: usage, EnvVars: env, Value: cli.NewStringSlice(d...)}
		get = func(c *cli.Context) any { return cleanList(c.StringSlice(name)) }
	case int:
		f = &cli.IntFlag{Category: category, Name: name, Usage: usage, EnvVars: env, Value: d}
		get = func(c *cli.Context) any { return c.Int(name) }
	case uint64:
		f = &cli.Uint64Flag{Category: category, Name: name, Usage: usage, EnvVars: env, Value: d}
		get = func(c *cli.Context) any { return c.Uint64(name) }
	case float64:
		f = &cli.Float64Flag{Category: category, Name: name, Usage: usage, EnvVars: env, Value: d}
		get = func(c *cli.Context) any { return c.Float64(name) }
	case bool:
		f = &cli.BoolFlag{Category: category, Name: name, Usage: usage, EnvVars: env, Value: d}
		get = func(c *cli.Context) any { return c.Bool(name) }
	case time.Duration:
		f = &cli.DurationFlag{Category: category, Name: name, Usage: usage, EnvVars: env, Value: d}
		get = func(c *cli.Context) any { return c.Duration(name) }
	default:
		panic(fmt.Sprintf("bindFlag %s: no flag type for %T", name, d))
	}
	return configFlag{flag: f, apply: func(c *cli.Context, cfg *node.Config) { *field(cfg) = get(c).(T) }}
}

// serveConfigFlags returns the serve flags that map onto node.Config. It
// builds new flags on every call because urfave/cli records in a flag
// whether it was set, so flags must not be shared between runs.
func serveConfigFlags() []configFlag {
	const (
		catNode     = "Node"
		catCluster  = "Cluster"
		catLog      = "Logging"
		catDelivery = "Delivery"
		catLimits   = "Limits"
		catRaft     = "Raft tuning"
	)
	return []configFlag{
		bindFlag(catNode, "data-dir", "`DIR` that holds the node's state", func(c *node.Config) *string { return &c.DataDir }),
		bindFlag(catNode, "http-addr", "`ADDR` the REST API listens on", func(c *node.Config) *string { return &c.HTTPAddr }),
		bindFlag(catNode, "public-url", "`URL` that clients reach this server by, used in nextLink and deltaLink", func(c *node.Config) *string { return &c.PublicURL }),
		bindFlag(catNode, "admin-password", "password of the admin user created on first start (random and logged once if empty)", func(c *node.Config) *string { return &c.AdminPassword }),
		bindFlag(catNode, "shutdown-timeout", "how long a graceful shutdown may take", func(c *node.Config) *time.Duration { return &c.ShutdownTimeout }),
		bindFlag(catNode, "stream-heartbeat", "interval of keep-alive comments on live streams", func(c *node.Config) *time.Duration { return &c.StreamHeartbeat }),
		bindFlag(catNode, "disk-reserve", "free space `SIZE` (512MiB, 2%, or 256MiB,2% for the larger) below which the data directory's disk counts as full and writes get 507", func(c *node.Config) *string { return &c.DiskReserve }),
		bindFlag(catNode, "audit-retention", "how long the audit log keeps a record (0 keeps every record)", func(c *node.Config) *time.Duration { return &c.AuditRetention }),
		bindFlag(catNode, "purge-interval", "how often the leader purges expired notifications", func(c *node.Config) *time.Duration { return &c.PurgeInterval }),

		bindFlag(catCluster, "node-id", "this node's `ID` in the cluster (default: chosen by the node)", func(c *node.Config) *string { return &c.NodeID }),
		bindFlag(catCluster, "raft-addr", "`ADDR` for Raft traffic between nodes", func(c *node.Config) *string { return &c.RaftAddr }),
		bindFlag(catCluster, "join", "other nodes' HTTP addresses `ADDR,...` (host:port)", func(c *node.Config) *[]string { return &c.Join }),
		bindFlag(catCluster, "bootstrap-expect", "form a new cluster once `N` nodes of --join (this one included) answer; a node with data ignores it", func(c *node.Config) *int { return &c.BootstrapExpect }),
		bindFlag(catCluster, "cluster-key", "shared secret `KEY` that authenticates the nodes of one cluster (32 characters or more; \"herald cluster key\" makes one)", func(c *node.Config) *string { return &c.ClusterKey }),
		bindFlag(catCluster, "cluster-tls-cert", "PEM `FILE` of this node's certificate for traffic between nodes (with --cluster-tls-key and --cluster-tls-ca)", func(c *node.Config) *string { return &c.ClusterTLSCert }),
		bindFlag(catCluster, "cluster-tls-key", "PEM `FILE` of the private key of --cluster-tls-cert", func(c *node.Config) *string { return &c.ClusterTLSKey }),
		bindFlag(catCluster, "cluster-tls-ca", "PEM `FILE` of the CA that signs every node's --cluster-tls-cert", func(c *node.Config) *string { return &c.ClusterTLSCA }),
		bindFlag(catCluster, "insecure-cluster", "no effect for now: several nodes need --cluster-key or --cluster-tls-*", func(c *node.Config) *bool { return &c.InsecureCluster }),

		bindFlag(catLog, "log-level", "debug, info, warn or error", func(c *node.Config) *string { return &c.LogLevel }),
		bindFlag(catLog, "log-format", "text or json", func(c *node.Config) *string { return &c.LogFormat }),

		bindFlag(catDelivery, "webpush-allow-private", "allow webPush endpoints on private addresses and over http://", func(c *node.Config) *bool { return &c.WebPush.AllowPrivate }),
		bindFlag(catDelivery, "webpush-subject", "VAPID contact of Web Push, a mailto: or https: URL", func(c *node.Config) *string { return &c.WebPush.Subject }),
		bindFlag(catDelivery, "webhook-disable-after", "disable a webhook subscription whose deliveries kept failing this long", func(c *node.Config) *time.Duration { return &c.Webhook.DisableAfter }),
		bindFlag(catDelivery, "delivery-workers", "concurrent delivery attempts", func(c *node.Config) *int { return &c.Delivery.Workers }),
		bindFlag(catDelivery, "delivery-per-host", "concurrent delivery attempts per destination host", func(c *node.Config) *int { return &c.Delivery.PerHost }),
		bindFlag(catDelivery, "delivery-timeout", "time limit of one delivery attempt", func(c *node.Config) *time.Duration { return &c.Delivery.Timeout }),
		bindFlag(catDelivery, "delivery-min-backoff", "first retry delay; it doubles per attempt", func(c *node.Config) *time.Duration { return &c.Delivery.MinBackoff }),
		bindFlag(catDelivery, "delivery-max-backoff", "longest retry delay", func(c *node.Config) *time.Duration { return &c.Delivery.MaxBackoff }),
		bindFlag(catDelivery, "fcm-credentials-file", "Google service-account key `FILE` (JSON) for FCM", func(c *node.Config) *string { return &c.FCM.CredentialsFile }),
		bindFlag(catDelivery, "fcm-endpoint", "FCM API base `URL` (default Google's)", func(c *node.Config) *string { return &c.FCM.Endpoint }),
		bindFlag(catDelivery, "fcm-token-url", "OAuth2 token `URL` for FCM (default the key's token_uri)", func(c *node.Config) *string { return &c.FCM.TokenURL }),
		bindFlag(catDelivery, "apns-key-file", "APNs token-auth key `FILE` (.p8)", func(c *node.Config) *string { return &c.APNs.KeyFile }),
		bindFlag(catDelivery, "apns-key-id", "APNs key `ID`", func(c *node.Config) *string { return &c.APNs.KeyID }),
		bindFlag(catDelivery, "apns-team-id", "Apple developer team `ID`", func(c *node.Config) *string { return &c.APNs.TeamID }),
		bindFlag(catDelivery, "apns-url", "APNs base `URL` for both environments (default Apple's)", func(c *node.Config) *string { return &c.APNs.URL }),
		bindFlag(catDelivery, "apns-ca-file", "PEM `FILE` of certificates trusted for the APNs hosts instead of the system's", func(c *node.Config) *string { return &c.APNs.CAFile }),
		bindFlag(catDelivery, "webhook-allow-private", "allow webhook URLs on private addresses and over http://", func(c *node.Config) *bool { return &c.Webhook.AllowPrivate }),

		bindFlag(catLimits, "app-rate", "requests per second of one application (0: no limit)", func(c *node.Config) *float64 { return &c.Limits.AppRate }),
		bindFlag(catLimits, "app-burst", "burst size of one application", func(c *node.Config) *int { return &c.Limits.AppBurst }),
		bindFlag(catLimits, "user-rate", "requests per second of one user (0: no limit)", func(c *node.Config) *float64 { return &c.Limits.UserRate }),
		bindFlag(catLimits, "user-burst", "burst size of one user", func(c *node.Config) *int { return &c.Limits.UserBurst }),
		bindFlag(catLimits, "max-notifications-per-user", "active notifications one user may have", func(c *node.Config) *int { return &c.Limits.MaxNotificationsPerUser }),
		bindFlag(catLimits, "max-subscriptions-per-user", "subscriptions one user may have", func(c *node.Config) *int { return &c.Limits.MaxSubscriptionsPerUser }),
		bindFlag(catLimits, "max-streams-per-user", "concurrent live streams of one user", func(c *node.Config) *int { return &c.Limits.MaxStreamsPerUser }),
		bindFlag(catLimits, "max-conns", "open connections of the public listener (0: no limit)", func(c *node.Config) *int { return &c.Limits.MaxConns }),
		bindFlag(catLimits, "max-conns-per-ip", "open connections of one client address, an IPv6 /64 (0: no limit)", func(c *node.Config) *int { return &c.Limits.MaxConnsPerIP }),
		bindFlag(catLimits, "max-in-flight", "requests a node works on at once, live streams aside; 503 beyond (0: no limit)", func(c *node.Config) *int { return &c.Limits.MaxInFlight }),
		bindFlag(catLimits, "max-header-bytes", "largest request header block in bytes; 431 beyond", func(c *node.Config) *int { return &c.Limits.MaxHeaderBytes }),
		bindFlag(catLimits, "header-timeout", "time a client may take to send its request headers", func(c *node.Config) *time.Duration { return &c.Limits.HeaderTimeout }),
		bindFlag(catLimits, "body-timeout", "time a request body may take to start arriving; --body-min-rate bytes add a second each (0: no limit)", func(c *node.Config) *time.Duration { return &c.Limits.BodyTimeout }),
		bindFlag(catLimits, "body-min-rate", "bytes per second a request body must keep up after --body-timeout", func(c *node.Config) *int { return &c.Limits.BodyMinRate }),
		bindFlag(catLimits, "idle-timeout", "how long a keep-alive connection may wait for its next request", func(c *node.Config) *time.Duration { return &c.Limits.IdleTimeout }),
		bindFlag(catLimits, "change-retention", "how long delta and stream cursors stay valid", func(c *node.Config) *time.Duration { return &c.Limits.ChangeRetention }),

		bindFlag(catRaft, "raft-heartbeat-timeout", "Raft heartbeat timeout", func(c *node.Config) *time.Duration { return &c.Raft.HeartbeatTimeout }),
		bindFlag(catRaft, "raft-election-timeout", "Raft election timeout", func(c *node.Config) *time.Duration { return &c.Raft.ElectionTimeout }),
		bindFlag(catRaft, "raft-snapshot-interval", "how often Raft checks whether to snapshot", func(c *node.Config) *time.Duration { return &c.Raft.SnapshotInterval }),
		bindFlag(catRaft, "raft-snapshot-threshold", "log entries between snapshots", func(c *node.Config) *uint64 { return &c.Raft.SnapshotThreshold }),
		bindFlag(catRaft, "raft-peer-down-after", "how long a voter must miss the leader's heartbeats before its slots move to the others", func(c *node.Config) *time.Duration { return &c.Raft.PeerDownAfter }),
	}
}

// configFileFlag names the YAML file; it is not itself a Config field.
func configFileFlag() cli.Flag {
	return &cli.StringFlag{
		Category:  "Node",
		Name:      "config",
		Usage:     "YAML config `FILE`; flags and HERALD_ variables override it",
		EnvVars:   []string{envName("config")},
		TakesFile: true,
	}
}

// loadConfig builds the node config from, lowest precedence first,
// node.DefaultConfig, the YAML file, the environment and the flags. c.IsSet
// is true for a flag given on the command line or through its variable, and
// urfave/cli already lets the command line beat the variable.
func loadConfig(c *cli.Context, flags []configFlag) (node.Config, error) {
	cfg := node.DefaultConfig()
	if path := c.String("config"); path != "" {
		if err := readConfigFile(path, &cfg); err != nil {
			return cfg, err
		}
	}
	for _, f := range flags {
		if c.IsSet(f.flag.Names()[0]) {
			f.apply(c, &cfg)
		}
	}
	cfg.Join = cleanList(cfg.Join)
	if _, err := parseLogLevel(cfg.LogLevel); err != nil {
		return cfg, err
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return cfg, fmt.Errorf("log-format %q: want text or json", cfg.LogFormat)
	}
	return cfg, nil
}

// readConfigFile overlays the YAML file at path on cfg. Unknown keys are an
// error: a misspelt key silently ignored would leave a limit or a security
// setting at its default without anyone noticing.
func readConfigFile(path string, cfg *node.Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file changes nothing
		}
		return fmt.Errorf("config file %s: %s", path, describeYAMLError(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: want one YAML document", path)
	}
	return nil
}

// describeYAMLError rewords the decoder's messages, which name Go types
// ("field foo not found in type node.Limits"), for someone editing the file.
func describeYAMLError(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		if j := strings.Index(m, ": field "); j >= 0 {
			if k := strings.Index(m, " not found in type "); k > j {
				m = fmt.Sprintf("%s: unknown key %q", m[:j], m[j+len(": field "):k])
			}
		}
		msgs[i] = m
	}
	return strings.Join(msgs, "; ")
}

// cleanList drops the empty entries that "a,,b", a trailing comma or an empty
// HERALD_JOIN leave behind.
func cleanList(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger builds the logger the config asks for, writing to w.
func newLogger(cfg node.Config, w io.Writer) (*slog.Logger, error) {
	level, err := parseLogLevel(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
