package raft

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/internal/logthrottle"
)

// raftLog receives hashicorp/raft's log (hclog, in its JSON format, one
// object a line) and rewrites it for an operator: a lone node's own
// election is not a warning; a failing peer is named, and its failure told
// apart (not running, not answering, wrong key); and a failure that repeats
// with every heartbeat is logged once, then once a minute with a count, and
// once when the peer answers again.
type raftLog struct {
	log      *slog.Logger
	throttle *logthrottle.Logger
	// servers is the latest Raft configuration, read without waiting on
	// Raft's loop (the log is written from inside it); nil or empty while
	// Raft is not running yet.
	servers func() []hraft.Server
	// handingOff is when (Unix ns) a hand-off of the leadership that this
	// node asked for stops explaining its own step-down (Store.HandOff).
	handingOff atomic.Int64
}

func newRaftLog(log *slog.Logger, every time.Duration, servers func() []hraft.Server) *raftLog {
	return &raftLog{log: log, throttle: logthrottle.New(log, every), servers: servers}
}

// Write takes one or more hclog JSON lines.
func (b *raftLog) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(p, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			b.log.Info("raft: " + string(line))
			continue
		}
		b.record(rec)
	}
	return len(p), nil
}

// record handles one decoded line.
func (b *raftLog) record(rec map[string]any) {
	msg, _ := rec["@message"].(string)
	lvl, _ := rec["@level"].(string)
	delete(rec, "@message")
	delete(rec, "@level")
	delete(rec, "@module")
	delete(rec, "@timestamp")
	level := slog.LevelDebug // raft's info lines are its internals
	switch lvl {
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}

	switch msg {
	case "heartbeat timeout reached, starting election":
		// Every start of a node that was, or is alone a voter, elects
		// itself: expected, not a warning. In a real cluster it means the
		// leader went quiet, which an operator wants to see.
		if b.alone() {
			level = slog.LevelDebug
		} else if id, _ := rec["last-leader-id"].(string); id == "" && level == slog.LevelWarn {
			// No leader was ever heard: the first election of a cluster
			// that forms or restarts, which every start of one logs.
			level = slog.LevelInfo
		}
		b.log.LogAttrs(context.Background(), level, "raft: no leader heard within the heartbeat timeout; starting an election",
			attrs(rec)...)
		return
	case "Election timeout reached, restarting election":
		// A lone voter only misses its own election when the machine is
		// too slow to persist its vote in time; it is not a cluster event.
		if b.alone() {
			level = slog.LevelDebug
		}
	case "entering leader state", "election won", "entering follower state":
		if !b.alone() {
			level = slog.LevelInfo
		}
		b.log.LogAttrs(context.Background(), level, "raft: "+msg, attrs(rec)...)
		return
	case "found temporary snapshot":
		// Listing snapshots while one is being written (LogStats, the
		// start and stop snapshots ask) finds its temporary directory.
		level = slog.LevelDebug
	case "no known peers, aborting election":
		// A node waiting for the others of --bootstrap-expect, or to be
		// let into a cluster, has no configuration yet: that is the wait
		// the node already reports, not a fault.
		level = slog.LevelInfo
	case "failed to decode incoming command":
		// A command that arrived while this node's own transport was
		// shutting down: part of every graceful stop, not an error.
		if e, _ := rec["error"].(string); e == hraft.ErrTransportShutdown.Error() {
			level = slog.LevelDebug
		}
	case "peer has newer term, stopping replication":
		// The leader handed its leadership on (a stop, a full disk): the
		// peer's newer term is the hand-off working, not a deposed leader.
		if time.Now().UnixNano() < b.handingOff.Load() {
			level = slog.LevelInfo
		}
	case "appendEntries rejected, sending older logs":
		// A new or lagging follower being caught up: routine.
		level = slog.LevelDebug
	case "failed to take snapshot":
		// Our own snapshots at start and stop ask whether one is due;
		// that none is, is not a failure.
		if e, _ := rec["error"].(string); strings.Contains(e, hraft.ErrNothingNewToSnapshot.Error()) {
			level = slog.LevelDebug
		}
	}
	if level < slog.LevelWarn {
		b.log.LogAttrs(context.Background(), level, "raft: "+msg, attrs(rec)...)
		return
	}

	if id, addr, ok := b.peer(rec); ok {
		b.peerFailure(level, msg, id, addr, rec)
		return
	}
	// Any other warning or error is throttled by its text, so that nothing
	// raft repeats in a loop floods the log.
	b.throttle.Fail(logthrottle.Key{Subject: "raft", Kind: msg}, level, "raft: "+msg, attrs(rec)...)
}

// peerFailure logs a failed call to a peer, keyed by (peer, kind of
// failure).
func (b *raftLog) peerFailure(level slog.Level, msg, id, addr string, rec map[string]any) {
	errText, _ := rec["error"].(string)
	what := strings.TrimSuffix(strings.TrimSuffix(msg, " to"), " RPC")
	if errText == "" {
		if msg != "failed to contact" {
			b.throttle.Fail(logthrottle.Key{Subject: id, Kind: msg}, level, "raft: "+msg, peerAttrs(id, addr, rec)...)
			return
		}
		// The leader's lease check: the peer has not answered for longer
		// than the lease. For a peer already reported failing that is no
		// news; for one whose calls just hang (paused), it is the first.
		if b.throttle.Failing(id) {
			b.log.LogAttrs(context.Background(), slog.LevelDebug, "raft: "+msg, peerAttrs(id, addr, rec)...)
			return
		}
		kind := PeerNotAnswering
		text := fmt.Sprintf("raft: peer %s %s: %s", id, kind.describe(), what)
		b.throttle.Fail(logthrottle.Key{Subject: id, Kind: string(kind)}, slog.LevelWarn, text,
			peerAttrs(id, addr, rec)...)
		return
	}
	kind := ClassifyPeerError(errText)
	if kind == PeerWrongKey {
		level = slog.LevelError // a configuration mistake; it will not heal by itself
	} else {
		level = slog.LevelWarn // the cluster carries on while a quorum remains
	}
	text := fmt.Sprintf("raft: peer %s %s: %s: %s", id, kind.describe(), what, errText)
	b.throttle.Fail(logthrottle.Key{Subject: id, Kind: string(kind)}, level, text, peerAttrs(id, addr, rec)...)
}

// recovered notes that peer answers heartbeats again.
func (b *raftLog) recovered(id string) {
	b.throttle.Recover(id, "raft: peer "+id+" answering again", slog.String("peer", id))
}

// alone reports whether this node is the only voter it knows of (a lone
// node, or one that has not joined yet).
func (b *raftLog) alone() bool {
	voters := 0
	for _, s := range b.servers() {
		if s.Suffrage == hraft.Voter {
			voters++
		}
	}
	return voters <= 1
}

// peer finds the peer a line is about (raft names it by a Server, an
// address or an id, under "peer", "target" or "server-id") and resolves it
// to its id and address through the configuration.
func (b *raftLog) peer(rec map[string]any) (id, addr string, ok bool) {
	for _, field := range []string{"peer", "target", "server-id"} {
		switch v := rec[field].(type) {
		case map[string]any:
			id, _ = v["ID"].(string)
			addr, _ = v["Address"].(string)
		case string:
			id, addr = v, v
		default:
			continue
		}
		delete(rec, field)
		for _, s := range b.servers() {
			if string(s.ID) == id || string(s.Address) == addr {
				return string(s.ID), string(s.Address), true
			}
		}
		return id, addr, id != ""
	}
	return "", "", false
}

// PeerFailure is what an operator needs to know of a failed connection to
// another node.
type PeerFailure string

const (
	// PeerUnreachable: nothing accepts connections at the peer's address
	// (not running, wrong address, or a firewall that rejects), or the
	// peer closed the connection (it is stopping).
	PeerUnreachable PeerFailure = "unreachable"
	// PeerNotAnswering: the connection is there but no answer comes in
	// time (the process is paused or overloaded, or packets are dropped).
	PeerNotAnswering PeerFailure = "not-answering"
	// PeerWrongKey: the peer answered but the two sides do not share a
	// cluster key (or certificate authority).
	PeerWrongKey PeerFailure = "wrong-key"
	// PeerFailing: any other error.
	PeerFailing PeerFailure = "failing"
)

func (k PeerFailure) describe() string {
	switch k {
	case PeerUnreachable:
		return "unreachable (connection refused or closed, or its name does not resolve: is it running, at that address?)"
	case PeerNotAnswering:
		return "not answering (connected, but no reply in time: paused, overloaded or cut off)"
	case PeerWrongKey:
		return "does not share our cluster key (check --cluster-key on both nodes)"
	}
	return "failing"
}

// ClassifyPeerError tells apart, from an error's text, a peer that is not
// running, one that does not answer in time, and one with another key.
// Transports change their words, so this is the one place to teach new
// ones. Checked in order: a timeout inside an authentication step is a
// silent peer, not a wrong key, so timeouts come first.
func ClassifyPeerError(text string) PeerFailure {
	patterns := []struct {
		kind  PeerFailure
		texts []string
	}{
		{PeerNotAnswering, []string{"i/o timeout", "deadline exceeded", "timed out", "timeout", "handshake in time"}},
		{PeerUnreachable, []string{"peer unreachable", "connection refused", "no route to host", "host is down", "network is unreachable",
			"no such host", "connection reset", "broken pipe", "eof",
			// Raft's pipeline to a peer that went away: its connection
			// was closed on this side after the peer's end failed.
			"use of closed network connection",
			// A peer that is stopping answers a heartbeat so once its
			// Raft has shut down (pipeline.go, heartbeatGate).
			"raft is already shutdown"}},
		// The inter-node transport (cluster/transport.go) names a wrong
		// key and an untrusted certificate; TLS alerts say so too.
		{PeerWrongKey, []string{"wrong cluster key", "not trusted", "cluster key mismatch", "bad certificate", "unknown certificate",
			"certificate signed by unknown authority", "certificate required", "handshake failure", "decrypt error",
			"tls: ", "x509: "}},
	}
	t := strings.ToLower(text)
	for _, p := range patterns {
		for _, s := range p.texts {
			if strings.Contains(t, s) {
				return p.kind
			}
		}
	}
	return PeerFailing
}

func peerAttrs(id, addr string, rec map[string]any) []slog.Attr {
	out := []slog.Attr{slog.String("peer", id)}
	if addr != "" && addr != id {
		out = append(out, slog.String("peer_addr", addr))
	}
	return append(out, attrs(rec)...)
}

// attrs turns the remaining fields into slog attributes, in a stable order.
func attrs(rec map[string]any) []slog.Attr {
	keys := make([]string, 0, len(rec))
	for k := range rec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		v := rec[k]
		// raft passes itself as a field of its state changes ("entering
		// leader state" leader=r), which hclog's JSON writes as {}:
		// "leader=map[]" said nothing to the reader.
		if m, ok := v.(map[string]any); ok && len(m) == 0 {
			continue
		}
		// hclog writes a time.Duration as its nanoseconds.
		if f, ok := v.(float64); ok && isDurationField(k) {
			v = time.Duration(f).Round(time.Millisecond)
		}
		out = append(out, slog.Any(k, v))
	}
	return out
}

// isDurationField reports whether raft logs field k as a time.Duration.
func isDurationField(k string) bool {
	return k == "time" || k == "backoff time" || k == "last-contact"
}
