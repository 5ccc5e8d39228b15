package raft

import (
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/prometheus/client_golang/prometheus"
)

// writeGate is the Raft log as the leader's log writes see it: it tells
// the batch loop when a write (an append and an fsync) starts and
// ends, so that the next entry is built once the write ends.
//
// Raft's leader loop writes one dispatch at a time and blocks while it
// does. Before this gate the batch loop built the next entry as soon as
// Raft took the previous one, from whatever had queued in the
// microseconds since, and that entry then waited for the write of the
// previous one to end: most entries carried one command and cost an fsync
// of their own, while the commands that arrived during that fsync waited
// for the next. Building the entry when the write ends instead puts every
// command that queued during it into the next fsync: batches sized by
// load, not by chance.
type writeGate struct {
	// The WAL itself, not an interface: Raft asks the log it writes
	// whether it is monotonic (IsMonotonic), and must hear yes.
	*raftwal.WAL
	mu      sync.Mutex
	started uint64        // log writes started so far
	busy    bool          // a write is under way
	changed chan struct{} // closed and replaced when a write starts or ends
	// hold, when set, runs inside each write before the log is written: a
	// test's way to keep a write under way.
	hold atomic.Pointer[func()]
	// writeTime observes each write (timings.go).
	writeTime prometheus.Histogram
	// recent holds the last entries written, by index modulo its length.
	// Each is read back at once: by a leader's replication for every
	// follower (and as the entry before, for its term), and by a
	// follower's apply; from the WAL each read is a pread and a decode,
	// 2-3 % of each node's CPU under ingest through three nodes
	// (BENCHMARKS.md, 6 December 2026). Raft keeps these entries alive
	// until they are applied anyway. hashicorp/raft's LogCache would do
	// the same but wraps the log's errors in text, and the API answers a
	// full disk (syscall.ENOSPC) by what the error is.
	recentMu sync.RWMutex
	recent   [recentLogs]*hraft.Log
}

// recentLogs is more than the entries a leader has out to a follower at
// once under load (two in flight, at most 64 commands each).
const recentLogs = 64

func newWriteGate(w *raftwal.WAL) *writeGate {
	return &writeGate{WAL: w, changed: make(chan struct{})}
}

// StoreLog and StoreLogs are the only log writes on the commit path.
func (g *writeGate) StoreLog(l *hraft.Log) error { return g.StoreLogs([]*hraft.Log{l}) }

func (g *writeGate) StoreLogs(logs []*hraft.Log) error {
	g.set(true)
	defer g.set(false)
	if h := g.hold.Load(); h != nil {
		(*h)()
	}
	defer since(g.writeTime, time.Now())
	if err := g.WAL.StoreLogs(logs); err != nil {
		return err
	}
	g.recentMu.Lock()
	for _, l := range logs {
		g.recent[l.Index%recentLogs] = l
	}
	g.recentMu.Unlock()
	return nil
}

// DeleteRange forgets the recent entries first: a follower whose log
// conflicts with a new leader's deletes its tail and writes other
// entries at the same indexes.
func (g *writeGate) DeleteRange(min, max uint64) error {
	g.recentMu.Lock()
	g.recent = [recentLogs]*hraft.Log{}
	g.recentMu.Unlock()
	return g.WAL.DeleteRange(min, max)
}

func (g *writeGate) set(busy bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if busy {
		g.started++
	}
	g.busy = busy
	close(g.changed)
	g.changed = make(chan struct{})
}

func (g *writeGate) state() (started uint64, busy bool, changed <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started, g.busy, g.changed
}

// handoverWait bounds how long the batch loop waits for the write of an
// entry Raft took to start. Raft starts it at once unless it dropped the
// entry (it stepped down, or a leadership transfer began), which it says
// through the entry's future, not here; the bound keeps that rare case
// from holding the next entry for long.
const handoverWait = 5 * time.Millisecond

// await returns once the next entry should be built: no log write is under
// way and, when an entry was handed to Raft after `after` writes had
// started, its write has started (and so ended) — the commands queued
// meanwhile then go into the one write after it. False: stop was closed.
func (g *writeGate) await(after uint64, handedOver bool, leader func() bool, stop <-chan struct{}) bool {
	var timeout <-chan time.Time
	for {
		started, busy, changed := g.state()
		if !busy && (!handedOver || started > after) {
			return true
		}
		if !busy && handedOver {
			if !leader() {
				return true
			}
			if timeout == nil {
				t := time.NewTimer(handoverWait)
				defer t.Stop()
				timeout = t.C
			}
		}
		select {
		case <-changed:
		case <-timeout:
			handedOver = false
		case <-stop:
			return false
		}
	}
}
