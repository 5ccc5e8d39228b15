// Package raft is Herald's replicated state: the commands, the FSM that
// applies them to Badger, snapshots, and the Store that proposes commands
// through hashicorp/raft with group commit. See DESIGN.md in this folder.
package raft

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-notify/herald/resource"
)

// FSM applies committed entries to Badger. Badger is the state: the last
// applied index is stored with the data, so a restart replays only the log
// entries Badger has not seen and never reloads a snapshot it does not need.
type FSM struct {
	// hold, when set, runs before each ApplyBatch (tests hold the apply).
	hold    atomic.Pointer[func()]
	db      *badger.DB
	applied appliedIndex
	// published is the last index whose changes went to onChange, which
	// happens before Badger holds them (ApplyBatch); reads wait for
	// applied to reach it (Store.seePublished).
	published atomic.Uint64
	onChange  func([]resource.Change)
	// onDeliveries is set before Raft starts, so it needs no lock.
	onDeliveries func([]resource.DeliveryRef)
	onRevoked    func(principals []string) // likewise
	log          *slog.Logger
	// cache is told which cached records each batch wrote (set before
	// Raft starts; nil in tests that use the FSM alone).
	cache *recordCache
	// disk is asked for room before each batch is written (set before
	// Raft starts; nil in tests that use the FSM alone).
	disk *diskGuard
	// ac is the batches' cache of what sends read (applycache.go).
	ac *applyCache
	// resume is where the replay of an entry committed only in part
	// resumes (parts.go); read at start and after a restore, used once.
	resume partMark
	// limits are Badger's bounds on a transaction, fixed when it opened.
	limits txnLimits
	// applyTime observes each batch (timings.go; nil in tests that use
	// the FSM alone).
	applyTime prometheus.Histogram
	// restoring is set while Restore replaces the state, which reads as
	// empty meanwhile (Store.Identity).
	restoring atomic.Bool
	// lost is set when a Restore dropped the state and did not load the
	// snapshot, until one does (Restore).
	lost atomic.Bool
}

func newFSM(db *badger.DB, onChange func([]resource.Change), log *slog.Logger) (*FSM, error) {
	f := &FSM{db: db, onChange: onChange, log: log, ac: newApplyCache(), limits: limitsOf(db)}
	err := f.loadApplied()
	return f, err
}

// loadApplied reads how far Badger has applied, and where a replay of the
// next entry resumes if only its first parts are there.
func (f *FSM) loadApplied() error {
	return f.db.View(func(txn *badger.Txn) error {
		v, _, err := getValue(txn, []byte(keyApplied))
		if err != nil {
			return err
		}
		applied := getUint64(v)
		f.applied.Store(applied)
		r, _, err := getValue(txn, []byte(keyResume))
		if err != nil {
			return err
		}
		m, err := readMark(r)
		if m.Entry > applied {
			f.resume = m
		}
		return err
	})
}

// Applied is the last Raft index whose effects are in Badger.
func (f *FSM) Applied() uint64 { return f.applied.Load() }

// entry encoding: a format byte, then the commands as a JSON array.
const entryJSON = 'J'

func encodeEntry(cmds []*Command) ([]byte, error) {
	b := make([]byte, 0, 64+600*len(cmds))
	b = append(b, entryJSON, '[')
	for i, c := range cmds {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendCommand(b, c); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

func decodeEntry(data []byte) ([]*Command, error) {
	if len(data) == 0 || data[0] != entryJSON {
		return nil, fmt.Errorf("unknown entry format")
	}
	return DecodeCommands(data[1:])
}

// Apply applies one entry; hashicorp/raft calls ApplyBatch instead.
func (f *FSM) Apply(l *hraft.Log) any { return f.ApplyBatch([]*hraft.Log{l})[0] }

// ApplyBatch applies committed entries and returns a []Result per entry,
// one Result per command. Consecutive entries share one Badger
// transaction, committed with the index of the last entry it holds as the
// applied index, so a crash never leaves an entry's effects in Badger
// without the index that makes its replay a no-op. Sharing it matters
// under load, when Raft hands over many small entries at once: each
// commit is a round trip to Badger's write goroutine. A transaction is
// committed at the entry boundary once it holds commitBytes, so that no
// entry of normal size meets Badger's transaction limit (which would
// commit part of it early: txn.go, flush) because of those before it.
// The applied index moves only once its entry is committed: reads that
// wait for an index (readindex.go) then find its effects.
func (f *FSM) ApplyBatch(logs []*hraft.Log) []any {
	if h := f.hold.Load(); h != nil {
		(*h)() // tests: hold the apply
	}
	if f.lost.Load() {
		// Applied on what is left, an entry would also write the applied
		// index, and the next start would keep the hole for good. A
		// restart loads the snapshot again (catchUpFromSnapshot).
		panic("herald: the state was dropped for a snapshot that did not load, and an entry came to apply on what is left; " +
			"stopping so that the next start loads the snapshot again")
	}
	defer since(f.applyTime, time.Now())
	out := make([]any, len(logs))
	applied := f.applied.Load()
	var need uint64
	for _, l := range logs {
		if l.Index > applied {
			need += uint64(len(l.Data))
		}
	}
	f.disk.roomFor(need) // diskspace.go
	t := newTx(f.db, f.ac)
	t.limits = f.limits
	t.cache = f.cache
	// Each commit opens the next transaction (commitTxn): the one to end is
	// whichever is open when the batch returns, not the first. Left open,
	// it held Badger's read watermark, so no compaction dropped an old
	// version or a deleted key again and Badger kept a record of every
	// later read.
	defer func() { t.txn.Discard() }()
	var pending uint64 // last index written but not yet committed
	commit := func() {
		if pending != 0 {
			t.commit(pending)
			f.applied.Store(pending)
			pending = 0
		}
	}
	var last uint64 // the last entry applied here
	t.done = applied
	for i, l := range logs {
		if l.Index <= applied {
			continue // replay of an entry Badger already holds
		}
		last = l.Index
		newer := 0 // a raise past the rules this binary knows
		if l.Type == hraft.LogCommand {
			cmds, err := decodeEntry(l.Data)
			if err != nil {
				// Every node decodes the same bytes the same way, so
				// skipping is consistent; it can only come from a newer,
				// unknown format.
				f.log.Error("skipping undecodable raft entry", "index", l.Index, "error", err)
			} else {
				res := make([]Result, len(cmds))
				t.entry = l.Index
				skip := 0
				if f.resume.Entry == l.Index {
					// Its first parts are in Badger already (parts.go).
					skip = f.resume.Cmd
					t.resumeAt(f.resume)
					t.marked = true // the mark goes with the entry's end
				}
				for j, c := range cmds {
					t.cmd = j
					if j < skip {
						continue
					}
					if j > skip && t.partDue(40) || j >= skip && bulky(c) && t.written > 0 {
						t.endPart()
					}
					if j == skip && f.resume.Entry == l.Index {
						t.purgeFrom = f.resume.Purge
					}
					res[j] = t.applyOnce(c)
					t.purgeFrom = purgeProgress{}
					if c.Op == OpSetRules && c.Level > RulesLevel {
						newer = c.Level
					}
				}
				t.forgetRequests(l.Index, cmds)
				t.endGroup()
				if t.marked {
					t.del([]byte(keyResume))
				}
				t.marked, t.entry = false, 0
				out[i] = res
			}
		}
		if l.Index >= f.resume.Entry {
			f.resume = partMark{}
		}
		pending, t.done = l.Index, l.Index
		if newer > 0 {
			// Every member said it knows the level when the leader raised
			// it, so this node's binary was replaced by an older one since
			// (or it was rebuilt from an older image under a member's id).
			// Applied under its own rules, the entries from here on would
			// part its state from the others' for good. The raise itself
			// writes what every replica writes; committed, it has the next
			// start refuse the state with the reason (node.Start).
			commit()
			panic(fmt.Sprintf("herald: the cluster raised its rules level to %d, and this binary knows only level %d: "+
				"it would apply the entries from here under older rules than the other nodes; "+
				"stopping: start this node with the release the other nodes run", newer, RulesLevel))
		}
		if t.written >= commitBytes {
			commit()
		}
	}
	if len(t.changes) > 0 && f.onChange != nil {
		// The live streams get the changes before Badger's commit: the
		// entries are committed in Raft, so durable, and a replay after
		// a crash applies them to the same changes. Badger's commit is a
		// round trip to its write goroutine (a few tenths of a
		// millisecond under the latency load), and now and then also
		// Badger starting a new memtable. Reads on this node wait until
		// Badger holds what was published (Store.seePublished): no
		// client finds its feed behind an event it has seen.
		f.published.Store(last)
		f.onChange(t.changes)
	}
	commit()
	if len(t.deliveries) > 0 && f.onDeliveries != nil {
		f.onDeliveries(t.deliveries)
	}
	if len(t.revoked) > 0 && f.onRevoked != nil {
		// After the commit: the streams look their tokens up again.
		f.onRevoked(t.revoked)
	}
	return out
}

// commitBytes is the size of writes after which ApplyBatch commits at the
// next entry boundary: well under Badger's transaction limit (15% of a
// memtable: 1.2 MiB with the default --memory, never under 600 KiB;
// memory.go).
const commitBytes = 128 << 10

// Snapshot records how far Badger's state has applied; Persist makes that
// durable and stores a reference to it (snapstore.go). It runs on the FSM
// goroutine, so the applied index is exactly Raft's snapshot point.
func (f *FSM) Snapshot() (hraft.FSMSnapshot, error) {
	return &fsmSnapshot{db: f.db, applied: f.applied.Load()}, nil
}

// Restore replaces the whole state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.restoring.Store(true)
	defer f.restoring.Store(false)
	applied, err := loadSnapshot(f.db, rc, false)
	f.cache.reset()
	f.ac.reset()
	f.resume = partMark{}
	if errors.Is(err, errStateDropped) {
		// A leader sends the snapshot again; an entry that comes first
		// stops the node instead (ApplyBatch).
		f.lost.Store(true)
		f.log.Error("a snapshot did not load after the state was dropped for it; an entry that comes to apply before one does stops the node", "error", err)
	}
	if err != nil {
		return err
	}
	// A snapshot streamed while an entry was between parts holds its
	// first parts and their mark: the log that follows is the same.
	if err := f.loadApplied(); err != nil {
		return err
	}
	f.lost.Store(false)
	f.published.Store(applied)
	f.applied.Store(applied)
	if level, err := rulesIn(f.db); err == nil && level > RulesLevel {
		// A leader of a newer release sent its state (this node was
		// rebuilt from an older image, or its binary replaced by an older
		// one, and then sent a snapshot). Loaded, it has the next start
		// refuse it with the reason (node.Start); applying the entries
		// that follow under this binary's rules would part this node's
		// state from the others' for good.
		panic(fmt.Sprintf("herald: the snapshot this node was sent holds state under rules level %d, and this binary knows "+
			"only level %d: stopping: start this node with the release the other nodes run", level, RulesLevel))
	}
	return nil
}

type fsmSnapshot struct {
	db      *badger.DB
	applied uint64
}

func (s *fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	// The log this snapshot covers is compacted away once it is taken, so
	// everything Badger holds up to it must be on disk first.
	if err := s.db.Sync(); err != nil {
		sink.Cancel()
		return err
	}
	if err := writeRef(sink, s.applied); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
