package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/node"
	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// loadServeConfig runs the serve flags over args, with env as the only
// HERALD_ variables (those of the test's own environment are hidden), and
// returns what loadConfig made of them.
func loadServeConfig(t *testing.T, args []string, env map[string]string) (node.Config, error) {
	t.Helper()
	flags := serveConfigFlags()
	names := []string{"config"}
	for _, f := range flags {
		names = append(names, f.flag.Names()[0])
	}
	for _, n := range names {
		t.Setenv(envName(n), "") // restores the variable after the test
		os.Unsetenv(envName(n))
	}
	for k, v := range env {
		t.Setenv(k, v)
	}

	var (
		cfg     node.Config
		loadErr error
	)
	app := &cli.App{
		Name:         "herald-test",
		Writer:       io.Discard,
		OnUsageError: returnUsageError,
		Flags:        []cli.Flag{configFileFlag()},
		Action:       func(c *cli.Context) error { cfg, loadErr = loadConfig(c, flags); return nil },
	}
	for _, f := range flags {
		app.Flags = append(app.Flags, f.flag)
	}
	if err := app.Run(append([]string{"herald-test"}, args...)); err != nil {
		return cfg, err
	}
	return cfg, loadErr
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigPrecedence(t *testing.T) {
	const file = `
http-addr: ":1111"
log-level: debug
insecure-cluster: true
join: ["file-a:8750", "file-b:8750"]
limits:
  app-rate: 5
raft:
  heartbeat-timeout: 250ms
webPush:
  allowPrivate: true
webhook:
  allowPrivate: true
`
	// fromFile is DefaultConfig with the file applied: nested sections are
	// merged key by key, so limits the file does not name keep defaults.
	fromFile := func(c *node.Config) {
		c.HTTPAddr = ":1111"
		c.LogLevel = "debug"
		c.InsecureCluster = true
		c.Join = []string{"file-a:8750", "file-b:8750"}
		c.Limits.AppRate = 5
		c.Raft.HeartbeatTimeout = 250 * time.Millisecond
		c.WebPush.AllowPrivate = true
		c.Webhook.AllowPrivate = true
	}

	tests := []struct {
		name string
		file string // written to a temp file; "$FILE" in args and env names it
		args []string
		env  map[string]string
		want func(*node.Config) // changes from DefaultConfig
	}{
		{
			name: "defaults when nothing is given",
			want: func(*node.Config) {},
		},
		{
			name: "file overrides defaults",
			file: file,
			args: []string{"--config", "$FILE"},
			want: fromFile,
		},
		{
			name: "file named by HERALD_CONFIG",
			file: file,
			env:  map[string]string{"HERALD_CONFIG": "$FILE"},
			want: fromFile,
		},
		{
			name: "environment overrides file",
			file: file,
			args: []string{"--config", "$FILE"},
			env: map[string]string{
				"HERALD_HTTP_ADDR":              ":2222",
				"HERALD_APP_RATE":               "7.5",
				"HERALD_JOIN":                   "env-a:8750, env-b:8750,",
				"HERALD_WEBHOOK_ALLOW_PRIVATE":  "false",
				"HERALD_RAFT_HEARTBEAT_TIMEOUT": "300ms",
				"HERALD_CLUSTER_KEY":            "k-env",
			},
			want: func(c *node.Config) {
				fromFile(c)
				c.HTTPAddr = ":2222"
				c.Limits.AppRate = 7.5
				c.Join = []string{"env-a:8750", "env-b:8750"}
				c.Webhook.AllowPrivate = false
				c.Raft.HeartbeatTimeout = 300 * time.Millisecond
				c.ClusterKey = "k-env"
			},
		},
		{
			name: "flags override environment and file",
			file: file,
			args: []string{"--config", "$FILE", "--http-addr", ":3333", "--app-rate", "9", "--join", "flag-a:8750", "--join", "flag-b:8750,flag-c:8750", "--cluster-key", "k-flag"},
			env:  map[string]string{"HERALD_HTTP_ADDR": ":2222", "HERALD_APP_RATE": "7.5", "HERALD_JOIN": "env-a:8750", "HERALD_CLUSTER_KEY": "k-env"},
			want: func(c *node.Config) {
				fromFile(c)
				c.HTTPAddr = ":3333"
				c.Limits.AppRate = 9
				c.Join = []string{"flag-a:8750", "flag-b:8750", "flag-c:8750"}
				c.ClusterKey = "k-flag"
			},
		},
		{
			// A flag counts because it was given, not because it differs
			// from the default.
			name: "flag equal to the default still overrides file",
			file: file,
			args: []string{"--config", "$FILE", "--log-level", "info", "--insecure-cluster=false"},
			want: func(c *node.Config) {
				fromFile(c)
				c.LogLevel = "info"
				c.InsecureCluster = false
			},
		},
		{
			// The list keys take the flag's and the variable's form too;
			// it used to be refused with "cannot unmarshal !!str into
			// []string".
			name: "a list key written as the flag takes it",
			file: "join: file-a:8750, file-b:8750\nacme-domain: a.example\n",
			args: []string{"--config", "$FILE"},
			want: func(c *node.Config) {
				c.Join = []string{"file-a:8750", "file-b:8750"}
				c.ACMEDomain = []string{"a.example"}
			},
		},
		{
			name: "empty file changes nothing",
			file: "# all defaults\n",
			args: []string{"--config", "$FILE"},
			want: func(*node.Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, env := tt.args, tt.env
			if tt.file != "" {
				path := writeFile(t, tt.file)
				args, env = substitute(args, env, path)
			}
			got, err := loadServeConfig(t, args, env)
			if err != nil {
				t.Fatal(err)
			}
			want := node.DefaultConfig()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("config\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func substitute(args []string, env map[string]string, path string) ([]string, map[string]string) {
	outArgs := make([]string, len(args))
	for i, a := range args {
		outArgs[i] = strings.ReplaceAll(a, "$FILE", path)
	}
	outEnv := map[string]string{}
	for k, v := range env {
		outEnv[k] = strings.ReplaceAll(v, "$FILE", path)
	}
	return outArgs, outEnv
}

func TestConfigRejects(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		args    []string
		env     map[string]string
		wantErr []string // substrings of the error
	}{
		{
			name:    "unknown top-level key",
			file:    "http-addr: \":1\"\nbogus: 1\n",
			wantErr: []string{`line 2: unknown key "bogus"`},
		},
		{
			name:    "unknown key in a section",
			file:    "limits:\n  app-rates: 5\n",
			wantErr: []string{`unknown key "app-rates"`},
		},
		{
			name:    "section name in the wrong case",
			file:    "webpush:\n  allowPrivate: true\n",
			wantErr: []string{`unknown key "webpush"`},
		},
		{
			name:    "all unknown keys are reported",
			file:    "one: 1\ntwo: 2\n",
			wantErr: []string{`unknown key "one"`, `unknown key "two"`},
		},
		{
			name:    "duration without a unit",
			file:    "shutdown-timeout: 15\n",
			wantErr: []string{"line 1", "`15`", "a duration (with a unit"},
		},
		{
			name:    "a count that is not a whole number",
			file:    "max-conns: 2.9\n",
			wantErr: []string{"line 1", "2.9 is not a whole number", "max-conns"},
		},
		{
			name:    "a rate that is not a number",
			file:    "app-rate: abc\n",
			wantErr: []string{"`abc` into a number"},
		},
		{
			name:    "more than one document",
			file:    "log-level: info\n---\nlog-level: debug\n",
			wantErr: []string{"one YAML document"},
		},
		{
			name:    "missing file",
			args:    []string{"--config", "/nonexistent/herald.yaml"},
			wantErr: []string{"/nonexistent/herald.yaml"},
		},
		{
			name:    "bad log format from the environment",
			env:     map[string]string{"HERALD_LOG_FORMAT": "xml"},
			wantErr: []string{`log-format "xml"`},
		},
		{
			name:    "bad log level from a flag",
			args:    []string{"--log-level", "loud"},
			wantErr: []string{`log-level "loud"`},
		},
		{
			// A ticker of no interval panicked once the node led.
			name:    "zero purge interval",
			file:    "purge-interval: 0s\n",
			wantErr: []string{"purge-interval 0s", "more than zero"},
		},
		{
			// Every shutdown gave up at once and skipped closing the stores.
			name:    "negative shutdown timeout from a flag",
			args:    []string{"--shutdown-timeout", "-1s"},
			wantErr: []string{"shutdown-timeout -1s", "negative"},
		},
		{
			name:    "negative connection cap from the environment",
			env:     map[string]string{"HERALD_MAX_CONNS": "-1"},
			wantErr: []string{"max-conns -1", "env HERALD_MAX_CONNS", "negative"},
		},
		{
			name:    "negative rate in a section of an earlier version",
			file:    "limits:\n  app-rate: -5\n",
			wantErr: []string{"app-rate -5", "negative"},
		},
		{
			// Zero workers used to become 32 while --print-config said 0.
			name:    "zero delivery workers",
			file:    "delivery-workers: 0\n",
			wantErr: []string{"delivery-workers 0", "more than zero"},
		},
		{
			// An empty address listened on a random port of every interface.
			name:    "empty http address from the environment",
			env:     map[string]string{"HERALD_HTTP_ADDR": ""},
			wantErr: []string{"http-addr is empty"},
		},
		{
			name:    "empty data directory in the file",
			file:    "data-dir: \"\"\n",
			wantErr: []string{"data-dir is empty"},
		},
		{
			// Without a scheme every nextLink and deltaLink was a relative
			// path clients could not follow.
			name:    "public URL without a scheme",
			file:    "public-url: herald.example.com\n",
			wantErr: []string{`public-url "herald.example.com"`, "https://"},
		},
		{
			// Raised as operations.md advises, but only the one of the two.
			name:    "heartbeat timeout above the election timeout",
			args:    []string{"--raft-heartbeat-timeout", "2s"},
			wantErr: []string{"raft-election-timeout 500ms", "below raft-heartbeat-timeout 2s", "on every node"},
		},
		{
			// Zero became 8192 while --print-config said 0.
			name:    "zero snapshot threshold",
			env:     map[string]string{"HERALD_RAFT_SNAPSHOT_THRESHOLD": "0"},
			wantErr: []string{"raft-snapshot-threshold 0", "more than zero"},
		},
		{
			// Zero kept nothing, where audit-retention: 0 keeps everything.
			name:    "zero change retention",
			file:    "change-retention: 0s\n",
			wantErr: []string{"change-retention 0s", "more than zero"},
		},
		{
			name:    "unparsable number in the environment",
			env:     map[string]string{"HERALD_APP_BURST": "lots"},
			wantErr: []string{"lots", "app-burst"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			_, err := loadServeConfig(t, args, tt.env)
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "node.") {
				t.Errorf("error %q names Go types", err)
			}
		})
	}
}

// TestEveryServeFlagReachesConfig proves the three sources of API.md §9 for
// each serve flag: its HERALD_ variable, the flag itself and the file key of
// the flag's name set the same field, and that field survives a trip
// through a YAML config file in the nested form of earlier versions.
func TestEveryServeFlagReachesConfig(t *testing.T) {
	def := node.DefaultConfig()
	for _, f := range serveConfigFlags() {
		name := f.flag.Names()[0]
		t.Run(name, func(t *testing.T) {
			value := sampleValue(t, f.flag)

			fromEnv, err := loadServeConfig(t, nil, map[string]string{envName(name): value})
			if err != nil {
				t.Fatal(err)
			}
			if reflect.DeepEqual(fromEnv, def) {
				t.Fatalf("%s=%s left the config at its defaults", envName(name), value)
			}
			fromFlag, err := loadServeConfig(t, []string{"--" + name + "=" + value}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fromFlag, fromEnv) {
				t.Fatalf("flag and variable disagree\nflag %+v\n env %+v", fromFlag, fromEnv)
			}

			// The flag's name is its key in the file.
			fromKey := node.DefaultConfig()
			if err := readConfigFile(writeFile(t, name+": "+fileValue(t, f.flag)+"\n"), &fromKey); err != nil {
				t.Fatal(err)
			}
			fromKey.Join = cleanList(fromKey.Join)
			if !reflect.DeepEqual(fromKey, fromFlag) {
				t.Fatalf("%s in the file and --%s disagree\nfile %+v\nflag %+v", name, name, fromKey, fromFlag)
			}

			b, err := yaml.Marshal(fromFlag)
			if err != nil {
				t.Fatal(err)
			}
			fromFile, err := loadServeConfig(t, []string{"--config", writeFile(t, string(b))}, nil)
			if err != nil {
				t.Fatalf("%v\nfile:\n%s", err, b)
			}
			if !reflect.DeepEqual(fromFile, fromFlag) {
				t.Fatalf("file and flag disagree\nfile %+v\nflag %+v", fromFile, fromFlag)
			}
		})
	}
}

// sampleValue returns a valid value for f that differs from its default.
func sampleValue(t *testing.T, f cli.Flag) string {
	switch f := f.(type) {
	case *cli.StringFlag:
		switch f.Name {
		case "log-level":
			return "debug"
		case "log-format":
			return "json"
		case "public-url":
			return "https://sample.example"
		}

		return "sample-" + f.Name
	case *cli.StringSliceFlag:
		return "x.example:8750,y.example:8750"
	case *cli.IntFlag:
		return fmt.Sprint(f.Value + 7)
	case *cli.Uint64Flag:
		return fmt.Sprint(f.Value + 7)
	case *cli.Float64Flag:
		return fmt.Sprint(f.Value + 7.5)
	case *cli.BoolFlag:
		return fmt.Sprint(!f.Value)
	case *cli.DurationFlag:
		if f.Name == "raft-heartbeat-timeout" { // at most raft-election-timeout
			return (f.Value / 2).String()
		}
		return (f.Value + 7*time.Second).String()
	}
	t.Fatalf("no sample value for %T", f)
	return ""
}

func TestServeFlagsAreNamedForTheirVariables(t *testing.T) {
	want := map[string]string{
		"data-dir":              "HERALD_DATA_DIR",
		"http-addr":             "HERALD_HTTP_ADDR",
		"cluster-key":           "HERALD_CLUSTER_KEY",
		"admin-password":        "HERALD_ADMIN_PASSWORD",
		"webpush-allow-private": "HERALD_WEBPUSH_ALLOW_PRIVATE",
		"webhook-allow-private": "HERALD_WEBHOOK_ALLOW_PRIVATE",
	}
	got := map[string]string{}
	for _, f := range serveConfigFlags() {
		name := f.flag.Names()[0]
		if _, ok := want[name]; ok {
			env := f.flag.(interface{ GetEnvVars() []string }).GetEnvVars()
			got[name] = strings.Join(env, ",")
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("variables = %v, want %v", got, want)
	}
}

func TestNewLoggerHonoursFormatAndLevel(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.LogFormat, cfg.LogLevel = "json", "warn"
	var buf bytes.Buffer
	logger, err := newLogger(cfg, &buf)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("dropped")
	logger.Warn("kept", "k", "v")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("want one JSON line, got %q: %v", buf.String(), err)
	}
	if line["msg"] != "kept" || line["level"] != "WARN" || line["k"] != "v" {
		t.Errorf("logged %v", line)
	}
}

// The example configs shipped in configs/ must load as they are, with
// every key known, and say what their comments claim.
func TestShippedConfigsLoad(t *testing.T) {
	cfg := node.DefaultConfig()
	if err := readConfigFile("configs/herald.yaml", &cfg); err != nil {
		t.Fatalf("configs/herald.yaml: %v", err)
	}
	def := node.DefaultConfig()
	if cfg.Limits != def.Limits || cfg.Delivery != def.Delivery || cfg.Raft.PeerDownAfter != 10*time.Second {
		t.Errorf("configs/herald.yaml disagrees with the defaults it documents: %+v", cfg)
	}
	for i := 1; i <= 3; i++ {
		c := node.DefaultConfig()
		path := fmt.Sprintf("configs/cluster/node%d.yaml", i)
		if err := readConfigFile(path, &c); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		// One line for every node: the same --bootstrap-expect and --join.
		want := []string{"10.0.0.1:8750", "10.0.0.2:8750", "10.0.0.3:8750"}
		if c.NodeID != fmt.Sprintf("n%d", i) || c.BootstrapExpect != 3 || !slices.Equal(c.Join, want) ||
			c.HTTPAddr != want[i-1] {
			t.Errorf("%s: node %q at %s expects %d and joins %v", path, c.NodeID, c.HTTPAddr, c.BootstrapExpect, c.Join)
		}
	}
}
