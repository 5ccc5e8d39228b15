//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/faultproxy"
)

const (
	adminPassword = "chaos-admin-password"
	// clusterKey is any 32 characters or more; the nodes only compare it.
	clusterKey = "chaos-harness-cluster-key-0123456789abcdef"
	// readyTimeout bounds a node's start and a cluster's recovery; a
	// healthy run never waits it out.
	readyTimeout = 90 * time.Second
)

// buildHerald builds the real binary into dir, from the repository root
// (the parent of this package's directory, where go test runs).
func buildHerald(dir string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root := filepath.Dir(wd)
	bin := filepath.Join(dir, "herald")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// proc is one herald node: its fixed addresses and data, and the process
// running now (replaced at every restart).
type proc struct {
	idx                int
	id                 string
	httpAddr, raftAddr string
	url                string
	dataDir            string
	logPath            string
	args               []string
	// disk is the small filesystem under dataDir, on the one node that
	// has its own (disk_test.go); nil on the others.
	disk *smallDisk

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // SIGSTOPped
	starts  int
}

// cluster is three nodes and the proxies of every directed link: link[i][j]
// carries what node i dials at node j (its Raft port and its HTTP port,
// which --join asks at start-up).
type cluster struct {
	t      *testing.T
	bin    string
	nodes  []*proc
	link   [][]faultproxy.Group
	bypass *bypassWatch
	// diskNode is the node whose data directory is on a small filesystem
	// the harness fills; -1 when none could be mounted (outside CI).
	diskNode int
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCluster starts three nodes that form one cluster through the
// proxies, and waits until every node is ready. Node diskNode (if >= 0)
// keeps its data on a small filesystem of its own, for the full-disk fault.
func startCluster(t *testing.T, bin string, n, diskNode int) *cluster {
	c := &cluster{t: t, bin: bin, diskNode: -1}
	dir := t.TempDir()
	for i := range n {
		p := &proc{idx: i, id: fmt.Sprintf("n%d", i+1), httpAddr: freeAddr(t), raftAddr: freeAddr(t),
			dataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)), logPath: filepath.Join(dir, fmt.Sprintf("n%d.log", i+1))}
		p.url = "http://" + p.httpAddr
		if i == diskNode {
			if p.disk = mountSmallDisk(t); p.disk != nil {
				p.dataDir = filepath.Join(p.disk.dir, "data")
				c.diskNode = i
			}
		}
		c.nodes = append(c.nodes, p)
	}
	// The nodes' ports were free when picked but are not bound yet: a
	// proxy on port 0 could be given one of them.
	taken := map[string]bool{}
	for _, p := range c.nodes {
		taken[p.httpAddr], taken[p.raftAddr] = true, true
	}
	c.link = make([][]faultproxy.Group, n)
	for i := range n {
		c.link[i] = make([]faultproxy.Group, n)
		for j := range n {
			if i == j {
				continue
			}
			for _, target := range []string{c.nodes[j].raftAddr, c.nodes[j].httpAddr} {
				px, err := faultproxy.New(target)
				for err == nil && taken[px.Addr()] {
					px.Close()
					px, err = faultproxy.New(target)
				}
				if err != nil {
					t.Fatal(err)
				}
				c.link[i][j] = append(c.link[i][j], px)
			}
		}
	}
	var join []string
	for _, p := range c.nodes {
		join = append(join, p.httpAddr)
	}
	for i, p := range c.nodes {
		var via []string
		for j, q := range c.nodes {
			if i != j {
				via = append(via, q.raftAddr+"="+c.link[i][j][0].Addr(), q.httpAddr+"="+c.link[i][j][1].Addr())
			}
		}
		p.args = []string{"serve", "--node-id", p.id, "--data-dir", p.dataDir, "--http-addr", p.httpAddr,
			"--raft-addr", p.raftAddr, "--bootstrap-expect", fmt.Sprint(n), "--join", strings.Join(join, ","),
			"--cluster-key", clusterKey, "--peer-dial", strings.Join(via, ","),
			"--webhook-allow-private", "--delivery-min-backoff", "100ms", "--delivery-max-backoff", "2s",
			"--app-rate", "0", "--user-rate", "0", "--max-conns-per-ip", "0"}
		if p.disk != nil {
			p.args = append(p.args, "--disk-reserve", p.disk.reserveFlag())
		}
	}
	t.Cleanup(func() {
		for _, p := range c.nodes {
			p.kill()
		}
		for _, row := range c.link {
			for _, g := range row {
				g.Close()
			}
		}
		if t.Failed() {
			for _, p := range c.nodes {
				t.Logf("--- last lines of %s's log (%s) ---\n%s", p.id, p.logPath, tail(p.logPath, 40))
			}
		}
	})
	c.bypass = c.watchBypass(250 * time.Millisecond)
	for _, p := range c.nodes {
		if err := p.start(bin); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.waitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	return c
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func (p *proc) start(bin string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(log, "=== chaos: start %d of %s\n", p.starts, p.id)
	cmd := exec.Command(bin, p.args...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "HERALD_ADMIN_PASSWORD="+adminPassword)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", p.id, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		log.Close()
		close(exited)
	}()
	p.cmd, p.exited, p.stopped = cmd, exited, false
	return nil
}

func (p *proc) running() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.exited
}

// kill ends the process with SIGKILL, as a crash or a power loss would.
func (p *proc) kill() {
	cmd, exited := p.running()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// terminate asks the process to shut down (SIGTERM) and waits; past the
// timeout it is killed, and the error says so.
func (p *proc) terminate(timeout time.Duration) error {
	cmd, exited := p.running()
	p.signal(syscall.SIGCONT) // a stopped process cannot shut down
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM", p.id, timeout)
	}
}

func (p *proc) signal(s syscall.Signal) {
	cmd, _ := p.running()
	if cmd != nil {
		cmd.Process.Signal(s)
	}
}

func (p *proc) alive() bool {
	_, exited := p.running()
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

var probe = &http.Client{Timeout: 2 * time.Second}

func (p *proc) ready() error {
	if !p.alive() {
		return fmt.Errorf("%s: the process exited", p.id)
	}
	resp, err := probe.Get(p.url + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s /readyz: %s", p.id, resp.Status)
	}
	return nil
}

// waitReady polls every node's /readyz until all answer 200.
func (c *cluster) waitReady(timeout time.Duration) error {
	return pollFor(timeout, func() error {
		for _, p := range c.nodes {
			if err := p.ready(); err != nil {
				return err
			}
		}
		return nil
	})
}

// pollFor calls f until it returns nil, or returns f's last error once the
// timeout has passed.
func pollFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leader asks the nodes for the leader's index, -1 if none knows one.
func (c *cluster) leader(adminToken string) int {
	for _, p := range c.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var st struct {
			LeaderID string `json:"leaderId"`
		}
		err := getJSON(ctx, p.url+"/v1.0/admin/cluster", adminToken, nil, &st)
		cancel()
		if err != nil {
			continue
		}
		for i, q := range c.nodes {
			if q.id == st.LeaderID {
				return i
			}
		}
	}
	return -1
}

// linksOf is every proxy on a link from or to node i.
func (c *cluster) linksOf(i int) faultproxy.Group {
	var g faultproxy.Group
	for j := range c.nodes {
		g = append(g, c.link[i][j]...)
		g = append(g, c.link[j][i]...)
	}
	return g
}

// allLinks is every proxy.
func (c *cluster) allLinks() faultproxy.Group {
	var g faultproxy.Group
	for _, row := range c.link {
		for _, l := range row {
			g = append(g, l...)
		}
	}
	return g
}

// healAll clears every fault of the network and resumes stopped nodes.
func (c *cluster) healAll() {
	c.allLinks().Heal()
	for _, p := range c.nodes {
		p.signal(syscall.SIGCONT)
	}
}

// getJSON GETs url with a bearer token and extra headers and decodes a 200.
func getJSON(ctx context.Context, u, token string, hdr map[string]string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := probe.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("GET %s: %s %s", u, resp.Status, e.Error.Message)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// token signs in by the password or client-credentials grant.
func token(base string, form url.Values) (string, error) {
	resp, err := probe.PostForm(base+"/oauth2/v2.0/token", form)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.AccessToken == "" {
		return "", errors.Join(fmt.Errorf("token: %s", resp.Status), err)
	}
	return out.AccessToken, nil
}
