package raft

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

func TestClassifyPeerError(t *testing.T) {
	for _, tc := range []struct {
		text string
		want PeerFailure
	}{
		{"dial tcp 127.0.0.1:8751: connect: connection refused", PeerUnreachable},
		{"dial tcp 10.0.0.2:8751: connect: no route to host", PeerUnreachable},
		{"read tcp 127.0.0.1:50122->127.0.0.1:8751: read: connection reset by peer", PeerUnreachable},
		{"failed to pipeline appendEntries: use of closed network connection", PeerUnreachable},
		{"failed to heartbeat: raft is already shutdown", PeerUnreachable},
		{"read tcp 127.0.0.1:50122->127.0.0.1:8751: i/o timeout", PeerNotAnswering},
		{"dial tcp 127.0.0.1:8751: i/o timeout", PeerNotAnswering},
		{"context deadline exceeded", PeerNotAnswering},
		// A silent peer mid-handshake is not a wrong key.
		{"raft peer failed cluster-key authentication: read: i/o timeout", PeerNotAnswering},
		// Says the same for a wrong key and a stalled peer: no claim.
		{"raft peer failed cluster-key authentication", PeerFailing},
		{"wrong cluster key", PeerWrongKey},
		{"remote error: tls: bad certificate", PeerWrongKey},
		{"tls: failed to verify certificate: x509: certificate signed by unknown authority", PeerWrongKey},
		{"EOF", PeerUnreachable},
		{"something else entirely", PeerFailing},
	} {
		if got := ClassifyPeerError(tc.text); got != tc.want {
			t.Errorf("ClassifyPeerError(%q) = %s, want %s", tc.text, got, tc.want)
		}
	}
}

// bridgeRig feeds hclog JSON lines to a bridge over a fixed configuration.
type bridgeRig struct {
	mu      sync.Mutex
	out     bytes.Buffer
	servers []hraft.Server
	b       *raftLog
}

func newBridgeRig(servers ...hraft.Server) *bridgeRig {
	r := &bridgeRig{servers: servers}
	log := slog.New(slog.NewTextHandler(lockedWriter{&r.mu, &r.out}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.b = newRaftLog(log, 0, func() []hraft.Server { return r.servers })
	return r
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (r *bridgeRig) write(t *testing.T, level, msg string, kv ...any) {
	t.Helper()
	rec := map[string]any{"@level": level, "@message": msg, "@module": "raft"}
	for i := 0; i+1 < len(kv); i += 2 {
		rec[kv[i].(string)] = kv[i+1]
	}
	b, _ := json.Marshal(rec)
	if _, err := r.b.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

func (r *bridgeRig) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.TrimSpace(r.out.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func voter(id, addr string) hraft.Server {
	return hraft.Server{ID: hraft.ServerID(id), Address: hraft.ServerAddress(addr), Suffrage: hraft.Voter}
}

// A lone voter's election is debug; in a cluster it stays a warning.
func TestBridgeElectionLevel(t *testing.T) {
	alone := newBridgeRig(voter("n1", "127.0.0.1:1"))
	alone.write(t, "warn", "heartbeat timeout reached, starting election", "last-leader-addr", "", "last-leader-id", "")
	if l := alone.lines(); len(l) != 1 || !strings.Contains(l[0], "level=DEBUG") {
		t.Errorf("lone node's election: %q", l)
	}
	three := newBridgeRig(voter("n1", "a:1"), voter("n2", "a:2"), voter("n3", "a:3"))
	three.write(t, "warn", "heartbeat timeout reached, starting election", "last-leader-addr", "a:2", "last-leader-id", "n2")
	if l := three.lines(); len(l) != 1 || !strings.Contains(l[0], "level=WARN") || !strings.Contains(l[0], "last-leader-id=n2") {
		t.Errorf("cluster election: %q", l)
	}
}

// A graceful stop's transport shutdown, the first election of a cluster
// that has never had a leader, and a node waiting for its cluster to form
// are routine: none is an error or a warning an admin should be woken for.
func TestBridgeRoutineStopsAndFirstElections(t *testing.T) {
	r := newBridgeRig(voter("n1", "a:1"), voter("n2", "a:2"), voter("n3", "a:3"))
	r.write(t, "error", "failed to decode incoming command", "error", hraft.ErrTransportShutdown.Error())
	r.write(t, "warn", "heartbeat timeout reached, starting election", "last-leader-addr", "", "last-leader-id", "")
	r.write(t, "error", "failed to decode incoming command", "error", "unknown rpc type 9")
	r.write(t, "warn", "no known peers, aborting election")
	l := r.lines()
	if len(l) != 4 {
		t.Fatalf("lines: %q", l)
	}
	if !strings.Contains(l[0], "level=DEBUG") {
		t.Errorf("transport shutdown: %s", l[0])
	}
	if !strings.Contains(l[1], "level=INFO") {
		t.Errorf("first election: %s", l[1])
	}
	if !strings.Contains(l[2], "level=ERROR") {
		t.Errorf("a real decode error: %s", l[2])
	}
	if !strings.Contains(l[3], "level=INFO") {
		t.Errorf("a node waiting to form or join a cluster: %s", l[3])
	}
}

// A leader that hands its leadership on (a stop, a full disk) sees the
// new leader's term: hashicorp/raft's error line for that is the hand-off
// working, logged at info; a leader deposed otherwise still logs an error.
func TestBridgeHandOffStepDownIsNotAnError(t *testing.T) {
	r := newBridgeRig(voter("n1", "a:1"), voter("n2", "a:2"), voter("n3", "a:3"))
	r.write(t, "error", "peer has newer term, stopping replication", "peer", "n2")
	r.b.handingOff.Store(time.Now().Add(time.Minute).UnixNano())
	r.write(t, "error", "peer has newer term, stopping replication", "peer", "n3")
	l := r.lines()
	if len(l) != 2 || !strings.Contains(l[0], "level=ERROR") || !strings.Contains(l[1], "level=INFO") {
		t.Errorf("lines: %q", l)
	}
}

// raft's state changes carry raft itself as a field, which hclog's JSON
// writes as {}; the line leaves it out rather than print "leader=map[]".
func TestBridgeDropsEmptyFields(t *testing.T) {
	r := newBridgeRig(voter("n1", "a:1"), voter("n2", "a:2"), voter("n3", "a:3"))
	r.write(t, "info", "entering leader state", "leader", map[string]any{})
	r.write(t, "info", "entering follower state", "follower", map[string]any{}, "leader-address", "a:2", "leader-id", "n2")
	l := r.lines()
	if len(l) != 2 {
		t.Fatalf("lines: %q", l)
	}
	for _, line := range l {
		if strings.Contains(line, "map[]") {
			t.Errorf("empty field printed: %s", line)
		}
	}
	if !strings.Contains(l[1], "leader-id=n2") {
		t.Errorf("follower line lost its leader: %s", l[1])
	}
}

// A down peer, heartbeated many times a second and named now by address,
// now by Server, is one line until it answers again, which is one more; a
// peer with another key is an error of its own, told apart.
func TestBridgeThrottlesAndNamesPeerFailures(t *testing.T) {
	r := newBridgeRig(voter("n1", "127.0.0.1:1"), voter("n2", "127.0.0.1:2"), voter("n3", "127.0.0.1:3"))
	refused := "dial tcp 127.0.0.1:2: connect: connection refused"
	for range 20 {
		r.write(t, "error", "failed to heartbeat to", "peer", "127.0.0.1:2", "backoff time", "10ms", "error", refused)
		r.write(t, "error", "failed to appendEntries to", "peer",
			map[string]any{"Suffrage": 0, "ID": "n2", "Address": "127.0.0.1:2"}, "error", refused)
	}
	l := r.lines()
	if len(l) != 1 {
		t.Fatalf("%d lines for 40 failures of one peer, want 1:\n%s", len(l), strings.Join(l, "\n"))
	}
	if !strings.Contains(l[0], "level=WARN") || !strings.Contains(l[0], "peer n2 unreachable") ||
		!strings.Contains(l[0], "peer=n2") || !strings.Contains(l[0], "peer_addr=127.0.0.1:2") {
		t.Errorf("line %q: want a warning naming n2 as unreachable", l[0])
	}
	r.write(t, "error", "failed to heartbeat to", "peer", "127.0.0.1:3", "error",
		"read tcp 127.0.0.1:9->127.0.0.1:3: i/o timeout")
	r.write(t, "error", "failed to make requestVote RPC", "target",
		map[string]any{"Suffrage": 0, "ID": "n3", "Address": "127.0.0.1:3"}, "error", "remote error: tls: bad certificate", "term", 4)
	l = r.lines()
	if len(l) != 3 || !strings.Contains(l[1], "peer n3 not answering") ||
		!strings.Contains(l[2], "level=ERROR") || !strings.Contains(l[2], "peer n3 does not share our cluster key") {
		t.Errorf("want n3 not answering, then a wrong key error:\n%s", strings.Join(l, "\n"))
	}
	r.b.recovered("n2")
	l = r.lines()
	if last := l[len(l)-1]; !strings.Contains(last, "peer n2 answering again") || !strings.Contains(last, "failures=40") {
		t.Errorf("recovery line %q", last)
	}
	// Raft's own info lines are debug, not noise at info.
	r.write(t, "info", "compacting logs", "from", 1, "to", 100)
	l = r.lines()
	if last := l[len(l)-1]; !strings.Contains(last, "level=DEBUG") {
		t.Errorf("raft info line: %q", last)
	}
}
