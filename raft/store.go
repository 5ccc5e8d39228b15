package raft

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"

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
	Dir       string // holds badger/, raft-wal/ and snapshots/
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
	// OnRevoked receives, after each committed batch that revoked tokens
	// (a session ended, a password changed, an account disabled or
	// deleted), their principals, on the FSM goroutine: it must not
	// block. A principal may be named more than once. Tokens that expire
	// or a refresh uses up are not revoked.
	OnRevoked func(principals []string)
	// ObserveBatch is told the size of every group-committed entry and how
	// long it took to commit and apply.
	ObserveBatch func(commands int, took time.Duration)
	// DiskReserve is the free space on Dir's filesystem below which writes
	// that add data are refused with 507 (diskspace.go); nil is none (the
	// node always sets it; DefaultDiskReserve is its default).
	DiskReserve *DiskReserve
	// Memory is Badger's budget for memtables and caches in bytes
	// (memory.go); 0 is DefaultMemory.
	Memory uint64
	// FreeSpace, when set, replaces statfs of Dir (free and total bytes):
	// a seam for tests that cannot mount a small filesystem.
	FreeSpace func() (free, total uint64, err error)

	// noShutdownSnapshot leaves the start-up snapshot alone to keep the
	// log short, for its test.
	noShutdownSnapshot bool
	// waveWait and waveWindow replace the wave's wait and the time after
	// an entry's results that a wave is due (waveWait both), and onWave is
	// called as a batch starts to wait for its wave: for their tests.
	waveWait, waveWindow time.Duration
	onWave               func()
}

// Store proposes commands through Raft and reads the applied state from
// Badger.
type Store struct {
	opts Options
	raft *hraft.Raft
	fsm  *FSM
	db   *badger.DB
	// identity is the cluster's identity as last read (rules.go).
	identity atomic.Pointer[Identity]
	logStore *raftwal.WAL
	beats    *heartbeatGate // Raft's heartbeats under way (pipeline.go)
	// gate is the log store as Raft writes it (logwrite.go).
	gate      *writeGate
	transport *hraft.NetworkTransport

	proposals chan *proposal
	inflight  chan *inflight
	// unapplied counts entries handed to Raft whose results are not back;
	// applied is signalled each time one comes back (group commit).
	unapplied atomic.Int64
	applied   chan struct{}
	// answeredAt is when the last entry's results began to go out (Unix ns).
	answeredAt atomic.Int64
	closing    chan struct{}
	stopped    chan struct{} // closed once no proposal will be answered
	wg         sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error

	// live is the running Raft, for the log bridge, which raft calls from
	// its own goroutines, possibly before NewRaft has returned.
	live atomic.Pointer[hraft.Raft]
	rlog *raftLog
	// transferMu makes leadership hand-offs one at a time (transfer).
	transferMu sync.Mutex
	snaps      hraft.SnapshotStore
	// snapshotting counts the start-up snapshot, which Shutdown waits for.
	snapshotting sync.WaitGroup
	disk         *diskGuard
	// cache holds decoded records the FSM invalidates (cache.go).
	cache *recordCache
	// timings are this store's stages of a write (timings.go).
	timings *timings
	// buildersReleased counts the table builders' allocators released
	// instead of pooled (builderpool.go).
	buildersReleased atomic.Int64
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

// maxUnapplied bounds the entries between Raft and their results: one
// being applied and the next being written and committed. Without it the
// loop hands Raft a new entry at every log write, and with a log write of
// a third of a millisecond that is one entry per command even under load;
// every entry costs the leader, the FSM and (in a cluster) the followers
// its own overhead. Bounded, the commands that arrive while an entry is
// applied go into the next one: batches grow with the load, and an idle
// node still writes a lone command at once.
const maxUnapplied = 2

// Open opens (or creates) the node's storage and starts Raft.
func Open(opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	var reserve DiskReserve
	if opts.DiskReserve != nil {
		reserve = *opts.DiskReserve
	}
	disk := newDiskGuard(opts.Dir, reserve, opts.FreeSpace, opts.Logger)
	// Said before Badger and Raft open, which write on a nearly full disk
	// too (replay, a new memtable): the operator reads why in the log.
	if st := disk.check(); st.Err == nil && reserve != (DiskReserve{}) && st.Free < minStartRoom {
		return nil, fmt.Errorf("the disk holding %s is full (%s free): Herald needs at least %s free to open its storage, "+
			"which it writes through memory-mapped files; free space on that disk and start again", opts.Dir, mib(st.Free), mib(minStartRoom))
	}
	bopts := badgerOptions(opts.Dir, opts.Memory)
	if err := dropEmptyLogs(bopts.Dir, opts.Logger); err != nil {
		return nil, err
	}
	t0 := time.Now()
	db, err := badger.Open(bopts)
	if err != nil {
		return nil, fmt.Errorf("open badger: %w", err)
	}
	opts.Logger.Debug("opened badger", "took", time.Since(t0).Round(time.Millisecond))
	disk.check() // backs the memtable log Badger just made, if there is room
	s := &Store{opts: opts, db: db, timings: newTimings(), beats: &heartbeatGate{},
		proposals: make(chan *proposal, 4096),
		inflight:  make(chan *inflight, 64),
		applied:   make(chan struct{}, 1),
		closing:   make(chan struct{}),
		stopped:   make(chan struct{}),
		disk:      disk, cache: newRecordCache(viewCacheBytes(opts.Memory))}
	if drainsBuilders(opts.Memory) && !drainBuilderPool(db, &s.buildersReleased) {
		opts.Logger.Warn("this Badger keeps its table builders' memory pooled: Herald did not find the pool where it looks for it, " +
			"so a node under a write load may hold 50-80 MiB more than it would")
	}
	if err := s.startRaft(); err != nil {
		db.Close()
		if s.logStore != nil {
			s.logStore.Close()
		}
		return nil, err
	}
	opts.Logger.Debug("raft started", "took", time.Since(t0).Round(time.Millisecond), "last_index", s.raft.LastIndex(),
		"snapshot_index", s.LogStats().SnapshotIndex)
	s.wg.Add(3)
	go s.batchLoop()
	go s.resultLoop()
	go s.observePeers()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.disk.watch(s.closing) }()
	s.snapshotting.Add(2)
	go s.snapshotAfterReplay()
	go s.compactAfterRestore()
	return s, nil
}

func (s *Store) startRaft() error {
	o := s.opts
	fsm, err := newFSM(s.db, o.OnChange, o.Logger)
	if err != nil {
		return err
	}
	fsm.onDeliveries = o.OnDeliveries
	fsm.onRevoked = o.OnRevoked
	fsm.cache = s.cache
	fsm.disk = s.disk
	fsm.applyTime = s.timings.fsmApply
	s.disk.stop = s.closing
	s.fsm = fsm
	// JSON lines, so that the bridge reads raft's fields rather than
	// parsing its text (raftlog.go).
	s.rlog = newRaftLog(o.Logger, time.Minute, s.servers)
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Info, Output: s.rlog,
		JSONFormat: true, DisableTime: true})
	s.logStore, err = openLogStore(o.Dir, hlog)
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	if err := dropCrashLeftovers(o.Dir, o.Logger); err != nil {
		return err
	}
	files, err := hraft.NewFileSnapshotStoreWithLogger(filepath.Join(o.Dir, "snapshots"), 2, hlog)
	if err != nil {
		return err
	}
	snaps := &snapshotStore{FileSnapshotStore: files, db: s.db}
	s.snaps = snaps
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
	// A leader that removes itself steps down instead of shutting Raft
	// down: shut down, the process served on with a dead Raft, and a
	// "cluster join" that added it back made a voter that never answered.
	// A removed node does not stand for election (it has no vote in the
	// configuration), so staying up disrupts nothing.
	cfg.ShutdownOnRemove = false
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
	// Every timer once, with its peer as a label (timings.go), not also
	// under a key of its own.
	cfg.NoLegacyTelemetry = true
	if o.Bootstrap {
		has, err := hraft.HasExistingState(s.logStore, s.logStore, snaps)
		if err != nil {
			return err
		}
		if !has {
			conf := hraft.Configuration{Servers: []hraft.Server{{
				ID: cfg.LocalID, Address: s.transport.LocalAddr(), Suffrage: hraft.Voter}}}
			if err := hraft.BootstrapCluster(cfg, s.logStore, s.logStore, snaps, pipelineTransport{s.transport, s.beats}, conf); err != nil {
				return fmt.Errorf("bootstrap: %w", err)
			}
		}
	}
	s.gate = newWriteGate(s.logStore)
	s.gate.writeTime = s.timings.logWrite
	raftStages() // before NewRaft, whose goroutines report to it
	s.raft, err = hraft.NewRaft(cfg, s.fsm, s.gate, s.logStore, snaps, pipelineTransport{s.transport, s.beats})
	if err != nil {
		s.transport.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	s.live.Store(s.raft)
	s.campaignIfAlone()
	return nil
}

// campaignIfAlone has a node that is the only voter of its configuration
// stand for election now. Raft first waits a random one to two heartbeat
// timeouts (0.5-1 s by default) for a leader that, with no other voter,
// cannot exist: on an empty single node that wait was most of the start,
// and three starts in eleven took over the 1 s issue 11 allows
// (BENCHMARKS.md).
// hashicorp/raft has a follower look at its heartbeat timer at once when
// its heartbeat timeout is lowered (ReloadConfig), and a node that has not
// heard from a leader since it started then stands; the timeout is set
// back at once. Should a later hashicorp/raft not do so, the node waits
// the timeout as before.
func (s *Store) campaignIfAlone() {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters, self := 0, false
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == hraft.Voter {
			voters++
			self = self || srv.ID == hraft.ServerID(s.opts.NodeID)
		}
	}
	if voters != 1 || !self {
		return
	}
	rc := s.raft.ReloadableConfig()
	lower := rc
	lower.HeartbeatTimeout -= time.Nanosecond
	if err := s.raft.ReloadConfig(lower); err != nil {
		return
	}
	if err := s.raft.ReloadConfig(rc); err != nil {
		s.opts.Logger.Warn("raft: could not set the heartbeat timeout back", "error", err)
	}
}

// catchUpFromSnapshot brings Badger up to the newest snapshot when it is
// behind it. Raft skips snapshot restore at start (Badger is the state) and
// starts applying after the snapshot, but the log before a snapshot is
// compacted away, so a Badger that lost writes the snapshot counts (an
// unsynced memtable after a power loss) must get them back first: from the
// log Raft keeps behind the snapshot when the snapshot is a reference to
// Badger (snapstore.go), or from the snapshot itself when it is whole.
func (s *Store) catchUpFromSnapshot(snaps *snapshotStore) error {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	// The snapshot's Raft index also counts entries that never reach the
	// FSM (a new leader's no-op, barriers); compare with the applied index
	// the snapshot itself holds.
	applied, ref, err := s.snapshotHead(snaps, list[0].ID)
	if err != nil || s.fsm.Applied() >= applied {
		return err
	}
	if ref {
		s.opts.Logger.Warn("storage is behind the newest snapshot; catching up from the log",
			"applied", s.fsm.Applied(), "snapshot", applied)
		return s.replayLog(list[0].Index)
	}
	s.opts.Logger.Warn("storage is behind the newest snapshot; catching up from the snapshot",
		"applied", s.fsm.Applied(), "snapshot", applied)
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return err
	}
	return s.fsm.Restore(rc)
}

// snapshotHead reads the applied index at the head of a snapshot.
// FileSnapshotStore.Open reads the whole file to check its CRC before it
// returns, which at every start would cost time in proportion to the data
// for a whole snapshot, so the head is read from the store's file
// directly; Open is the fallback should its layout change. A restore (the
// rare case) still goes through Open and its check.
func (s *Store) snapshotHead(snaps *snapshotStore, id string) (applied uint64, ref bool, err error) {
	if f, err := os.Open(filepath.Join(s.opts.Dir, "snapshots", "snapshots", id, "state.bin")); err == nil {
		defer f.Close()
		return readSnapshotHead(f)
	}
	_, rc, err := snaps.FileSnapshotStore.Open(id)
	if err != nil {
		return 0, false, err
	}
	defer rc.Close()
	return readSnapshotHead(rc)
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
	if err := s.disk.admit(cmd); err != nil {
		return nil, err
	}
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
		if err := s.disk.admit(c); err != nil {
			out[i] = Result{Err: err}
			continue
		}
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

// batchLoop is the group commit: every proposal that queued while Raft
// wrote the previous entry to its log goes into the next entry.
func (s *Store) batchLoop() {
	defer s.wg.Done()
	defer close(s.inflight)
	var after uint64 // log writes started before the last entry went to Raft
	handedOver := false
	prev := 0 // commands in the last entry
	for {
		var first *proposal
		select {
		case first = <-s.proposals:
		case <-s.closing:
			s.failQueued()
			return
		}
		// The entry is built once the log write under way ends, so that
		// it carries every command that queued during it (logwrite.go).
		if !s.gate.await(after, handedOver, s.IsLeader, s.closing) || !s.awaitApplied() {
			first.done <- Result{Err: ErrClosed}
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
		if want := waveSize(prev, len(batch)); want > 0 && s.waveDue() {
			var ok bool
			if batch, ok = s.awaitWave(batch, want); !ok {
				finish(batch, Result{Err: ErrClosed})
				s.failQueued()
				return
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
		after, _, _ = s.gate.state()
		f := s.raft.Apply(data, 10*time.Second)
		handedOver = true
		prev = len(batch)
		s.unapplied.Add(1)
		s.inflight <- &inflight{future: f, batch: batch, start: start}
	}
}

// A wave is the commands of writers that each wait for their last write
// before the next: the results of a large entry go out together, and most
// of its writers come back within a millisecond. Without a wait, the first
// to come back finds Raft idle and goes alone, the rest queue behind its
// log write, and a closed loop of writers settles into a large entry and
// one or two lone ones in turn: two entries in five carried one command,
// each with an entry's cost (a log write and fsync, a Badger commit). A
// small batch built while a large entry is out, or within waveWait of its
// results, therefore waits up to waveWait for half as many commands as
// that entry carried. Under a light load entries are small, and a write
// long after a burst finds its wave gone: nothing waits.
const (
	waveAfter = 16 // commands in an entry that make the next a wave
	waveWait  = time.Millisecond
)

// waveSize is how many commands a batch of n built after an entry of prev
// waits for; 0: it goes as it is.
func waveSize(prev, n int) int {
	if prev < waveAfter || n >= prev/2 {
		return 0
	}
	return prev / 2
}

// waveDue reports whether the last entry's writers may still be coming
// back: it is out, or its results went out within the wave's wait.
func (s *Store) waveDue() bool {
	window := waveWait
	if s.opts.waveWindow > 0 {
		window = s.opts.waveWindow
	}
	return s.unapplied.Load() > 0 || time.Since(time.Unix(0, s.answeredAt.Load())) < window
}

// awaitWave adds proposals to batch until it holds want or waveWait has
// passed; false: the store is closing.
func (s *Store) awaitWave(batch []*proposal, want int) ([]*proposal, bool) {
	wait := waveWait
	if s.opts.waveWait > 0 {
		wait = s.opts.waveWait
	}
	if s.opts.onWave != nil {
		s.opts.onWave()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for len(batch) < want {
		select {
		case p := <-s.proposals:
			batch = append(batch, p)
		case <-t.C:
			return batch, true
		case <-s.closing:
			return batch, false
		}
	}
	return batch, true
}

// awaitApplied returns once fewer than maxUnapplied entries are out; false:
// the store is closing.
func (s *Store) awaitApplied() bool {
	for s.unapplied.Load() >= maxUnapplied {
		select {
		case <-s.applied:
		case <-s.closing:
			return false
		}
	}
	return true
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
		// Before the entry stops counting as out: a writer it answers may
		// be back before the loop below ends (waveDue).
		s.answeredAt.Store(time.Now().UnixNano())
		s.unapplied.Add(-1)
		select {
		case s.applied <- struct{}{}:
		default:
		}
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
func (s *Store) Backup(ctx context.Context, w io.Writer) error { return WriteBackup(ctx, s.db, w) }

// Close is Shutdown without a deadline.
func (s *Store) Close() error { return s.Shutdown(context.Background(), nil) }

// Shutdown stops proposing (in-flight proposals get their outcome first),
// takes a snapshot when the log since the last one is long, shuts Raft down
// and closes the stores, telling stage the name of each step as it starts.
// None of the steps can be interrupted (a snapshot is a reference to
// Badger, so it costs a sync), so a caller with a deadline stops waiting
// for Shutdown rather than expecting it to return early. Calling it again
// returns the first result.
func (s *Store) Shutdown(_ context.Context, stage func(name string)) error {
	if stage == nil {
		stage = func(string) {}
	}
	s.closeOnce.Do(func() {
		var errs []error
		close(s.closing)
		stage(StageProposals)
		s.wg.Wait()
		close(s.stopped)
		stage(StageSnapshot)
		s.snapshotting.Wait()
		if !s.opts.noShutdownSnapshot {
			if err := s.snapshotIfLong("shutdown"); err != nil {
				errs = append(errs, err)
			}
		}
		stage(StageRaft)
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		stage(StageTransport)
		errs = append(errs, s.transport.Close())
		s.beats.close()
		stage(StageLog)
		errs = append(errs, s.logStore.Close())
		stage(StageBadger)
		errs = append(errs, s.db.Close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// The steps of Shutdown, as it names them.
const (
	StageProposals = "in-flight raft proposals"
	StageSnapshot  = "shutdown snapshot"
	StageRaft      = "raft shutdown"
	StageTransport = "raft transport close"
	StageLog       = "raft log close"
	StageBadger    = "badger close"
)

// snapshotAfterReplay takes a snapshot once Raft has replayed the log it
// found at start, if that log is long. Raft snapshots on its own only every
// SnapshotInterval; a node restarted more often than that would otherwise
// never snapshot, and each start would replay a longer log than the last.
// It runs beside start-up, not in its way: Persist streams a fixed Badger
// view while entries keep applying.
func (s *Store) snapshotAfterReplay() {
	defer s.snapshotting.Done()
	target := s.raft.LastIndex()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	// A follower's log may end in entries the leader discards, which never
	// apply; after a while take what has been applied.
	giveUp := time.After(2 * time.Minute)
	for s.raft.AppliedIndex() < target {
		select {
		case <-s.closing:
			return
		case <-giveUp:
			target = 0
		case <-tick.C:
		}
	}
	if err := s.snapshotIfLong("start-up"); err != nil {
		s.opts.Logger.Warn("start-up snapshot failed; raft will try again at its interval", "error", err)
	}
}

// snapshotIfLong snapshots when more than a quarter of SnapshotThreshold
// entries have applied since the last snapshot: the start-up replay of a
// log that long is worth a snapshot, a shorter one is not.
func (s *Store) snapshotIfLong(when string) error {
	last := uint64(0)
	if list, err := s.snaps.List(); err == nil && len(list) > 0 {
		last = list[0].Index
	}
	applied := s.raft.AppliedIndex()
	if applied <= last || applied-last <= s.snapshotThreshold()/4 {
		return nil
	}
	start := time.Now()
	err := s.raft.Snapshot().Error()
	switch {
	case errors.Is(err, hraft.ErrNothingNewToSnapshot):
		return nil
	case err != nil:
		return fmt.Errorf("%s snapshot: %w", when, err)
	}
	s.opts.Logger.Info("took a snapshot", "when", when, "index", applied, "entries_since_last", applied-last,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (s *Store) snapshotThreshold() uint64 {
	if s.opts.SnapshotThreshold > 0 {
		return s.opts.SnapshotThreshold
	}
	return hraft.DefaultConfig().SnapshotThreshold
}

// LogStats are the counts of the Raft log, for tests and operators.
type LogStats struct {
	LastIndex, SnapshotIndex uint64
	// SinceSnapshot is how many entries a restart would replay.
	SinceSnapshot uint64
}

// LogStats reports how long the log after the newest snapshot is.
func (s *Store) LogStats() LogStats {
	st := LogStats{LastIndex: s.raft.LastIndex()}
	if list, err := s.snaps.List(); err == nil && len(list) > 0 {
		st.SnapshotIndex = list[0].Index
	}
	if st.LastIndex > st.SnapshotIndex {
		st.SinceSnapshot = st.LastIndex - st.SnapshotIndex
	}
	return st
}

// HandOff passes the leadership to the most caught-up other voter before
// this node stops, so that the others need not wait out a heartbeat timeout
// and an election for a leader: writes forwarded meanwhile are resent to
// the new leader (cluster/batch.go) instead of waiting. handed is false
// when there was nothing to hand off (this node does not lead, or no other
// voter exists); to is the new leader's id when this node has heard of it
// already. hashicorp/raft gives the attempt an election timeout; ctx bounds
// the wait for it.
func (s *Store) HandOff(ctx context.Context) (to string, handed bool, err error) {
	if !s.IsLeader() {
		return "", false, nil
	}
	others := 0
	for _, srv := range s.servers() {
		if srv.Suffrage == hraft.Voter && string(srv.ID) != s.opts.NodeID {
			others++
		}
	}
	if others == 0 {
		return "", false, nil
	}
	if err := s.transfer(ctx, func() hraft.Future { return s.raft.LeadershipTransfer() }); err != nil {
		return "", false, err
	}
	_, id := s.raft.LeaderWithID()
	return string(id), true, nil
}

// TransferTo hands this leader's leadership to the voter id at addr.
func (s *Store) TransferTo(ctx context.Context, id, addr string) error {
	return s.transfer(ctx, func() hraft.Future {
		return s.raft.LeadershipTransferToServer(hraft.ServerID(id), hraft.ServerAddress(addr))
	})
}

func (s *Store) transfer(ctx context.Context, start func() hraft.Future) error {
	// A stop's hand-off and a full disk's can meet; the second has nothing
	// left to do, rather than a "transfer in progress" error to report.
	s.transferMu.Lock()
	defer s.transferMu.Unlock()
	if !s.IsLeader() {
		return nil
	}
	// hashicorp/raft logs the step-down that follows as an error.
	s.rlog.handingOff.Store(time.Now().Add(handOffLogWindow).UnixNano())
	done := make(chan error, 1)
	go func() { done <- start().Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handOffLogWindow covers a hand-off and the replication goroutines that
// notice the new term after it.
const handOffLogWindow = 5 * time.Second

// servers is the latest Raft configuration, for the log bridge.
func (s *Store) servers() []hraft.Server {
	r := s.live.Load()
	if r == nil {
		return nil
	}
	return r.GetConfiguration().Configuration().Servers
}

// observePeers tells the log bridge when a peer answers heartbeats again,
// which ends its run of throttled failures with one line.
func (s *Store) observePeers() {
	defer s.wg.Done()
	ch := make(chan hraft.Observation, 16)
	obs := hraft.NewObserver(ch, false, func(o *hraft.Observation) bool {
		_, ok := o.Data.(hraft.ResumedHeartbeatObservation)
		return ok
	})
	s.raft.RegisterObserver(obs)
	defer s.raft.DeregisterObserver(obs)
	for {
		select {
		case <-s.closing:
			return
		case o := <-ch:
			if d, ok := o.Data.(hraft.ResumedHeartbeatObservation); ok {
				s.rlog.recovered(string(d.PeerID))
			}
		}
	}
}

// Restore loads a backup into an empty data directory, for `herald restore`:
// the state is loaded into Badger and the Raft log starts fresh, so the node
// comes up as a new one-node cluster holding the backup's data.
//
// The restored state starts a new history, so it gets a new cluster id: a
// node that kept the replaced cluster's data holds the old one and is kept
// out (cluster/identity.go). The id is derived from the backup's bytes, so
// that every node restored from one file gets the same and the nodes form
// one cluster. Restore returns it.
func Restore(dir string, r io.Reader) (string, error) {
	if hasLog(dir) {
		return "", fmt.Errorf("%s already holds a node's data; restore needs an empty directory", dir)
	}
	db, err := badger.Open(badgerOptions(dir, DefaultMemory)) // as the node will open it
	if err != nil {
		return "", err
	}
	sum := sha256.New()
	if _, err := loadSnapshot(db, io.TeeReader(r, sum), true); err != nil {
		db.Close()
		return "", err
	}
	id := restoredClusterID(sum.Sum(nil))
	// A fresh log starts at index 1: the applied index must not skip it,
	// and a mark of where to resume an entry (parts.go) names one of the
	// old log. The rules level is at least the one that knows identities:
	// only a binary that knows it restored the state. The change log goes
	// on past a gap (lostSeqs), so that a cursor of a change made after the
	// backup, which the restore took back, never names one made since.
	err = db.Update(func(txn *badger.Txn) error {
		if err := txn.Delete([]byte(keyResume)); err != nil {
			return err
		}
		seq, _, err := getValue(txn, []byte(keySeq))
		if err != nil {
			return err
		}
		from := getUint64(seq)
		lost, _, err := getValue(txn, []byte(keyLostSeqs))
		if err != nil {
			return err
		}
		lost = append(append(append([]byte(nil), lost...), putUint64(from)...), putUint64(from+restoreSeqGap)...)
		if err := errors.Join(txn.Set([]byte(keyLostSeqs), lost),
			txn.Set([]byte(keySeq), putUint64(from+restoreSeqGap))); err != nil {
			return err
		}
		v, found, err := getValue(txn, []byte(keyRules))
		if err != nil {
			return err
		}
		level := uint64(IdentityLevel)
		if found {
			level = max(level, getUint64(v))
		}
		if level > RulesLevel {
			// A node of this release would refuse to start on it.
			return fmt.Errorf("the backup holds state under rules level %d, newer than this release knows (%d): "+
				"restore it with the release that made it, or a later one", level, RulesLevel)
		}
		return errors.Join(txn.Set([]byte(keyRules), putUint64(level)),
			txn.Set([]byte(keyCluster), []byte(id)), txn.Set([]byte(keyRestored), []byte(id)),
			txn.Set([]byte(keyApplied), putUint64(0)))
	})
	if err = errors.Join(err, db.Close()); err != nil {
		return "", err
	}
	return id, os.WriteFile(filepath.Join(dir, restoredMarker), []byte("restored from a backup; the node snapshots and compacts its log at its first start\n"), 0o600)
}

// BackupDir writes a backup of the state held in the data directory dir of
// a stopped node, for `herald backup --data-dir`: the way to save what a node
// holds once its cluster has lost its quorum, when no one can sign in to ask
// it for a backup. It is what the node has applied (as a backup with
// --stale is); the caller holds the directory's lock.
func BackupDir(ctx context.Context, dir string, w io.Writer) error {
	if _, err := os.Stat(filepath.Join(dir, "badger")); err != nil {
		return fmt.Errorf("%s holds no node's data (no badger directory): name the --data-dir of the node to back up", dir)
	}
	// Opened as the node opens it, with what a kill -9 leaves cleared
	// first (a node killed is what this is for): like a start, it may
	// finish what the crash left in the directory.
	bopts := badgerOptions(dir, DefaultMemory)
	if err := dropEmptyLogs(bopts.Dir, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
		return err
	}
	db, err := badger.Open(bopts)
	if err != nil {
		return err
	}
	// A stopped node has no entry under way that will end while we wait:
	// one left half applied ends when the node applies its log again.
	txn, err := wholeEntries(ctx, db, 0)
	if errors.Is(err, ErrEntryUnderWay) {
		err = fmt.Errorf("%w: the node stopped while it applied it; start the node and stop it again once it has "+
			"finished (its log ends it), then back it up", err)
	}
	if err == nil {
		err = writeSnapshot(txn, w)
		txn.Discard()
	}
	return errors.Join(err, db.Close())
}

// restoreSeqGap is how far a restore moves the change log's sequence on:
// further than the replaced cluster can have gone past its backup.
const restoreSeqGap = 1 << 40

// keyLostSeqs records the change-log ranges that restores took back: pairs
// of big-endian (from, to), one pair a restore. Cursors in (from, to) are of
// a replaced history; to, where the restored cluster's log goes on, is its
// first position. Backups carry the key, so a cursor of any earlier history
// is known. One key, not one per restore, so that a delta's check is a
// point read, which the key's absence makes a bloom filter's miss.
const keyLostSeqs = "m/lostseqs"

// LostSeq reports whether a change-log cursor names a change that a restore
// took back (a client's delta or stream cursor of the replaced history).
func (s *Store) LostSeq(seq uint64) (bool, error) {
	s.seePublished()
	v, _, err := s.getString([]byte(keyLostSeqs))
	if err != nil {
		return false, err
	}
	for b := []byte(v); len(b) >= 16; b = b[16:] {
		if from, to := getUint64(b[:8]), getUint64(b[8:16]); seq > from && seq < to {
			return true, nil
		}
	}
	return false, nil
}

// restoredClusterID is the id of a cluster restored from a backup whose
// bytes hash to sum.
func restoredClusterID(sum []byte) string {
	h := sha256.New()
	h.Write([]byte("herald restored cluster\x00"))
	h.Write(sum)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// restoredMarker is the file Restore leaves in a data directory: the
// restored state lives in Badger alone, not in the Raft log, so a node that
// joins later would replay the log and miss it. The restored node takes a
// snapshot and drops its whole log at its first start, so that joiners get
// the snapshot; the file goes once that is done. It is a file rather than a
// Badger key so that snapshots do not carry it to other nodes.
const restoredMarker = "restored"

// compactAfterRestore snapshots a restored node once its first entry has
// applied and keeps no trailing log behind the snapshot.
func (s *Store) compactAfterRestore() {
	defer s.snapshotting.Done()
	marker := filepath.Join(s.opts.Dir, restoredMarker)
	if _, err := os.Stat(marker); err != nil {
		return
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for s.raft.AppliedIndex() < 1 {
		select {
		case <-s.closing:
			return
		case <-tick.C:
		}
	}
	rc := s.raft.ReloadableConfig()
	keep := rc.TrailingLogs
	rc.TrailingLogs = 0
	if err := s.raft.ReloadConfig(rc); err != nil {
		s.opts.Logger.Error("restored node: could not drop its log behind a snapshot; nodes that join it will miss the restored data", "error", err)
		return
	}
	err := s.raft.Snapshot().Error()
	rc.TrailingLogs = keep
	if rerr := s.raft.ReloadConfig(rc); rerr != nil {
		s.opts.Logger.Warn("restored node: could not set its trailing log length back", "error", rerr)
	}
	if err != nil && !errors.Is(err, hraft.ErrNothingNewToSnapshot) {
		s.opts.Logger.Error("restored node: snapshot failed; it is tried again at the next start", "error", err)
		return
	}
	if err := os.Remove(marker); err != nil {
		s.opts.Logger.Warn("restored node: could not remove the restore marker", "error", err)
	}
	s.opts.Logger.Info("restored node: took a snapshot of the restored state for the nodes that join it", "index", s.raft.AppliedIndex())
}
