package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// dockerTimeout bounds the slow steps of the Docker tests: building the
// image, a container becoming healthy, a compose cluster forming.
const dockerTimeout = 3 * time.Minute

// needDocker skips the test without a usable Docker daemon, except in CI
// (CI=true), where a missing Docker is a failure: the image and compose file
// must not go untested there.
func needDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("Docker tests do not run with -short")
	}
	out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("Docker is not usable here: %v: %s", err, bytes.TrimSpace(out))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// docker runs a docker command and returns its trimmed standard output; a
// failure fails the test.
func docker(t testing.TB, env []string, args ...string) string {
	t.Helper()
	out, err := dockerErr(env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dockerErr(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

func randomName(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

var (
	imageOnce     sync.Once
	imageTag      string
	imageErr      error
	imageRevision string // the vcs.revision recorded in the image's binary
)

// dockerImage builds the image once per run, the way the Dockerfile says:
// "CGO_ENABLED=0 go build -o herald ." in the repository root,
// then "docker build" of the root. The build context is a copy of what the
// root's .dockerignore lets through, so that the test writes nothing into
// the repository. The image is removed when the run ends (TestMain).
func dockerImage(t *testing.T) string {
	t.Helper()
	imageOnce.Do(func() { imageTag, imageErr = buildImage() })
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageTag
}

func buildImage() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	ctxDir, err := os.MkdirTemp("", "herald-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(ctxDir)
	build := exec.Command("go", "build", "-o", filepath.Join(ctxDir, "herald"), ".")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	for _, f := range []string{"Dockerfile", ".dockerignore", "configs/docker/data/README.md"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", err
		}
		dst := filepath.Join(ctxDir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return "", err
		}
	}
	if info, err := exec.Command("go", "version", "-m", filepath.Join(ctxDir, "herald")).Output(); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision=") {
				imageRevision = strings.TrimPrefix(f[1], "vcs.revision=")
			}
		}
	}
	tag := randomName("herald-e2e:")
	if _, err := dockerErr(nil, "docker", "build", "--pull=false", "-t", tag, ctxDir); err != nil {
		return "", err
	}
	builtImages = append(builtImages, tag)
	return tag, nil
}

// builtImages are removed by removeImages when the run ends.
var builtImages []string

func removeImages() {
	for _, tag := range builtImages {
		_, _ = dockerErr(nil, "docker", "rmi", "-f", tag)
	}
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root := filepath.Dir(wd)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("repository root not found at %s: %w", root, err)
	}
	return root, nil
}

// healthStatus is a container's Docker health: starting, healthy or
// unhealthy.
func healthStatus(t testing.TB, container string) string {
	return docker(t, nil, "docker", "inspect", "-f", "{{.State.Health.Status}}", container)
}

// TestDockerImageBecomesHealthy runs the image as a user would, with only a
// volume and a published port, and waits for the image's own HEALTHCHECK
// (herald healthcheck) to report healthy. It also checks what the image
// promises: a non-root numeric user, the data volume, the version stamped
// in, and a node that answers the API on the published port.
func TestDockerImageBecomesHealthy(t *testing.T) {
	needDocker(t)
	t.Parallel()
	image := dockerImage(t)

	cfg := docker(t, nil, "docker", "image", "inspect", "-f",
		"{{.Config.User}}|{{json .Config.Volumes}}|{{json .Config.ExposedPorts}}|{{json .Config.Healthcheck.Test}}", image)
	for _, want := range []string{"65532:65532|", `"/data":{}`, `"8750/tcp":{}`, `"8751/tcp":{}`, `["CMD","/herald","healthcheck"]`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("image config %s lacks %s", cfg, want)
		}
	}

	out := docker(t, nil, "docker", "run", "--rm", image, "version")
	if !strings.HasPrefix(out, "herald ") {
		t.Errorf("herald version in the image printed %q", out)
	}
	// The go command records the commit where it can (not in a git
	// worktree, nor with -buildvcs=false); whatever it recorded in the
	// binary, herald version must show.
	if rev := imageRevision; rev != "" && !strings.Contains(out, "commit: "+rev) {
		t.Errorf("herald version in the image does not name commit %s:\n%s", rev, out)
	}

	name := randomName("herald-e2e-")
	volume := name + "-data"
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Logf("--- container log ---\n%s", logs)
		}
		_, _ = dockerErr(nil, "docker", "rm", "-f", "-v", name)
		_, _ = dockerErr(nil, "docker", "volume", "rm", "-f", volume)
	})
	// The health interval is shortened so that the test need not wait
	// out the image's 10 s; the check itself is the image's.
	docker(t, nil, "docker", "run", "-d", "--name", name, "-v", volume+":/data", "-p", "127.0.0.1::8750",
		"--health-interval", "1s", "--health-start-period", "60s",
		"-e", "HERALD_ADMIN_PASSWORD="+adminPassword, image)
	eventually(t, dockerTimeout, "the container's HEALTHCHECK", func() error {
		if s := healthStatus(t, name); s != "healthy" {
			return fmt.Errorf("health %q", s)
		}
		return nil
	})
	// Healthy is /healthz; ready (/readyz) follows once the node leads.
	eventually(t, dockerTimeout, "herald healthcheck --ready in the container", func() error {
		out, err := dockerErr(nil, "docker", "exec", name, "/herald", "healthcheck", "--ready")
		if err == nil && !strings.Contains(out, "200 OK") {
			err = fmt.Errorf("printed %q", out)
		}
		return err
	})
	hostPort := docker(t, nil, "docker", "port", name, "8750/tcp")
	hostPort = strings.Split(hostPort, "\n")[0]
	a := newAPI(&server{URL: "http://" + hostPort})
	a.signIn(t, "admin", adminPassword)

	// docker stop sends SIGTERM to herald, which runs as PID 1: it must
	// stop cleanly, and a new start finds its data in the volume.
	docker(t, nil, "docker", "stop", "-t", "30", name)
	if code := docker(t, nil, "docker", "inspect", "-f", "{{.State.ExitCode}}", name); code != "0" {
		t.Errorf("exit code %s after docker stop", code)
	}
	docker(t, nil, "docker", "start", name)
	eventually(t, dockerTimeout, "healthy after a restart", func() error {
		if s := healthStatus(t, name); s != "healthy" {
			return fmt.Errorf("health %q", s)
		}
		return nil
	})
	hostPort = strings.Split(docker(t, nil, "docker", "port", name, "8750/tcp"), "\n")[0]
	a = newAPI(&server{URL: "http://" + hostPort})
	eventually(t, dockerTimeout, "sign-in after a restart", func() error {
		_, r, err := a.token(url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {adminPassword}})
		if err != nil && r != nil {
			return fmt.Errorf("%v: %s", err, r.Body)
		}
		return err
	})
}

// compose finds Docker's compose: the plugin ("docker compose") or the
// older standalone docker-compose.
func compose(t *testing.T) []string {
	t.Helper()
	if _, err := dockerErr(nil, "docker", "compose", "version"); err == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	msg := "neither docker compose nor docker-compose is installed"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return nil
}

// TestComposeClusterForms brings up compose.yaml as it is, under a project
// name of its own (its own private network and volumes), with the image
// this run built and a new cluster key: the three nodes form one cluster,
// a notification sent through node1 is read on node2, every container's
// HEALTHCHECK turns healthy, and "down -v" removes it all.
func TestComposeClusterForms(t *testing.T) {
	needDocker(t)
	t.Parallel()
	dc := compose(t)
	image := dockerImage(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	project := randomName("heralde2e")
	key := strings.TrimSpace(runCLI(t, nil, "cluster", "key"))
	env := []string{"HERALD_IMAGE=" + image, "HERALD_CLUSTER_KEY=" + key,
		"HERALD_ADMIN_PASSWORD=" + adminPassword, "HERALD_PUBLISH=127.0.0.1:"}
	base := append(dc, "-p", project, "-f", filepath.Join(root, "compose.yaml"))
	run := func(args ...string) string {
		t.Helper()
		return docker(t, env, append(append([]string(nil), base...), args...)...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			cmd := exec.Command(base[0], append(append([]string(nil), base[1:]...), "logs", "--no-color")...)
			cmd.Env = append(os.Environ(), env...)
			logs, _ := cmd.CombinedOutput()
			t.Logf("--- compose logs ---\n%s", logs)
		}
		if _, err := dockerErr(env, append(append([]string(nil), base...), "down", "-v", "--timeout", "10")...); err != nil {
			t.Errorf("compose down: %v", err)
		}
	})

	// Without a key, compose refuses to start the cluster at all.
	noKey := []string{"HERALD_IMAGE=" + image, "HERALD_CLUSTER_KEY="}
	if _, err := dockerErr(noKey, append(append([]string(nil), base...), "config")...); err == nil ||
		!strings.Contains(err.Error(), "HERALD_CLUSTER_KEY") {
		t.Errorf("compose config without a cluster key: %v", err)
	}

	run("up", "-d")
	published := strings.Split(run("port", "node1", "8750"), "\n")[0]
	node1 := &server{URL: "http://" + published}
	eventually(t, dockerTimeout, "node1 ready", func() error { return readyz(node1.URL) })

	a1 := newAPI(node1)
	admin := a1.signIn(t, "admin", adminPassword)
	eventually(t, dockerTimeout, "three voters and a leader", func() error {
		var st clusterStatus
		r, err := a1.do("GET", "/v1.0/admin/cluster", admin, nil, nil)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(r.Body, &st); err != nil {
			return fmt.Errorf("%d %s", r.Status, r.Body)
		}
		voters := 0
		for _, n := range st.Nodes {
			if n.Voter && (n.State == "leader" || n.State == "follower") {
				voters++
			}
		}
		if st.LeaderID == "" || voters != 3 {
			return fmt.Errorf("cluster %s", r.Body)
		}
		return nil
	})

	f := newFixture(t, a1, adminPassword, "compose.example.com", "erin")
	var sent notification
	a1.call(t, http.StatusCreated, "POST", "/v1.0/me/notifications", f.appToken,
		map[string]any{"appNotificationId": "from-compose", "payload": map[string]any{"rawContent": "hello"}},
		map[string]string{"X-UNS-ID": f.unsid}, &sent)

	// node2 is reached on the project's private network, at its container
	// address.
	node2ID := run("ps", "-q", "node2")
	ip := docker(t, nil, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", node2ID)
	node2 := &server{URL: "http://" + strings.Fields(ip)[0] + ":8750"}
	// holdsSent: the user's feed through a is the one notification sent.
	holdsSent := func(a *api) func() error {
		return func() error {
			var page notificationPage
			r, err := a.do("GET", "/v1.0/me/notifications", f.userToken, nil, nil)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(r.Body, &page); err != nil || len(page.Value) != 1 || page.Value[0].ID != sent.ID {
				return fmt.Errorf("answered %d %s", r.Status, r.Body)
			}
			return nil
		}
	}
	eventually(t, dockerTimeout, "the notification on node2", holdsSent(newAPI(node2)))

	for _, svc := range []string{"node1", "node2", "node3"} {
		id := run("ps", "-q", svc)
		eventually(t, dockerTimeout, svc+"'s HEALTHCHECK", func() error {
			if s := healthStatus(t, id); s != "healthy" {
				return fmt.Errorf("health %q", s)
			}
			return nil
		})
	}

	// Down and up again (the volumes kept): compose makes a new network,
	// and a network made meanwhile takes the old one's range, so the
	// containers come back at other addresses. The nodes find each other
	// by their names, elect a leader and hold what was sent. Advertised
	// by the addresses they had, they never elected one again.
	before := run("ps", "-q", "node1")
	oldIP := docker(t, nil, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", before)
	run("down", "--timeout", "10")
	decoy := randomName("heralde2edecoy")
	docker(t, nil, "docker", "network", "create", decoy)
	t.Cleanup(func() { dockerErr(nil, "docker", "network", "rm", decoy) })
	run("up", "-d")
	newIP := docker(t, nil, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", run("ps", "-q", "node1"))
	t.Logf("node1 was at %s and is now at %s", strings.TrimSpace(oldIP), strings.TrimSpace(newIP))
	node1 = &server{URL: "http://" + strings.Split(run("port", "node1", "8750"), "\n")[0]}
	eventually(t, dockerTimeout, "node1 ready after down and up", func() error { return readyz(node1.URL) })
	eventually(t, dockerTimeout, "the notification after down and up", holdsSent(newAPI(node1)))
}

func readyz(base string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(base + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}
