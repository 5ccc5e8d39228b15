package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"reflect"
	"strconv"
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
	// field points at the setting in cfg; decode sets it from a YAML value.
	field  func(cfg *node.Config) any
	decode func(n *yaml.Node, cfg *node.Config) error
}

func (f configFlag) name() string { return f.flag.Names()[0] }

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
	return configFlag{flag: f,
		apply: func(c *cli.Context, cfg *node.Config) { *field(cfg) = get(c).(T) },
		field: func(cfg *node.Config) any { return field(cfg) },
		decode: func(n *yaml.Node, cfg *node.Config) error {
			var v T
			if list, ok := any(&v).(*[]string); ok && n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
				// "join: a:8750,b:8750", as the flag and HERALD_JOIN take
				// it, rather than a refusal in Go's words ("into []string").
				*list = strings.Split(n.Value, ",")
				*field(cfg) = v
				return nil
			}
			switch any(v).(type) {
			case int, uint64:
				// The decoder truncates "max-conns: 2.9" to 2, silently.
				if f, err := strconv.ParseFloat(n.Value, 64); n.Tag == "!!float" && (err != nil || f != math.Trunc(f)) {
					return fmt.Errorf("line %d: %s is not a whole number", n.Line, n.Value)
				}
			}
			if err := n.Decode(&v); err != nil {
				return err
			}
			*field(cfg) = v
			return nil
		},
	}
}

// serveConfigFlags returns the serve flags that map onto node.Config. It
// builds new flags on every call because urfave/cli records in a flag
// whether it was set, so flags must not be shared between runs.
func serveConfigFlags() []configFlag {
	const (
		catNode     = "Node"
		catHTTPS    = "HTTPS"
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
		bindFlag(catNode, "memory", "`SIZE` of the storage engine's memtables and caches (at least 16MiB); serve sets Go's memory limit to twice it plus 24MiB unless GOMEMLIMIT is set", func(c *node.Config) *string { return &c.Memory }),
		bindFlag(catNode, "audit-retention", "how long the audit log keeps a record (0 keeps every record)", func(c *node.Config) *time.Duration { return &c.AuditRetention }),
		bindFlag(catNode, "purge-interval", "how often the leader purges expired notifications", func(c *node.Config) *time.Duration { return &c.PurgeInterval }),

		bindFlag(catHTTPS, "tls-cert", "PEM `FILE` of the certificate (chain) for HTTPS on --http-addr, with --tls-key; SIGHUP reloads both", func(c *node.Config) *string { return &c.TLSCert }),
		bindFlag(catHTTPS, "tls-key", "PEM `FILE` of the private key of --tls-cert", func(c *node.Config) *string { return &c.TLSKey }),
		bindFlag(catHTTPS, "acme-domain", "host `NAME,...` to obtain HTTPS certificates for from an ACME CA (Let's Encrypt), instead of --tls-cert", func(c *node.Config) *[]string { return &c.ACMEDomain }),
		bindFlag(catHTTPS, "acme-email", "contact `ADDRESS` given to the ACME CA", func(c *node.Config) *string { return &c.ACMEEmail }),
		bindFlag(catHTTPS, "acme-directory", "ACME directory `URL` (default Let's Encrypt's)", func(c *node.Config) *string { return &c.ACMEDirectory }),
		bindFlag(catHTTPS, "acme-http-addr", "`ADDR` that answers ACME HTTP-01 challenges and redirects other plain requests to HTTPS (empty: none; TLS-ALPN-01 then needs --http-addr on port 443)", func(c *node.Config) *string { return &c.ACMEHTTPAddr }),
		bindFlag(catNode, "metrics-addr", "`ADDR` of a separate plain-HTTP listener for /metrics, for scrapers (the public /metrics then takes admins only)", func(c *node.Config) *string { return &c.MetricsAddr }),
		bindFlag(catNode, "profiling", "serve Go's runtime profiles (CPU, heap, goroutines, blocking, locks, execution trace) at /debug/pprof/ on --metrics-addr, to the callers of its /metrics", func(c *node.Config) *bool { return &c.Profiling }),
		bindFlag(catNode, "metrics-token", "bearer `TOKEN` (16 characters or more) a scraper sends for /metrics; without it the public /metrics takes an admin's token only", func(c *node.Config) *string { return &c.MetricsToken }),

		bindFlag(catCluster, "node-id", "this node's `ID` in the cluster (default: chosen by the node)", func(c *node.Config) *string { return &c.NodeID }),
		bindFlag(catCluster, "raft-addr", "`ADDR` for Raft traffic between nodes", func(c *node.Config) *string { return &c.RaftAddr }),
		bindFlag(catCluster, "raft-bind-addr", "`ADDR` to listen on for Raft traffic when not --raft-addr, which stays what the others dial "+
			"(0.0.0.0:8751 for a container on several networks)", func(c *node.Config) *string { return &c.RaftBindAddr }),
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
		bindFlag(catLimits, "max-in-flight", "requests a node works on at once, live streams aside, fewer while writes are slow; 503 beyond (0: no limit)", func(c *node.Config) *int { return &c.Limits.MaxInFlight }),
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
// node.DefaultConfig, the YAML file, the environment and the flags.
func loadConfig(c *cli.Context, flags []configFlag) (node.Config, error) {
	cfg, _, err := loadConfigSources(c, flags)
	return cfg, err
}

// loadConfigSources is loadConfig that also says where each setting came
// from, by flag name: "default", "file PATH (key KEY)", "env VAR" or "flag
// --NAME". c.IsSet is true for a flag given on the command line or through
// its variable, and urfave/cli already lets the command line beat the
// variable.
func loadConfigSources(c *cli.Context, flags []configFlag) (node.Config, map[string]string, error) {
	cfg := node.DefaultConfig()
	sources := map[string]string{}
	for _, f := range flags {
		sources[f.name()] = "default"
	}
	if path := c.String("config"); path != "" {
		keys, err := readConfigFileKeys(path, &cfg, flags)
		if err != nil {
			return cfg, sources, err
		}
		for name, key := range keys {
			if key == name {
				sources[name] = "file " + path
			} else {
				sources[name] = fmt.Sprintf("file %s (as %s)", path, key)
			}
		}
	}
	args, _ := c.App.Metadata[argsKey].([]string)
	// One LocalFlagNames rather than an IsSet per flag: urfave/cli's
	// IsSet looks the flag up among all of them, each time.
	given := map[string]bool{}
	for _, n := range c.LocalFlagNames() {
		given[n] = true
	}
	for _, f := range flags {
		name := f.name()
		if !given[name] {
			continue
		}
		f.apply(c, &cfg)
		if onCommandLine(args, name) {
			sources[name] = "flag --" + name
		} else {
			sources[name] = "env " + envName(name)
		}
	}
	cfg.Join = cleanList(cfg.Join)
	cfg.ACMEDomain = cleanList(cfg.ACMEDomain)
	if _, err := parseLogLevel(cfg.LogLevel); err != nil {
		return cfg, sources, err
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return cfg, sources, fmt.Errorf("log-format %q: want text or json", cfg.LogFormat)
	}
	if err := checkSettings(&cfg, flags, sources); err != nil {
		return cfg, sources, err
	}
	return cfg, sources, nil
}

// positiveSettings need a value above zero. Zero there either stops the
// node (a ticker of no interval), makes every shutdown give up at once, or
// was quietly replaced by the default while --print-config showed 0.
var positiveSettings = map[string]bool{
	"shutdown-timeout": true, "purge-interval": true, "stream-heartbeat": true,
	"raft-heartbeat-timeout": true, "raft-election-timeout": true,
	"raft-snapshot-interval": true, "raft-snapshot-threshold": true, "raft-peer-down-after": true,
	"delivery-workers": true, "delivery-per-host": true, "delivery-timeout": true,
	"delivery-min-backoff": true, "delivery-max-backoff": true, "webhook-disable-after": true,
	// Zero trimmed the whole change log at every purge, so every delta
	// token and stream cursor got 410, where audit-retention: 0 keeps all.
	"change-retention": true,
}

// requiredSettings may not be empty: an empty http-addr listened on a
// random port of every interface, and an empty data-dir or raft-addr failed
// with a message that did not name the setting.
var requiredSettings = map[string]bool{"data-dir": true, "http-addr": true, "raft-addr": true}

// checkSettings refuses a negative count, rate, size or duration, zero
// where it means nothing (positiveSettings) and an empty required setting,
// naming the setting and where its value came from.
func checkSettings(cfg *node.Config, flags []configFlag, sources map[string]string) error {
	for _, f := range flags {
		name := f.name()
		v := reflect.ValueOf(f.field(cfg)).Elem()
		var neg, zero bool
		switch v.Kind() {
		case reflect.String:
			if requiredSettings[name] && strings.TrimSpace(v.String()) == "" {
				return fmt.Errorf("%s is empty (%s): give it a value, or leave it out for the default", name, sources[name])
			}
			if name == "public-url" && v.String() != "" {
				// Every nextLink and deltaLink starts with it, and an https
				// one marks the UI's cookie Secure behind a TLS proxy.
				u, err := url.Parse(v.String())
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
					return fmt.Errorf("public-url %q (%s): want the URL clients reach this server by, such as https://herald.example.com", v.String(), sources[name])
				}
			}
			continue
		case reflect.Int, reflect.Int64: // time.Duration is an Int64
			neg, zero = v.Int() < 0, v.Int() == 0
		case reflect.Float64:
			neg, zero = v.Float() < 0, v.Float() == 0
		case reflect.Uint64:
			zero = v.Uint() == 0
		default:
			continue
		}
		shown, _ := yamlValue(v.Interface())
		switch {
		case neg:
			return fmt.Errorf("%s %s (%s): must not be negative", name, shown, sources[name])
		case zero && positiveSettings[name]:
			return fmt.Errorf("%s %s (%s): must be more than zero", name, shown, sources[name])
		}
	}
	// Raft refuses these itself, in its own words ("bootstrap:
	// ElectionTimeout (500ms) must be equal or greater than Heartbeat
	// Timeout (2s)", "LeaderLeaseTimeout is too low"), naming no setting.
	if _, ok := sources["raft-heartbeat-timeout"]; ok {
		hb, el := cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout
		switch {
		case hb < 10*time.Millisecond:
			return fmt.Errorf("raft-heartbeat-timeout %s (%s): at least 10ms", hb, sources["raft-heartbeat-timeout"])
		case el < hb:
			return fmt.Errorf("raft-election-timeout %s (%s) is below raft-heartbeat-timeout %s (%s): raise it to %s or more, on every node",
				el, sources["raft-election-timeout"], hb, sources["raft-heartbeat-timeout"], hb)
		}
	}
	return nil
}

// argsKey is where run leaves the raw command line in the app's Metadata:
// urfave/cli does not tell a flag from its environment variable.
const argsKey = "args"

func onCommandLine(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// readConfigFile overlays the YAML file at path on cfg.
func readConfigFile(path string, cfg *node.Config) error {
	_, err := readConfigFileKeys(path, cfg, serveConfigFlags())
	return err
}

// readConfigFileKeys overlays the YAML file at path on cfg and returns, by
// flag name, the key that set each setting. Every setting's key is its
// flag's name ("app-rate"); the sections of earlier versions ("limits:"
// with "app-rate", "webhook:" with "allowPrivate") stay valid as aliases.
// Unknown keys are an error naming the closest known key: a misspelt key
// silently ignored would leave a limit or a security setting at its
// default without anyone noticing.
func readConfigFileKeys(path string, cfg *node.Config, flags []configFlag) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // an empty file changes nothing
		}
		return nil, fmt.Errorf("config file %s: %s", path, describeYAMLError(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: want one YAML document", path)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s: line %d: want key: value lines", path, root.Line)
	}

	keys := configKeys(flags)
	byName := map[string]configFlag{}
	for _, f := range flags {
		byName[f.name()] = f
	}
	set := map[string]string{} // flag name → key that set it
	var problems []string
	use := func(key string, k, v *yaml.Node) {
		name := keys.flagOf[key]
		if prev, dup := set[name]; dup {
			problems = append(problems, fmt.Sprintf("line %d: %s sets the same setting as %s; keep one", k.Line, key, prev))
			return
		}
		if err := byName[name].decode(v, cfg); err != nil {
			problems = append(problems, fmt.Sprintf("%s (key %s)", describeYAMLError(err), key))
			return
		}
		set[name] = key
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if _, ok := keys.flagOf[k.Value]; ok && !strings.Contains(k.Value, ".") {
			use(k.Value, k, v)
			continue
		}
		if keys.sections[k.Value] {
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue // an empty section
			}
			if v.Kind != yaml.MappingNode {
				problems = append(problems, fmt.Sprintf("line %d: %s: want a section of key: value lines", k.Line, k.Value))
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				sk, sv := v.Content[j], v.Content[j+1]
				key := k.Value + "." + sk.Value
				if _, ok := keys.flagOf[key]; ok {
					use(key, sk, sv)
					continue
				}
				problems = append(problems, fmt.Sprintf("line %d: unknown key %q in %s%s", sk.Line, sk.Value, k.Value,
					suggest(sk.Value, keys.inSection(k.Value))))
			}
			continue
		}
		if name, ok := keys.flagOf[k.Value]; ok {
			problems = append(problems, fmt.Sprintf("line %d: unknown key %q (write it as %s: at the top level)", k.Line, k.Value, name))
			continue
		}
		problems = append(problems, fmt.Sprintf("line %d: unknown key %q%s", k.Line, k.Value, suggest(k.Value, keys.top())))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("config file %s: %s", path, strings.Join(problems, "; "))
	}
	return set, nil
}

// fileKeys are the keys a config file may use.
type fileKeys struct {
	flagOf   map[string]string // key (flag name or section.key alias) → flag name
	sections map[string]bool
}

func (k fileKeys) top() []string {
	var out []string
	for key := range k.flagOf {
		if !strings.Contains(key, ".") {
			out = append(out, key)
		}
	}
	for s := range k.sections {
		out = append(out, s)
	}
	return out
}

func (k fileKeys) inSection(section string) []string {
	var out []string
	for key := range k.flagOf {
		if rest, ok := strings.CutPrefix(key, section+"."); ok {
			out = append(out, rest)
		}
	}
	return out
}

// configKeys finds, for every flag, its YAML path in node.Config (from the
// yaml tags) and makes it an alias of the flag's name when it differs.
func configKeys(flags []configFlag) fileKeys {
	var cfg node.Config
	paths := map[uintptr]string{}
	sections := map[string]bool{}
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		for i := 0; i < v.NumField(); i++ {
			sf := v.Type().Field(i)
			tag, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct {
				sections[prefix+tag] = true
				walk(fv, prefix+tag+".")
				continue
			}
			paths[fv.Addr().Pointer()] = prefix + tag
		}
	}
	walk(reflect.ValueOf(&cfg).Elem(), "")
	keys := fileKeys{flagOf: map[string]string{}, sections: sections}
	for _, f := range flags {
		keys.flagOf[f.name()] = f.name()
		if p, ok := paths[reflect.ValueOf(f.field(&cfg)).Pointer()]; ok {
			keys.flagOf[p] = f.name()
		}
	}
	return keys
}

// suggest names the known key closest to key, if one is close enough to
// be a likely misspelling.
func suggest(key string, known []string) string {
	best, bestD := "", -1
	for _, k := range known {
		d := editDistance(strings.ToLower(key), strings.ToLower(k))
		if bestD < 0 || d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(2, len(key)/3) {
		return " (herald serve --help lists the settings: each flag's name is its key)"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
		msgs[i] = goTypeWords.Replace(m)
	}
	return strings.Join(msgs, "; ")
}

// goTypeWords says what the decoder's Go types want of the file's value.
var goTypeWords = strings.NewReplacer(
	"into time.Duration", "into a duration (with a unit: 15s, 2m, 1h)",
	"into float64", "into a number",
	"into uint64", "into a whole number of 0 or more",
	"into int", "into a whole number",
	"into bool", "into true or false",
	"into []string", "into a list (a, b or [a, b])",
	"into string", "into a single value",
)

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

// secretSettings are printed by --print-config only as set or not.
var secretSettings = map[string]bool{"admin-password": true, "cluster-key": true, "metrics-token": true}

// printConfig is serve --print-config: the merged settings as a config file
// that uses every flag's name as its key, each line saying where its value
// came from. Secrets are commented out and not shown.
func printConfig(c *cli.Context, flags []configFlag) error {
	cfg, sources, err := loadConfigSources(c, flags)
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintln(w, "# The settings herald serve would run with, and where each comes from:")
	fmt.Fprintln(w, "# a flag beats its HERALD_ variable, which beats the config file, which beats the default.")
	lines := make([][2]string, 0, len(flags))
	width := 0
	for _, f := range flags {
		name := f.name()
		v, err := yamlValue(reflect.ValueOf(f.field(&cfg)).Elem().Interface())
		if err != nil {
			return err
		}
		line := name + ": " + v
		if secretSettings[name] {
			state := "not set"
			if reflect.ValueOf(f.field(&cfg)).Elem().String() != "" {
				state = "set, not shown"
			}
			line = fmt.Sprintf("# %s: (%s)", name, state)
		}
		width = max(width, len(line))
		lines = append(lines, [2]string{line, sources[name]})
	}
	for _, l := range lines {
		if _, err := fmt.Fprintf(w, "%-*s  # %s\n", width, l[0], l[1]); err != nil {
			return err
		}
	}
	return nil
}

// yamlValue renders v as the YAML value of one key, on one line.
func yamlValue(v any) (string, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return "", err
	}
	if n.Kind == yaml.SequenceNode {
		n.Style = yaml.FlowStyle
	}
	b, err := yaml.Marshal(&n)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
