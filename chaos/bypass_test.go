//go:build linux

package chaos

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The faults are only as real as the proxies: a node that reached another
// node's own port directly would carry its traffic past every cut. Two
// checks make sure none does. While the load runs, a watcher reads each
// node process's open TCP sockets (/proc/PID/fd and /proc/net/tcp) and
// records any connected to another node's Raft or HTTP port rather than
// to a proxy. After the run, every node must have dialed out through a
// proxy and been reached through one (the leader dials its followers,
// followers forward writes to the leader, so whoever led, both hold).

// tcpConn is one socket of /proc/net/tcp.
type tcpConn struct{ local, remote string }

// procSockets maps socket inodes to their endpoints, from /proc/net/tcp
// and /proc/net/tcp6 (the one network namespace all the processes share).
func procSockets() (map[string]tcpConn, error) {
	out := map[string]tcpConn{}
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if err != nil {
			if name == "/proc/net/tcp6" {
				continue
			}
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[9] == "0" {
				continue
			}
			l, err1 := procAddr(fs[1])
			r, err2 := procAddr(fs[2])
			if err1 != nil || err2 != nil {
				continue
			}
			out[fs[9]] = tcpConn{local: l, remote: r}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// procAddr reads /proc/net/tcp's "0100007F:1F90": the address in host
// byte order per 32-bit word, the port in hex.
func procAddr(s string) (string, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return "", fmt.Errorf("address %q", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return "", fmt.Errorf("address %q", s)
	}
	for i := 0; i < len(b); i += 4 { // little-endian words
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return "", fmt.Errorf("port %q", s)
	}
	ip := net.IP(b)
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), strconv.FormatUint(port, 10)), nil
}

// socketsOf is the TCP endpoints process pid holds open.
func socketsOf(pid int, all map[string]tcpConn) ([]tcpConn, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	var out []tcpConn
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		inode, ok := strings.CutPrefix(target, "socket:[")
		if !ok {
			continue
		}
		if c, ok := all[strings.TrimSuffix(inode, "]")]; ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// directPeers lists the connections of process pid that go straight to
// one of the addresses in direct.
func directPeers(pid int, all map[string]tcpConn, direct map[string]string) ([]string, error) {
	socks, err := socketsOf(pid, all)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range socks {
		if what, ok := direct[s.remote]; ok {
			out = append(out, fmt.Sprintf("%s -> %s (%s)", s.local, s.remote, what))
		}
	}
	return out, nil
}

// bypassWatch samples every node's sockets until stopped.
type bypassWatch struct {
	c       *cluster
	stop    chan struct{}
	done    sync.WaitGroup
	mu      sync.Mutex
	samples int
	found   []string
}

func (c *cluster) watchBypass(every time.Duration) *bypassWatch {
	w := &bypassWatch{c: c, stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *bypassWatch) sample() {
	all, err := procSockets()
	if err != nil {
		return
	}
	for i, p := range w.c.nodes {
		direct := map[string]string{}
		for j, q := range w.c.nodes {
			if j != i {
				direct[q.raftAddr] = q.id + "'s Raft port"
				direct[q.httpAddr] = q.id + "'s HTTP port"
			}
		}
		cmd, _ := p.running()
		if cmd == nil || !p.alive() {
			continue
		}
		found, err := directPeers(cmd.Process.Pid, all, direct)
		if err != nil {
			continue // the process exited between the two reads
		}
		w.mu.Lock()
		w.samples++
		for _, f := range found {
			w.found = append(w.found, fmt.Sprintf("%s at %s: %s", p.id, time.Now().Format("15:04:05.000"), f))
		}
		w.mu.Unlock()
	}
}

// finish stops the watcher and checks what it saw and what the proxies
// carried.
func (w *bypassWatch) finish(v *verdict) {
	close(w.stop)
	w.done.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.samples == 0 {
		v.failf("proxy bypass: no node's sockets could be read")
	}
	for i, f := range w.found {
		if i == 10 {
			v.failf("proxy bypass: ... and %d more", len(w.found)-i)
			break
		}
		v.failf("proxy bypass: a node connected to another node directly: %s", f)
	}
	c := w.c
	for i, p := range c.nodes {
		var out, in int64
		for j := range c.nodes {
			if j != i {
				out += c.link[i][j][0].Accepted()
				in += c.link[j][i][0].Accepted()
			}
		}
		if out == 0 {
			v.failf("proxy bypass: %s never dialed another node's Raft port through a proxy", p.id)
		}
		if in == 0 {
			v.failf("proxy bypass: no node reached %s's Raft port through a proxy", p.id)
		}
	}
	v.notes = append(v.notes, fmt.Sprintf("proxy bypass: %d socket samples, %d direct connections", w.samples, len(w.found)))
}
