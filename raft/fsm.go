// Package raft is Herald's replicated state: the commands, the FSM that
// applies them to Badger, snapshots, and the Store that proposes commands
// through hashicorp/raft with group commit. See DESIGN.md in this folder.
package raft

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/resource"
)

// FSM applies committed entries to Badger. Badger is the state: the last
// applied index is stored with the data, so a restart replays only the log
// entries Badger has not seen and never reloads a snapshot it does not need.
type FSM struct {
	db       *badger.DB
	applied  atomic.Uint64
	onChange func([]resource.Change)
	// onDeliveries is set before Raft starts, so it needs no lock.
	onDeliveries func([]resource.DeliveryRef)
	log          *slog.Logger
	// abort, once closed, makes a snapshot being persisted give up (set
	// before Raft starts).
	abort <-chan struct{}
	// cache is told which cached records each batch wrote (set before
	// Raft starts; nil in tests that use the FSM alone).
	cache *recordCache
	// disk is asked for room before each batch is written (set before
	// Raft starts; nil in tests that use the FSM alone).
	disk *diskGuard
}

func newFSM(db *badger.DB, onChange func([]resource.Change), log *slog.Logger) (*FSM, error) {
	f := &FSM{db: db, onChange: onChange, log: log}
	err := db.View(func(txn *badger.Txn) error {
		v, _, err := getValue(txn, []byte(keyApplied))
		f.applied.Store(getUint64(v))
		return err
	})
	return f, err
}

// Applied is the last Raft index whose effects are in Badger.
func (f *FSM) Applied() uint64 { return f.applied.Load() }

// entry encoding: a format byte, then the commands as a JSON array.
const entryJSON = 'J'

func encodeEntry(cmds []*Command) ([]byte, error) {
	b, err := json.Marshal(cmds)
	if err != nil {
		return nil, err
	}
	return append([]byte{entryJSON}, b...), nil
}

func decodeEntry(data []byte) ([]*Command, error) {
	if len(data) == 0 || data[0] != entryJSON {
		return nil, fmt.Errorf("unknown entry format")
	}
	var cmds []*Command
	err := json.Unmarshal(data[1:], &cmds)
	return cmds, err
}

// Apply applies one entry; hashicorp/raft calls ApplyBatch instead.
func (f *FSM) Apply(l *hraft.Log) any { return f.ApplyBatch([]*hraft.Log{l})[0] }

// ApplyBatch applies committed entries and returns a []Result per entry,
// one Result per command. Each entry commits in its own Badger transaction
// with its index as the applied index, so a crash never leaves an entry's
// effects in Badger without the index that makes its replay a no-op.
func (f *FSM) ApplyBatch(logs []*hraft.Log) []any {
	out := make([]any, len(logs))
	applied := f.applied.Load()
	var need uint64
	for _, l := range logs {
		if l.Index > applied {
			need += uint64(len(l.Data))
		}
	}
	f.disk.roomFor(need) // diskspace.go
	t := newTx(f.db)
	t.cache = f.cache
	defer t.txn.Discard()
	for i, l := range logs {
		if l.Index <= applied {
			continue // replay of an entry Badger already holds
		}
		if l.Type != hraft.LogCommand {
			t.commit(l.Index)
			f.applied.Store(l.Index)
			continue
		}
		cmds, err := decodeEntry(l.Data)
		if err != nil {
			// Every node decodes the same bytes the same way, so skipping is
			// consistent; it can only come from a newer, unknown format.
			f.log.Error("skipping undecodable raft entry", "index", l.Index, "error", err)
			t.commit(l.Index)
			continue
		}
		res := make([]Result, len(cmds))
		for j, c := range cmds {
			res[j] = t.applyOnce(c)
		}
		t.forgetRequests(l.Index, cmds)
		out[i] = res
		t.commit(l.Index)
		f.applied.Store(l.Index)
	}
	if len(t.changes) > 0 && f.onChange != nil {
		f.onChange(t.changes)
	}
	if len(t.deliveries) > 0 && f.onDeliveries != nil {
		f.onDeliveries(t.deliveries)
	}
	return out
}

// Snapshot captures a Badger read transaction, whose view stays fixed while
// later entries apply; Persist streams it.
func (f *FSM) Snapshot() (hraft.FSMSnapshot, error) {
	return &fsmSnapshot{db: f.db, txn: f.db.NewTransaction(false), abort: f.abort}, nil
}

// Restore replaces the whole state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	applied, err := loadSnapshot(f.db, rc)
	f.cache.reset()
	if err != nil {
		return err
	}
	f.applied.Store(applied)
	return nil
}

type fsmSnapshot struct {
	db    *badger.DB
	txn   *badger.Txn
	abort <-chan struct{}
}

func (s *fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	if err := writeSnapshot(s.txn, abortWriter{sink, s.abort}); err != nil {
		sink.Cancel()
		return err
	}
	// The log this snapshot covers is compacted away once it is taken, so
	// everything Badger holds up to it must be on disk first.
	if err := s.db.Sync(); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.txn.Discard() }

// abortWriter fails once abort is closed, so that a snapshot of a large
// state does not hold a shutdown past its deadline.
type abortWriter struct {
	w     io.Writer
	abort <-chan struct{}
}

func (a abortWriter) Write(p []byte) (int, error) {
	select {
	case <-a.abort:
		return 0, errSnapshotAbandoned
	default:
		return a.w.Write(p)
	}
}
