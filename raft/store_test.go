package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/internal/freeport"
	"github.com/herald-notify/herald/resource"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func freeAddr(t testing.TB) string { return freeport.Addr(t) }

func openTestStore(t testing.TB, dir string, onChange func([]resource.Change)) *Store {
	t.Helper()
	return openTestStoreAt(t, dir, freeAddr(t), onChange)
}

// openTestStoreAt opens the store at a Raft address of the caller's, for a
// restart on the address the log's configuration names.
func openTestStoreAt(t testing.TB, dir, addr string, onChange func([]resource.Change)) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, NodeID: "n1", RaftAddr: addr, Bootstrap: true,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		OnChange: onChange, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// newApp is an application with fresh ids that sends as a.example.
func newApp() *resource.ApplicationRecord {
	return &resource.ApplicationRecord{ID: resource.NewGUID(), AppID: resource.NewGUID(), TargetHostName: "a.example"}
}

// proposeAll proposes each command, stamped with the time, and fails the
// test at the first error.
func proposeAll(t testing.TB, s *Store, cmds ...*Command) {
	t.Helper()
	for _, c := range cmds {
		c.Now = time.Now().UnixNano()
		if _, err := s.Propose(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
}

func newUser(upn string) *resource.UserRecord {
	return &resource.UserRecord{User: resource.User{ID: resource.NewGUID(), UserPrincipalName: upn,
		Roles: []string{"user"}, AccountEnabled: true, CreatedDateTime: resource.At(time.Now())}}
}

func TestProposeCommitsAndRejectsDuplicateUPN(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	u := newUser("alice")
	if _, err := s.Propose(ctx, &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: u}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.UserByName("alice")
	if err != nil || !ok || got.ID != u.ID {
		t.Fatalf("UserByName = %v %v %v", got, ok, err)
	}
	_, err = s.Propose(ctx, &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: newUser("ALICE")})
	var rerr *resource.Error
	if !errors.As(err, &rerr) || rerr.Code != resource.CodeNameExists {
		t.Fatalf("duplicate upn: err = %v, want nameAlreadyExists", err)
	}
}

func TestConcurrentProposalsShareEntries(t *testing.T) {
	var mu sync.Mutex
	var batches []int
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, NodeID: "n1", RaftAddr: freeAddr(t), Bootstrap: true,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		Logger: quiet, ObserveBatch: func(n int, _ time.Duration) { mu.Lock(); batches = append(batches, n); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Propose(ctx, &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: newUser(fmt.Sprintf("u%d", i))})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.ListUsers("", 1000)
	if err != nil || len(page.Items) != n {
		t.Fatalf("users = %d, %v; want %d", len(page.Items), err, n)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, b := range batches {
		total += b
	}
	if total != n || len(batches) >= n {
		t.Fatalf("batches %v: want %d commands in fewer than %d entries", batches, n, n)
	}
}

func TestStateSurvivesRestartWithoutDuplicateChanges(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, nil)
	ctx := context.Background()
	u := newUser("bob")
	app := newApp()
	proposeAll(t, s, &Command{Op: OpCreateUser, User: u}, &Command{Op: OpCreateApp, App: app})
	for i := 0; i < 5; i++ {
		now := time.Now()
		in := resource.NotificationInput{Payload: &resource.Payload{VisualContent: &resource.VisualContent{Title: "hi"}}}
		if err := in.Validate(now, "a.example"); err != nil {
			t.Fatal(err)
		}
		n := &resource.NotificationRecord{Notification: in.NewNotification(resource.NewNotificationID(now), now), UserID: u.ID, AppID: app.ID}
		if _, err := s.Propose(ctx, &Command{Op: OpSend, Now: now.UnixNano(), Notif: n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if err := s.Backup(context.Background(), &backup); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, nil)
	defer s.Close()
	changes, err := s.Changes(u.ID, 0, 100)
	if err != nil || len(changes) != 5 {
		t.Fatalf("changes after restart = %d, %v; want 5", len(changes), err)
	}
	page, err := s.ListNotifications(u.ID, "", 100, nil)
	if err != nil || len(page.Items) != 5 {
		t.Fatalf("notifications after restart = %d, %v", len(page.Items), err)
	}

	restored := t.TempDir()
	if _, err := Restore(restored, &backup); err != nil {
		t.Fatal(err)
	}
	r := openTestStore(t, restored, nil)
	defer r.Close()
	page, err = r.ListNotifications(u.ID, "", 100, nil)
	if err != nil || len(page.Items) != 5 {
		t.Fatalf("notifications in restored store = %d, %v", len(page.Items), err)
	}
}

// backupOfCarol is the backup of a store that holds one user.
func backupOfCarol(t *testing.T) []byte {
	t.Helper()
	s := openTestStore(t, t.TempDir(), nil)
	if _, err := s.Propose(context.Background(), &Command{Op: OpCreateUser, User: newUser("carol")}); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := s.Backup(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return b.Bytes()
}

func TestRestoreRejectsDamagedBackup(t *testing.T) {
	data := backupOfCarol(t)
	data[len(data)-10] ^= 0xff
	if _, err := Restore(t.TempDir(), bytes.NewReader(data)); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("Restore of damaged backup: %v, want ErrBadSnapshot", err)
	}
}

// A backup file holds one snapshot and nothing after it: bytes past the
// checksum (two backups joined by >>, a file written over a longer one
// without truncating it) are a damaged file, not a good one with a tail to
// ignore; the restored cluster's id, which hashes the file, would also
// differ from that of the nodes restored from the intact copy.
func TestRestoreRejectsABackupThatGoesOnAfterItsChecksum(t *testing.T) {
	good := backupOfCarol(t)
	for name, data := range map[string][]byte{
		"one byte more":   append(bytes.Clone(good), 0),
		"a line appended": append(bytes.Clone(good), "garbage\n"...),
		"two backups":     append(bytes.Clone(good), good...),
	} {
		if _, err := Restore(t.TempDir(), bytes.NewReader(data)); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("Restore of a backup with %s: %v, want ErrBadSnapshot", name, err)
		}
	}
	if _, err := Restore(t.TempDir(), bytes.NewReader(good)); err != nil {
		t.Fatalf("Restore of the intact backup: %v", err)
	}
}

// Commands that queue while Raft writes an entry to its log all go into
// the next entry, not one of them alone: the batch loop builds the next
// entry when the write ends rather than when Raft takes the entry.
// batchRig is a store with one user whose entries' command counts are
// recorded from the moment it is returned.
type batchRig struct {
	*Store
	user  *resource.UserRecord
	mu    sync.Mutex
	sizes []int
}

// send proposes one notification to the rig's user, reporting a failure.
func (r *batchRig) send(t *testing.T) {
	now := time.Now()
	if _, err := r.Propose(context.Background(), sendCmd(r.user.ID, "app", "", now, now.Add(time.Hour))); err != nil {
		t.Error(err)
	}
}

func newBatchRig(t *testing.T) *batchRig { return newBatchRigWith(t, nil) }

// newBatchRigWith is newBatchRig with options set by configure.
func newBatchRigWith(t *testing.T, configure func(*Options)) *batchRig {
	r := &batchRig{user: newUser("batch")}
	record := false
	o := Options{Dir: t.TempDir(), NodeID: "n1", RaftAddr: freeAddr(t), Bootstrap: true,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, Logger: quiet,
		ObserveBatch: func(n int, _ time.Duration) {
			r.mu.Lock()
			if record {
				r.sizes = append(r.sizes, n)
			}
			r.mu.Unlock()
		}}
	if configure != nil {
		configure(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	r.Store = s
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Propose(ctx, &Command{Op: OpCreateUser, User: r.user}); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	record = true
	r.mu.Unlock()
	return r
}

func (r *batchRig) batches() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.sizes)
}

func TestGroupCommitTakesWhatQueuedDuringTheLogWrite(t *testing.T) {
	s := newBatchRig(t)
	const queued = 20
	s.queueDuringALogWrite(t, queued)
	if got := s.batches(); got != fmt.Sprint([]int{1, queued}) {
		t.Fatalf("entries carried %v commands, want [1 %d]", got, queued)
	}
}

// queueDuringALogWrite sends one command, holds its entry's log write
// while n more queue, and returns once all are answered: with the group
// commit as built, the rig's next entries carry 1 and n commands.
func (r *batchRig) queueDuringALogWrite(t *testing.T, n int) {
	t.Helper()
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func() { once.Do(func() { close(held); <-release }) }
	r.gate.hold.Store(&hold)
	var wg sync.WaitGroup
	propose := func() { defer wg.Done(); r.send(t) }
	wg.Add(1)
	go propose()
	<-held // the first entry's write is under way
	wg.Add(n)
	for range n {
		go propose()
	}
	// The batch loop has taken one of them and waits for the write; the
	// rest wait in the queue.
	pollUntil(t, "the commands queued during the write", func() error {
		if q := len(r.proposals); q < n-1 {
			return fmt.Errorf("only %d proposals queued", q)
		}
		return nil
	})
	close(release)
	wg.Wait()
}

// Writers that each wait for their last write come back in a wave once a
// large entry's results go out: the first back does not go alone while
// the rest are on their way, but waits (up to waveWait) for half as many
// as the large entry carried. Here the wait is a minute, so that the
// entries' sizes show the rule and not the machine's speed.
func TestASmallBatchAfterALargeEntryWaitsForTheWave(t *testing.T) {
	waves := make(chan struct{}, 4)
	s := newBatchRigWith(t, func(o *Options) {
		o.waveWait, o.waveWindow = time.Minute, time.Minute
		o.onWave = func() { waves <- struct{}{} }
	})
	const large = 32
	s.queueDuringALogWrite(t, large)

	// The wave: one comes back first and waits for the others.
	var wg sync.WaitGroup
	propose := func() { defer wg.Done(); s.send(t) }
	wg.Add(1)
	go propose()
	<-waves
	wg.Add(large/2 - 1)
	for range large/2 - 1 {
		go propose()
	}
	wg.Wait()
	if got, want := s.batches(), fmt.Sprint([]int{1, large, large / 2}); got != want {
		t.Fatalf("entries carried %v commands, want %v", got, want)
	}

	// A store that closes while a batch waits for its wave answers it
	// ErrClosed: the batch never went to Raft.
	done := make(chan error, 1)
	go func() {
		now := time.Now()
		_, err := s.Propose(context.Background(), sendCmd(s.user.ID, "app", "", now, now.Add(time.Hour)))
		done <- err
	}()
	<-waves
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("a command waiting for its wave got %v at close, want ErrClosed", err)
	}
	if got, want := s.batches(), fmt.Sprint([]int{1, large, large / 2}); got != want {
		t.Fatalf("entries carried %v commands, want %v", got, want)
	}
}

// A write that comes long after a large entry's results finds no wave to
// wait for: it goes at once, even where a wave would wait a minute.
func TestALoneWriteLongAfterALargeEntryDoesNotWait(t *testing.T) {
	var waves atomic.Int64
	s := newBatchRigWith(t, func(o *Options) {
		o.waveWait, o.waveWindow = time.Minute, 5*time.Millisecond
		o.onWave = func() { waves.Add(1) }
	})
	const large = 32
	s.queueDuringALogWrite(t, large)
	pollUntil(t, "the large entry's writers gone", func() error {
		if d := time.Since(time.Unix(0, s.answeredAt.Load())); d < 10*time.Millisecond {
			return fmt.Errorf("answered %v ago", d)
		}
		return nil
	})
	done := make(chan struct{})
	go func() { defer close(done); s.send(t) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a lone write long after a large entry waited for a wave")
	}
	if got, want := s.batches(), fmt.Sprint([]int{1, large, 1}); got != want || waves.Load() != 0 {
		t.Fatalf("entries carried %v commands, want %v; %d waves", got, want, waves.Load())
	}
}

// While an entry is applied, the commands that arrive go into one entry
// once it is done, rather than one entry each at every (fast) log write.
func TestGroupCommitTakesWhatQueuedDuringTheApply(t *testing.T) {
	s := newBatchRig(t)

	held, release := make(chan struct{}), make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce() // before Close, which waits for the apply
	var once sync.Once
	hold := func() { once.Do(func() { close(held); <-release }) }
	s.fsm.hold.Store(&hold)
	var wg sync.WaitGroup
	propose := func() { defer wg.Done(); s.send(t) }
	wg.Add(1)
	go propose()
	<-held // the first entry is being applied
	// The second goes to Raft (it may be written and committed meanwhile)...
	wg.Add(1)
	go propose()
	pollUntil(t, "the second entry handed to Raft", func() error {
		if n := s.unapplied.Load(); n != 2 {
			return fmt.Errorf("%d entries out", n)
		}
		return nil
	})
	// ...and the rest wait for the first to be applied.
	const queued = 20
	wg.Add(queued)
	for range queued {
		go propose()
	}
	pollUntil(t, "the rest queued", func() error {
		if n := len(s.proposals); n < queued-1 {
			return fmt.Errorf("only %d proposals queued", n)
		}
		return nil
	})
	releaseOnce()
	wg.Wait()
	if got := s.batches(); got != fmt.Sprint([]int{1, 1, queued}) {
		t.Fatalf("entries carried %v commands, want [1 1 %d]", got, queued)
	}
}

// A node that is the only voter of its configuration does not wait a
// heartbeat timeout for a leader that cannot exist: with a timeout of 30 s
// it leads well within half of one, on its first start and on a restart,
// and the timeout is its own again.
func TestSoleVoterLeadsWithoutWaitingTheHeartbeatTimeout(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	const timeout = 30 * time.Second
	for _, start := range []string{"first start", "restart"} {
		s, err := Open(Options{Dir: dir, NodeID: "n1", RaftAddr: addr, Bootstrap: true,
			HeartbeatTimeout: timeout, ElectionTimeout: timeout, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout/2)
		err = s.WaitLeader(ctx)
		cancel()
		if err != nil {
			s.Close()
			t.Fatalf("%s: no leader within %v, half the heartbeat timeout: %v", start, timeout/2, err)
		}
		if got := s.Raft().ReloadableConfig().HeartbeatTimeout; got != timeout {
			t.Errorf("%s: heartbeat timeout %v after the election, want %v", start, got, timeout)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Node reads the one record that Nodes lists under the same id, and
// nothing once the member is removed.
func TestNodeReadsOneMembersRecord(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	s := &Store{db: db}
	now := time.Now().UnixNano()
	a := NodeRecord{ID: "a", HTTPAddr: "10.0.0.1:8080", RaftAddr: "10.0.0.1:8300"}
	b := NodeRecord{ID: "b", HTTPAddr: "10.0.0.2:8080", RaftAddr: "10.0.0.2:8300"}
	for _, r := range f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpSetNode, Now: now, Node: &a},
		&Command{Op: OpSetNode, Now: now, Node: &b})})[0].([]Result) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	all, err := s.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []NodeRecord{a, b} {
		got, ok, err := s.Node(want.ID)
		if err != nil || !ok || got != want || all[want.ID] != got {
			t.Errorf("Node(%q) = %+v, %v, %v; want %+v as Nodes has it (%+v)", want.ID, got, ok, err, want, all[want.ID])
		}
	}
	f.ApplyBatch([]*hraft.Log{entry(t, 2, &Command{Op: OpRemoveNode, Now: now, ID: "a"})})
	if got, ok, err := s.Node("a"); ok || err != nil {
		t.Errorf("after removal Node(a) = %+v, %v, %v; want none", got, ok, err)
	}
	if _, ok, _ := s.Node("c"); ok {
		t.Error("Node found a member never recorded")
	}
}

// A restore starts a new history: the restored state names a new cluster,
// the same for every node restored from one file and another for another
// backup, at a rules level that knows identities.
func TestRestoreNamesANewCluster(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	if _, err := s.Propose(context.Background(), &Command{Op: OpSetRules, Level: IdentityLevel, ID: "replaced"}); err != nil {
		t.Fatal(err)
	}
	backup := func() []byte {
		var b bytes.Buffer
		if err := s.Backup(context.Background(), &b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	first := backup()
	if _, err := s.Propose(context.Background(), &Command{Op: OpCreateUser, User: newUser("dora")}); err != nil {
		t.Fatal(err)
	}
	second := backup()
	restore := func(b []byte) (string, int) {
		t.Helper()
		dir := t.TempDir()
		id, err := Restore(dir, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r := openTestStore(t, dir, nil)
		defer r.Close()
		got, err := r.ClusterID()
		if err != nil || got != id {
			t.Fatalf("restored store's cluster %q, %v; Restore said %q", got, err, id)
		}
		level, err := r.Rules()
		if err != nil {
			t.Fatal(err)
		}
		return id, level
	}
	a, level := restore(first)
	b, _ := restore(first)
	c, _ := restore(second)
	switch {
	case a == "replaced" || a == "":
		t.Fatalf("restored cluster %q, want a new id", a)
	case a != b:
		t.Fatalf("one file restored twice: %q and %q, want one id", a, b)
	case a == c:
		t.Fatalf("two backups restored as the same cluster %q", a)
	case level < IdentityLevel:
		t.Fatalf("restored rules level %d, want at least %d", level, IdentityLevel)
	}
}

// While a snapshot replaces the state, which reads as empty until it has
// loaded, the node's identity is what it was: the transport would
// otherwise let in any node meanwhile (cluster/identity.go). Once loaded,
// it is the snapshot's.
func TestIdentityHoldsWhileASnapshotLoads(t *testing.T) {
	other := openTestStore(t, t.TempDir(), nil)
	if _, err := other.Propose(context.Background(), &Command{Op: OpSetRules, Level: IdentityLevel, ID: "theirs"}); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := other.Backup(context.Background(), &snap); err != nil {
		t.Fatal(err)
	}
	other.Close()

	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	if _, err := s.Propose(context.Background(), &Command{Op: OpSetRules, Level: IdentityLevel, ID: "ours"}); err != nil {
		t.Fatal(err)
	}
	if id, err := s.Identity(); err != nil || id.ID != "ours" {
		t.Fatalf("identity %+v, %v", id, err)
	}
	var during []string
	afterDrop = func() {
		id, err := s.Identity()
		if err != nil {
			t.Error(err)
		}
		during = append(during, id.ID)
	}
	defer func() { afterDrop = nil }()
	if err := s.fsm.Restore(io.NopCloser(&snap)); err != nil {
		t.Fatal(err)
	}
	if len(during) != 1 || during[0] != "ours" {
		t.Fatalf("identity while the snapshot loaded: %q, want the one before", during)
	}
	if id, err := s.Identity(); err != nil || id.ID != "theirs" {
		t.Fatalf("after the load: identity %+v, %v; want the snapshot's", id, err)
	}
}
