package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/herald-notify/herald/node"
	"github.com/urfave/cli/v2"
)

// fileValue is sampleValue written as a YAML value.
func fileValue(t *testing.T, f cli.Flag) string {
	v := sampleValue(t, f)
	switch f.(type) {
	case *cli.StringSliceFlag:
		return "[" + v + "]"
	case *cli.StringFlag:
		return `"` + v + `"`
	}
	return v
}

func TestConfigFileKeys(t *testing.T) {
	// The example, and the camelCase keys of the sections.
	cfg, err := loadServeConfig(t, []string{"--config", writeFile(t,
		"app-rate: 0\nwebhook-allow-private: true\nwebPush:\n  allowPrivate: true\nraft:\n  peer-down-after: 3s\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.AppRate != 0 || !cfg.Webhook.AllowPrivate || !cfg.WebPush.AllowPrivate || cfg.Raft.PeerDownAfter.String() != "3s" {
		t.Errorf("config %+v", cfg)
	}

	for _, tt := range []struct{ file, want string }{
		{"app-rat: 1\n", `line 1: unknown key "app-rat" (did you mean "app-rate"?)`},
		{"limits:\n  app-rates: 5\n", `line 2: unknown key "app-rates" in limits (did you mean "app-rate"?)`},
		{"webpush:\n  allowPrivate: true\n", `unknown key "webpush" (did you mean "webPush"?)`},
		{"webhook:\n  allow-private: true\n", `unknown key "allow-private" in webhook (did you mean "allowPrivate"?)`},
		{"limits.app-rate: 1\n", `unknown key "limits.app-rate" (write it as app-rate: at the top level)`},
		{"zzzzzz: 1\n", `unknown key "zzzzzz" (herald serve --help lists the settings`},
		{"app-rate: 1\nlimits:\n  app-rate: 2\n", "line 3: limits.app-rate sets the same setting as app-rate; keep one"},
		{"limits: 5\n", "limits: want a section"},
		{"app-burst: many\n", "app-burst"},
	} {
		_, err := loadServeConfig(t, []string{"--config", writeFile(t, tt.file)}, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.file, err, tt.want)
		}
	}
}

// printConfigLines runs serve --print-config and returns its lines by key.
func printConfigLines(t *testing.T, env map[string]string, args ...string) (string, map[string]string) {
	t.Helper()
	for _, f := range serveConfigFlags() {
		t.Setenv(envName(f.name()), "")
		os.Unsetenv(envName(f.name()))
	}
	code, out, errOut := runCLI(t, env, append([]string{"serve", "--print-config"}, args...)...)
	if code != 0 || errOut != "" {
		t.Fatalf("print-config: exit %d, %q", code, errOut)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		key, _, _ := strings.Cut(strings.TrimPrefix(l, "# "), ":")
		lines[key] = l
	}
	return out, lines
}

func TestPrintConfigSaysWhereEachSettingCameFrom(t *testing.T) {
	file := writeFile(t, "log-level: debug\nlimits:\n  user-burst: 3\nhttp-addr: \":1\"\ncluster-key: file-key-0123456789abcdef0123456789\n")
	env := map[string]string{"HERALD_HTTP_ADDR": "127.0.0.1:2", "HERALD_APP_RATE": "5"}
	out, lines := printConfigLines(t, env, "--config", file, "--app-rate", "7", "--node-id", "n9")
	for key, want := range map[string][]string{
		"data-dir":    {"data-dir: ./herald-data", "# default"},
		"log-level":   {"log-level: debug", "# file " + file},
		"user-burst":  {"user-burst: 3", "# file " + file + " (as limits.user-burst)"},
		"http-addr":   {"http-addr: 127.0.0.1:2", "# env HERALD_HTTP_ADDR"},
		"app-rate":    {"app-rate: 7", "# flag --app-rate"},
		"node-id":     {"node-id: n9", "# flag --node-id"},
		"cluster-key": {"# cluster-key: (set, not shown)", "# file " + file},
		"join":        {"join: []"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[key], w) {
				t.Errorf("line of %s is %q, want %q in it", key, lines[key], w)
			}
		}
	}
	if strings.Contains(out, "file-key-0123") {
		t.Errorf("print-config shows the cluster key:\n%s", out)
	}
	if len(lines) < len(serveConfigFlags()) {
		t.Errorf("print-config printed %d settings, want all %d:\n%s", len(lines), len(serveConfigFlags()), out)
	}

	// The output is itself a config file that gives the same settings
	// (but for the secrets, which it leaves out).
	want, err := loadServeConfig(t, []string{"--config", file, "--app-rate", "7", "--node-id", "n9"}, env)
	if err != nil {
		t.Fatal(err)
	}
	again, err := loadServeConfig(t, []string{"--config", writeFile(t, out)}, nil)
	if err != nil {
		t.Fatalf("print-config output does not load: %v\n%s", err, out)
	}
	want.ClusterKey = ""
	if !reflect.DeepEqual(again, want) {
		t.Errorf("print-config output loads as\n%+v\nwant\n%+v", again, want)
	}
}

// The example config teaches the keys as they are now: each a flag's name.
func TestExampleConfigUsesTheFlagNames(t *testing.T) {
	cfg := node.DefaultConfig()
	keys, err := readConfigFileKeys("configs/herald.yaml", &cfg, serveConfigFlags())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) < 40 {
		t.Errorf("configs/herald.yaml sets only %d settings", len(keys))
	}
	for name, key := range keys {
		if key != name {
			t.Errorf("configs/herald.yaml sets %s as %s", name, key)
		}
	}
}

// API.md §9: every serve flag is also an environment variable HERALD_<FLAG>.
// --print-config too: HERALD_PRINT_CONFIG=true prints the merged settings
// and exits, as the flag does (it is no key of the file, which cannot ask
// to be printed instead of served).
func TestEveryServeFlagIsAnEnvironmentVariable(t *testing.T) {
	for _, f := range serveCommand().Flags {
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue // a test harness's, not listed
		}
		name := f.Names()[0]
		env, ok := f.(interface{ GetEnvVars() []string })
		if !ok || !reflect.DeepEqual(env.GetEnvVars(), []string{envName(name)}) {
			t.Errorf("serve --%s: environment variables %v, want [%s]", name, env.GetEnvVars(), envName(name))
		}
	}
	for _, f := range serveConfigFlags() {
		t.Setenv(envName(f.name()), "")
		os.Unsetenv(envName(f.name()))
	}
	// Were the variable not read, serve would start: a data directory that
	// is a file, and addresses of the system's choosing, make that fail at once.
	notADir := writeFile(t, "")
	code, out, errOut := runCLI(t, map[string]string{"HERALD_PRINT_CONFIG": "true", "HERALD_APP_RATE": "7"},
		"serve", "--data-dir", notADir, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	if code != 0 || errOut != "" || !strings.Contains(out, "app-rate: 7") || !strings.Contains(out, "# env HERALD_APP_RATE") {
		t.Errorf("HERALD_PRINT_CONFIG=true serve: exit %d, stderr %q, stdout\n%s", code, errOut, out)
	}
}
