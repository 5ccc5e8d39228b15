package raft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/herald-notify/herald/resource"
)

// Errors of Store.Propose that are not a command's own result.
var (
	// ErrNotLeader: this node cannot commit; the caller forwards or answers 503.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrUnknownOutcome: leadership was lost while the entry was in flight; it
	// may or may not be committed. Commands are idempotent, so retry is safe.
	ErrUnknownOutcome = errors.New("raft leadership lost; outcome unknown")
	// ErrClosed: the store is shutting down.
	ErrClosed = errors.New("store closed")
	// ErrTimeout: Raft did not take the entry in time (overloaded); it was
	// not committed.
	ErrTimeout = errors.New("raft did not accept the entry in time")
)

// Options configure a Store.
type Options struct {
	Dir       string // holds badger/, raft.db and snapshots/
	NodeID    string
	RaftAddr  string // bind and advertise address of the Raft transport
	Bootstrap bool   // form a one-node cluster if there is no Raft state yet
	// Layer carries Raft between nodes (the caller's encrypted,
	// authenticated transport, listening on RaftAddr). Nil: plain TCP on
	// RaftAddr, fit only for a lone node (node refuses a second member
	// without a cluster key or certificates).
	Layer hraft.StreamLayer

	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64

	Logger *slog.Logger
	// OnChange receives each committed batch's notification changes, on the
	// FSM goroutine: it must not block.
	OnChange func([]resource.Change)
	// OnDeliveries receives each committed batch's deliveries that have a
	// new message pending, on the FSM goroutine: it must not block.
	OnDeliveries func([]resource.DeliveryRef)
	// ObserveBatch is told the size of every group-committed entry and how
	// long it took to commit and apply.
	ObserveBatch func(commands int, took time.Duration)
}

// Store proposes commands through Raft and reads the applied state from
// Badger.
type Store struct {
	opts      Options
	raft      *hraft.Raft
	fsm       *FSM
	db        *badger.DB
	logStore  *raftboltdb.BoltStore
	transport *hraft.NetworkTransport

	proposals chan *proposal
	inflight  chan *inflight
	closing   chan struct{}
	stopped   chan struct{} // closed once no proposal will be answered
	wg        sync.WaitGroup
	closeOnce sync.Once
	slots     atomic.Pointer[slotCache]
}

type proposal struct {
	cmd  *Command
	done chan Result
}

type inflight struct {
	future hraft.ApplyFuture
	batch  []*proposal
	start  time.Time
}

// maxBatch bounds the commands in one entry, keeping entries well under the
// transport's and Badger's size limits (a command is at most ~70 KiB).
const maxBatch = 128

// Open opens (or creates) the node's storage and starts Raft.
func Open(opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	bopts := badger.DefaultOptions(filepath.Join(opts.Dir, "badger")).
		WithLogger(nil).
		WithSyncWrites(false). // the Raft log is the durable record; see DESIGN.md
		WithNumVersionsToKeep(1).
		WithCompactL0OnClose(true)
	db, err := badger.Open(bopts)
	if err != nil {
		return nil, fmt.Errorf("open badger: %w", err)
	}
	s := &Store{opts: opts, db: db,
		proposals: make(chan *proposal, 4096),
		inflight:  make(chan *inflight, 64),
		closing:   make(chan struct{}),
		stopped:   make(chan struct{})}
	if err := s.startRaft(); err != nil {
		db.Close()
		if s.logStore != nil {
			s.logStore.Close()
		}
		return nil, err
	}
	s.wg.Add(2)
	go s.batchLoop()
	go s.resultLoop()
	return s, nil
}

func (s *Store) startRaft() error {
	o := s.opts
	fsm, err := newFSM(s.db, o.OnChange, o.Logger)
	fsm.onDeliveries = o.OnDeliveries
	if err != nil {
		return err
	}
	s.fsm = fsm
	s.logStore, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(o.Dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{o.Logger},
		DisableTime: true})
	snaps, err := hraft.NewFileSnapshotStoreWithLogger(filepath.Join(o.Dir, "snapshots"), 2, hlog)
	if err != nil {
		return err
	}
	if err := s.catchUpFromSnapshot(snaps); err != nil {
		return err
	}
	if o.Layer != nil {
		s.transport = hraft.NewNetworkTransportWithLogger(o.Layer, 3, 10*time.Second, hlog)
	} else {
		s.transport, err = hraft.NewTCPTransportWithLogger(o.RaftAddr, nil, 3, 10*time.Second, hlog)
	}
	if err != nil {
		return fmt.Errorf("raft transport on %s: %w", o.RaftAddr, err)
	}
	cfg := hraft.DefaultConfig()
	cfg.LocalID = hraft.ServerID(o.NodeID)
	cfg.Logger = hlog
	cfg.NoSnapshotRestoreOnStart = true
	if o.HeartbeatTimeout > 0 {
		cfg.HeartbeatTimeout = o.HeartbeatTimeout
		cfg.LeaderLeaseTimeout = o.HeartbeatTimeout / 2
	}
	if o.ElectionTimeout > 0 {
		cfg.ElectionTimeout = o.ElectionTimeout
	}
	if o.SnapshotInterval > 0 {
		cfg.SnapshotInterval = o.SnapshotInterval
	}
	if o.SnapshotThreshold > 0 {
		cfg.SnapshotThreshold = o.SnapshotThreshold
	}
	cfg.MaxAppendEntries = 256
	// A follower learns that an entry committed from the leader's next
	// AppendEntries, which comes with the next write or, when none follows,
	// after CommitTimeout (50–100 ms by default). A write forwarded by a
	// follower is answered only once the follower has applied it, so that
	// wait is its latency whenever writes pause, and a read barrier on a
	// follower waits for it too; 5 ms costs an idle leader
	// ~200 empty appends a second per follower.
	cfg.CommitTimeout = 5 * time.Millisecond
	if o.Bootstrap {
		has, err := hraft.HasExistingState(s.logStore, s.logStore, snaps)
		if err != nil {
			return err
		}
		if !has {
			conf := hraft.Configuration{Servers: []hraft.Server{{
				ID: cfg.LocalID, Address: s.transport.LocalAddr(), Suffrage: hraft.Voter}}}
			if err := hraft.BootstrapCluster(cfg, s.logStore, s.logStore, snaps, s.transport, conf); err != nil {
				return fmt.Errorf("bootstrap: %w", err)
			}
		}
	}
	s.raft, err = hraft.NewRaft(cfg, s.fsm, s.logStore, s.logStore, snaps, s.transport)
	if err != nil {
		s.transport.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	return nil
}

// catchUpFromSnapshot restores the newest snapshot when Badger is behind it.
// Raft skips snapshot restore at start (Badger is the state), but the log
// before a snapshot is compacted away, so a Badger that lost writes it had
// acknowledged to a snapshot can only be repaired from that snapshot.
func (s *Store) catchUpFromSnapshot(snaps hraft.SnapshotStore) error {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	// The snapshot's Raft index also counts entries that never reach the
	// FSM (a new leader's no-op, barriers); compare with the applied index
	// the snapshot itself holds.
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return err
	}
	applied, err := snapshotApplied(rc)
	rc.Close()
	if err != nil || s.fsm.Applied() >= applied {
		return err
	}
	s.opts.Logger.Warn("storage is behind the newest snapshot; restoring it",
		"applied", s.fsm.Applied(), "snapshot", applied)
	if _, rc, err = snaps.Open(list[0].ID); err != nil {
		return err
	}
	return s.fsm.Restore(rc)
}

// DB is the applied state, for reads.
func (s *Store) DB() *badger.DB { return s.db }

// Raft exposes the Raft instance to cluster management.
func (s *Store) Raft() *hraft.Raft { return s.raft }

// RaftAddr is the address other nodes reach this node's Raft transport at.
func (s *Store) RaftAddr() string { return string(s.transport.LocalAddr()) }

// Applied is the last applied log index.
func (s *Store) Applied() uint64 { return s.fsm.Applied() }

// IsLeader reports whether this node leads.
func (s *Store) IsLeader() bool { return s.raft.State() == hraft.Leader }

// HasState reports whether this node belongs to a cluster configuration:
// it was bootstrapped, or a leader has replicated the configuration to it.
// A node without state neither campaigns nor counts towards a quorum.
func (s *Store) HasState() bool {
	f := s.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// Configuration is the latest Raft configuration this node knows, as id and
// Raft address per voter (HTTP addresses are in Nodes).
func (s *Store) Configuration() ([]NodeRecord, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []NodeRecord
	for _, srv := range f.Configuration().Servers {
		out = append(out, NodeRecord{ID: string(srv.ID), RaftAddr: string(srv.Address)})
	}
	return out, nil
}

// BootstrapCluster makes servers, all voters, the first configuration of a
// node without Raft state. Every one of them may do the same with the same
// list (--bootstrap-expect): identical bootstraps give identical first log
// entries, so whichever of them wins the first election, the logs agree.
// A node that already has state answers ErrAlreadyBootstrapped.
func (s *Store) BootstrapCluster(servers []NodeRecord) error {
	conf := hraft.Configuration{}
	for _, srv := range servers {
		conf.Servers = append(conf.Servers, hraft.Server{ID: hraft.ServerID(srv.ID),
			Address: hraft.ServerAddress(srv.RaftAddr), Suffrage: hraft.Voter})
	}
	err := s.raft.BootstrapCluster(conf).Error()
	if errors.Is(err, hraft.ErrCantBootstrap) {
		return ErrAlreadyBootstrapped
	}
	return err
}

// ErrAlreadyBootstrapped: BootstrapCluster on a node that has Raft state.
var ErrAlreadyBootstrapped = errors.New("this node already belongs to a cluster")

// WaitLeader blocks until the cluster has a leader and this node has applied
// everything the leader had committed when asked (on the leader: a Barrier).
func (s *Store) WaitLeader(ctx context.Context) error {
	for {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			if !s.IsLeader() || s.raft.Barrier(5*time.Second).Error() == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closing:
			return ErrClosed
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Propose commits cmd and returns its result: the value, or the command's
// own *resource.Error, or one of the Store errors.
func (s *Store) Propose(ctx context.Context, cmd *Command) (any, error) {
	p := &proposal{cmd: cmd, done: make(chan Result, 1)}
	select {
	case s.proposals <- p:
	case <-s.closing:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Once queued, wait for the outcome even if ctx ends: the entry may
	// commit, and the caller's error must not claim otherwise.
	r := s.await(p)
	return r.Value, r.Err
}

func (s *Store) await(p *proposal) Result {
	select {
	case r := <-p.done:
		return r
	case <-s.stopped:
		select {
		case r := <-p.done:
			return r
		default:
			return Result{Err: ErrClosed}
		}
	}
}

// ProposeAll commits cmds as Propose commits each, one Result per command.
// They queue back to back, so they share the group commit of the entries
// being built, as the same number of concurrent Propose calls would. A
// command that could not be queued before ctx ended gets ErrTimeout: it was
// not committed.
func (s *Store) ProposeAll(ctx context.Context, cmds []*Command) []Result {
	out := make([]Result, len(cmds))
	queued := make([]*proposal, len(cmds))
	for i, c := range cmds {
		p := &proposal{cmd: c, done: make(chan Result, 1)}
		select {
		case s.proposals <- p:
			queued[i] = p
		case <-s.closing:
			out[i] = Result{Err: ErrClosed}
		case <-ctx.Done():
			out[i] = Result{Err: fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())}
		}
	}
	for i, p := range queued {
		if p != nil {
			out[i] = s.await(p)
		}
	}
	return out
}

// batchLoop is the group commit: every proposal that queued while the
// previous entry was being handed to Raft goes into the next entry.
func (s *Store) batchLoop() {
	defer s.wg.Done()
	defer close(s.inflight)
	for {
		var first *proposal
		select {
		case first = <-s.proposals:
		case <-s.closing:
			s.failQueued()
			return
		}
		batch := []*proposal{first}
	drain:
		for len(batch) < maxBatch {
			select {
			case p := <-s.proposals:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		cmds := make([]*Command, len(batch))
		for i, p := range batch {
			cmds[i] = p.cmd
		}
		data, err := encodeEntry(cmds)
		if err != nil {
			finish(batch, Result{Err: err})
			continue
		}
		start := time.Now()
		f := s.raft.Apply(data, 10*time.Second)
		s.inflight <- &inflight{future: f, batch: batch, start: start}
	}
}

func (s *Store) failQueued() {
	for {
		select {
		case p := <-s.proposals:
			p.done <- Result{Err: ErrClosed}
		default:
			return
		}
	}
}

// resultLoop hands each entry's results back in commit order, so the batch
// loop can pipeline the next entry without waiting.
func (s *Store) resultLoop() {
	defer s.wg.Done()
	for in := range s.inflight {
		err := in.future.Error()
		if err != nil {
			finish(in.batch, Result{Err: raftError(err)})
			continue
		}
		if s.opts.ObserveBatch != nil {
			s.opts.ObserveBatch(len(in.batch), time.Since(in.start))
		}
		res, _ := in.future.Response().([]Result)
		for i, p := range in.batch {
			if i < len(res) {
				p.done <- res[i]
			} else {
				p.done <- Result{Err: errors.New("raft entry produced no result")}
			}
		}
	}
}

func finish(batch []*proposal, r Result) {
	for _, p := range batch {
		p.done <- r
	}
}

func raftError(err error) error {
	switch {
	case errors.Is(err, hraft.ErrNotLeader):
		return ErrNotLeader
	case errors.Is(err, hraft.ErrLeadershipLost), errors.Is(err, hraft.ErrLeadershipTransferInProgress):
		return ErrUnknownOutcome
	case errors.Is(err, hraft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, hraft.ErrEnqueueTimeout):
		return ErrTimeout
	}
	return err
}

// Backup streams a consistent copy of the applied state.
func (s *Store) Backup(w io.Writer) error { return WriteBackup(s.db, w) }

// Close stops proposing, shuts Raft down (finishing what it was applying)
// and closes the stores. In-flight proposals get their outcome first.
func (s *Store) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		close(s.closing)
		s.wg.Wait()
		close(s.stopped)
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, s.transport.Close(), s.logStore.Close(), s.db.Close())
	})
	return errors.Join(errs...)
}

// Restore loads a backup into an empty data directory, for `herald restore`:
// the state is loaded into Badger and the Raft log starts fresh, so the node
// comes up as a new one-node cluster holding the backup's data.
func Restore(dir string, r io.Reader) error {
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); err == nil {
		return fmt.Errorf("%s already holds a node's data; restore needs an empty directory", dir)
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "badger")).WithLogger(nil))
	if err != nil {
		return err
	}
	if _, err := loadSnapshot(db, r); err != nil {
		db.Close()
		return err
	}
	// A fresh log starts at index 1: the applied index must not skip it.
	err = db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(keyApplied), putUint64(0)) })
	return errors.Join(err, db.Close())
}

// slogWriter sends hashicorp/raft's log lines to the node's slog logger, so
// they follow its level, format and destination.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	switch {
	case strings.HasPrefix(line, "[ERROR]"):
		level = slog.LevelError
	case strings.HasPrefix(line, "[WARN]"):
		level = slog.LevelWarn
	}
	w.log.Log(context.Background(), level, strings.TrimSpace(line[strings.Index(line, "]")+1:]))
	return len(p), nil
}
