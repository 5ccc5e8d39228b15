package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herald-notify/herald/internal/loopport"
)

// nodeProc is one Herald node the bench started: `herald serve` as a child
// process, so that its resident memory is its own and its open files do
// not count against the bench's (both under the same 20,000-file limit).
type nodeProc struct {
	url string
	cmd *exec.Cmd
	log *lockedBuffer
	out chan struct{} // closed when the process has exited
}

// started is the nodes selfNodes started: their API's URLs, with
// --profile their profiles' (/debug/pprof/ on a metrics listener of their
// own), the admin's password, and what stops them and removes their data.
type started struct {
	urls, profiles []string
	adminPassword  string
	stop           func()
}

// selfNodes starts n nodes on loopback in a temporary directory and waits
// until every one is ready. Every limit that would throttle the bench is
// lifted: the application and user rates, the per-user quotas, the
// connection caps; loopback receivers are allowed for webPush and webhooks.
func selfNodes(ctx context.Context, o *Options, n int) (started, error) {
	// A port freeAddr found free can be taken before the node binds it,
	// by another process or by an outgoing connection's ephemeral port
	// (the nodes of a cluster dial each other): then start again on
	// fresh ports.
	return onFreshPorts(func() (started, error) { return selfNodesOnce(ctx, o, n) })
}

// onFreshPorts calls start, which picks its ports with freeAddr, up to
// three times while it fails because a port was taken before it was bound.
func onFreshPorts[T any](start func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := start()
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return v, err
		}
	}
}

func selfNodesOnce(ctx context.Context, o *Options, n int) (nodes started, err error) {
	dir, err := os.MkdirTemp("", "herald-bench-*")
	if err != nil {
		return started{}, err
	}
	adminPassword := randomString(18)
	httpAddrs := make([]string, n)
	raftAddrs := make([]string, n)
	profileAddrs := make([]string, n)
	for i := range n {
		if httpAddrs[i], err = freeAddr(); err == nil {
			raftAddrs[i], err = freeAddr()
		}
		if err == nil && o.Profile != "" {
			profileAddrs[i], err = freeAddr()
		}
		if err != nil {
			os.RemoveAll(dir)
			return started{}, err
		}
	}
	var urls []string
	var procs []*nodeProc
	stop := func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.stop()
			}()
		}
		wg.Wait()
		os.RemoveAll(dir)
	}
	for i := range n {
		args := []string{"serve", "--data-dir", filepath.Join(dir, fmt.Sprintf("node%d", i+1)),
			"--http-addr", httpAddrs[i], "--raft-addr", raftAddrs[i], "--node-id", fmt.Sprintf("bench%d", i+1),
			"--log-level", "warn", "--disk-reserve", "64MiB",
			"--app-rate", "0", "--user-rate", "0", "--max-notifications-per-user", "0",
			"--max-subscriptions-per-user", "0", "--max-streams-per-user", "0",
			"--max-conns", "0", "--max-conns-per-ip", "0",
			"--webpush-allow-private", "--webhook-allow-private", "--delivery-per-host", "32"}
		if n > 1 {
			args = append(args, "--bootstrap-expect", strconv.Itoa(n), "--join", strings.Join(httpAddrs, ","))
		}
		if o.Profile != "" {
			// On loopback and for this run only: open, no token.
			args = append(args, "--metrics-addr", profileAddrs[i], "--profiling")
			nodes.profiles = append(nodes.profiles, "http://"+profileAddrs[i]+"/debug/pprof/")
		}
		p, err := startProc(o, args, adminPassword, n > 1)
		if err != nil {
			stop()
			return started{}, err
		}
		procs = append(procs, p)
		p.url = "http://" + httpAddrs[i]
		urls = append(urls, p.url)
	}
	for _, p := range procs {
		if err := p.waitReady(ctx, 90*time.Second); err != nil {
			stop()
			return started{}, err
		}
	}
	nodes.urls, nodes.adminPassword, nodes.stop = urls, adminPassword, stop
	return nodes, nil
}

var clusterKey = randomString(32)

func startProc(o *Options, args []string, adminPassword string, cluster bool) (*nodeProc, error) {
	exe := o.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(exe, args...)
	// The key and the password go by environment, out of `ps`.
	env := []string{"HERALD_ADMIN_PASSWORD=" + adminPassword}
	if cluster {
		env = append(env, "HERALD_CLUSTER_KEY="+clusterKey)
	}
	for _, kv := range os.Environ() {
		// The bench's own settings (HERALD_SERVER, HERALD_PASSWORD...)
		// and any of a server's are not for the bench's node: it runs
		// with exactly the settings above.
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, o.ExeEnv...)
	p := &nodeProc{cmd: cmd, log: &lockedBuffer{}, out: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s serve: %w", exe, err)
	}
	go func() {
		cmd.Wait()
		close(p.out)
	}()
	return p, nil
}

func (p *nodeProc) waitReady(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.out:
			return fmt.Errorf("the bench's %s exited before it was ready: %s\n%s", p.name(), p.cmd.ProcessState, p.log.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the bench's %s at %s was not ready within %s:\n%s", p.name(), p.url, within, p.log.tail())
		}
	}
}

// name is what the process is, for errors: a node, or the fan-out server.
func (p *nodeProc) name() string {
	if len(p.cmd.Args) > 1 && p.cmd.Args[1] == "bench" {
		return "fan-out server"
	}
	return "node"
}

// stop asks for a graceful shutdown and kills the node if it does not end
// (at once where there is no SIGTERM to send: Windows).
func (p *nodeProc) stop() {
	if p.cmd.Process.Signal(syscall.SIGTERM) != nil {
		p.cmd.Process.Kill()
	}
	select {
	case <-p.out:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.out
	}
}

// freeAddr is a loopback address for a node's listener (loopport.Pick: a
// CI run once got one port for a node's HTTP and metrics listeners from
// the kernel's port 0).
func freeAddr() (string, error) { return loopport.Pick() }

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// lockedBuffer keeps a node's log for the error that reports its failure.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		// Keep the end: a failing node's last words matter most.
		rest := append([]byte(nil), b.buf.Bytes()[b.buf.Len()/2:]...)
		b.buf.Reset()
		b.buf.Write(rest)
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}
