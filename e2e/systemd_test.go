package e2e

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unitFile is a parsed systemd unit: section → key → values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		case strings.HasSuffix(line, "\\"):
			t.Fatalf("%s:%d: continuation lines are not handled by this test", path, n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// installedPaths maps the paths an installed unit uses to where the test
// keeps the same things: the config the install steps copy, and the state
// directory systemd would make.
func installedPaths(t *testing.T, root string) map[string]string {
	return map[string]string{
		"/usr/local/bin/herald":   heraldBin,
		"/etc/herald/herald.yaml": filepath.Join(root, "configs", "herald.yaml"),
		"/var/lib/herald":         t.TempDir(),
	}
}

// TestSystemdUnitStartsTheServer reads configs/herald.service, checks its
// hardening, and runs the binary with the unit's own ExecStart arguments and
// Environment (the installed paths mapped to the test's), as systemd would:
// the node serves, keeps its data in the state directory, answers herald
// healthcheck, and stops cleanly on the unit's KillSignal.
func TestSystemdUnitStartsTheServer(t *testing.T) {
	t.Parallel()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	unitPath := filepath.Join(root, "configs", "herald.service")
	u := parseUnit(t, unitPath)
	svc := u["Service"]
	if svc == nil || u["Install"]["WantedBy"] == nil {
		t.Fatalf("unit lacks [Service] or [Install] WantedBy: %v", u)
	}
	// Hardening that must not be lost in an edit.
	for k, want := range map[string]string{
		"DynamicUser": "yes", "StateDirectory": "herald", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
		"RestrictSUIDSGID": "yes", "SystemCallFilter": "@system-service", "LimitNOFILE": "65536",
		"KillSignal": "SIGTERM", "Restart": "on-failure",
	} {
		if got := svc[k]; len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s = %q, want %q", k, got, want)
		}
	}

	paths := installedPaths(t, root)
	mapPath := func(what, s string) string {
		if !strings.HasPrefix(s, "/") {
			return s
		}
		p, ok := paths[s]
		if !ok {
			t.Fatalf("%s uses %s, which this test does not map to a test path", what, s)
		}
		return p
	}
	if got := svc["ExecStart"]; len(got) != 1 {
		t.Fatalf("ExecStart = %q", got)
	}
	argv := strings.Fields(svc["ExecStart"][0])
	if argv[0] != "/usr/local/bin/herald" || len(argv) < 2 || argv[1] != "serve" {
		t.Fatalf("ExecStart %q does not run /usr/local/bin/herald serve (where the install steps put it)", argv)
	}
	for i := range argv {
		argv[i] = mapPath("ExecStart", argv[i])
	}
	var env []string
	for _, line := range svc["Environment"] {
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			env = append(env, k+"="+mapPath("Environment", v))
		}
	}
	stateDir := paths["/var/lib/herald"]
	if !containsString(env, "HERALD_DATA_DIR="+stateDir) {
		t.Fatalf("the unit's Environment %q does not put the data in its StateDirectory /var/lib/herald", env)
	}

	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify wants the ExecStart binary to exist: check a copy that
		// names the test's.
		b, _ := os.ReadFile(unitPath)
		copyPath := filepath.Join(t.TempDir(), "herald.service")
		if err := os.WriteFile(copyPath, bytes.ReplaceAll(b, []byte("/usr/local/bin/herald"), []byte(heraldBin)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}

	// The ports are the only change: the installed config's :8750 and
	// 8751 may be taken on this machine. Environment beats the file, as
	// a drop-in's Environment= would.
	s := &server{HTTPAddr: freeAddr(t), RaftAddr: freeAddr(t), log: &logBuffer{}, exited: make(chan struct{})}
	s.URL = "http://" + s.HTTPAddr
	env = append(env, "HERALD_HTTP_ADDR="+s.HTTPAddr, "HERALD_RAFT_ADDR="+s.RaftAddr, "HERALD_ADMIN_PASSWORD="+adminPassword)
	s.args = argv[1:]
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Env = cleanEnv(env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.waitErr = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.kill(t)
		if t.Failed() {
			t.Logf("--- log ---\n%s", s.log.String())
		}
	})
	if err := s.waitReady(startTimeout); err != nil {
		t.Fatalf("the unit's command line did not serve: %v", err)
	}
	newAPI(s).signIn(t, "admin", adminPassword)
	if _, err := os.Stat(filepath.Join(stateDir, "badger")); err != nil {
		t.Errorf("no data in the state directory: %v", err)
	}

	hc := exec.Command(heraldBin, "healthcheck", "--ready", "--config", paths["/etc/herald/herald.yaml"])
	hc.Env = cleanEnv(env...)
	if out, err := hc.CombinedOutput(); err != nil || !strings.Contains(string(out), "200 OK") {
		t.Errorf("herald healthcheck with the unit's settings: %v: %s", err, out)
	}

	if sig := svc["KillSignal"][0]; sig == "SIGTERM" {
		if code, took := s.terminate(t, 30*time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM (%s)", code, took)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestSystemdInstallStepsWorkAsWritten runs the install commands that the
// README and the unit's header give, with sudo dropped and every absolute
// path moved under a temporary root, on a machine where /etc/herald does not
// exist yet: each step must find the directories the earlier ones made.
func TestSystemdInstallStepsWorkAsWritten(t *testing.T) {
	t.Parallel()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(root, "configs", "herald.service"))
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"README.md": string(readme), "configs/herald.service": string(unit)} {
		t.Run(name, func(t *testing.T) {
			var steps []string
			for _, line := range strings.Split(text, "\n") {
				line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
				if strings.HasPrefix(line, "sudo install ") || strings.HasPrefix(line, "sudo mkdir ") {
					steps = append(steps, strings.TrimPrefix(line, "sudo "))
				}
			}
			if len(steps) < 4 {
				t.Fatalf("found only the install steps %q", steps)
			}
			work, fakeRoot := t.TempDir(), t.TempDir()
			// What every Linux system has; /etc/herald is not among it.
			for _, d := range []string{"/usr/local/bin", "/etc/systemd/system"} {
				if err := os.MkdirAll(fakeRoot+d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// The working directory is a checkout with the binary built.
			if err := os.Symlink(filepath.Join(root, "configs"), filepath.Join(work, "configs")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(heraldBin, filepath.Join(work, "herald")); err != nil {
				t.Fatal(err)
			}
			for _, step := range steps {
				f := strings.Fields(step)
				for i, a := range f {
					if strings.HasPrefix(a, "/") {
						f[i] = fakeRoot + a
					}
				}
				cmd := exec.Command(f[0], f[1:]...)
				cmd.Dir = work
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%q fails on a fresh machine: %v\n%s", step, err, out)
				}
			}
			for _, p := range []string{"/usr/local/bin/herald", "/etc/herald/herald.yaml", "/etc/systemd/system/herald.service"} {
				if _, err := os.Stat(fakeRoot + p); err != nil {
					t.Errorf("after the install steps: %v", err)
				}
			}
		})
	}
}
