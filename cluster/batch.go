package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// A follower's writes reach the leader in batches (DESIGN.md, Forwarded
// writes): callers queue their commands, and a few senders each take
// whatever has queued and send it as one request, so that the leader
// proposes them together and they share its group commit, as writes made on
// the leader do.

const (
	// forwardHold bounds how long a forwarded write waits for a leader to
	// take it, across elections and resends. An election takes 1–2 s with
	// the default timers.
	forwardHold = 5 * time.Second
	// drainHold is what a stopping node still gives a forwarded write
	// that has no leader (Cluster.Drain): enough for the leadership
	// hand-off of a rolling restart (tens of milliseconds) to be seen.
	drainHold = time.Second
	// forwardSenders is how many batches may be on their way to the
	// leader at once: one fills while others wait for their entries.
	forwardSenders = 4
	// maxForwardCommands and maxForwardBytes bound one batch, well under
	// the leader's body limit for internal requests.
	maxForwardCommands = 256
	maxForwardBytes    = 768 << 10
	forwardPath        = "/internal/cluster/forward"
)

// forwardRequest is a batch of commands for the leader; forwardResponse its
// answer: one result per command, in order, and the leader's applied index
// once all were applied.
type forwardRequest struct {
	Commands []json.RawMessage `json:"commands"`
}

type forwardResponse struct {
	Results []*raft.WireResult `json:"results"`
	Applied uint64             `json:"applied"`
}

// pendingWrite is one caller's command waiting in or for a batch.
type pendingWrite struct {
	cmd      *raft.Command
	body     json.RawMessage
	ctx      context.Context
	deadline time.Time
	// sent: some send may have reached a leader, so the outcome is
	// unknown until a leader answers (batch goroutine only).
	sent bool
	done chan writeResult
}

type writeResult struct {
	v   any
	err error
}

type batcher struct {
	c      *Cluster
	queue  chan *pendingWrite
	slots  chan struct{}
	prefix string
	seq    atomic.Uint64
	leader leaderWatch
	known  leaderCache
}

func newBatcher(c *Cluster) *batcher {
	return &batcher{c: c, queue: make(chan *pendingWrite, 4096), slots: make(chan struct{}, forwardSenders),
		prefix: resource.NewSecret(9) + "."}
}

// propose queues cmd for the leader and waits for its outcome.
func (b *batcher) propose(ctx context.Context, cmd *raft.Command) (any, error) {
	if cmd.RequestID == "" {
		// The id makes a resend safe: the leader's FSM answers a command
		// it has applied with its first result (raft/dedup.go).
		cmd.RequestID = b.prefix + strconv.FormatUint(b.seq.Add(1), 36)
	}
	body, err := raft.EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	p := &pendingWrite{cmd: cmd, body: body, ctx: ctx, deadline: time.Now().Add(forwardHold), done: make(chan writeResult, 1)}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.c.stop:
		return nil, raft.ErrClosed
	}
	select {
	case r := <-p.done:
		return r.v, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the caller stopped waiting: %w", raft.ErrUnknownOutcome, ctx.Err())
	}
}

// run takes a sender slot, then everything queued by then (up to the
// bounds), and hands it to a sender: what queues while every sender is busy
// goes out together.
func (b *batcher) run() {
	defer b.c.wg.Done()
	var carry *pendingWrite
	for {
		select {
		case b.slots <- struct{}{}:
		case <-b.c.stop:
			b.failQueued(carry)
			return
		}
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-b.queue:
			case <-b.c.stop:
				<-b.slots
				b.failQueued(nil)
				return
			}
		}
		batch, size := []*pendingWrite{first}, len(first.body)
	drain:
		for len(batch) < maxForwardCommands {
			select {
			case p := <-b.queue:
				if size+len(p.body) > maxForwardBytes {
					carry = p
					break drain
				}
				batch, size = append(batch, p), size+len(p.body)
			default:
				break drain
			}
		}
		b.c.wg.Add(1)
		go func() {
			defer b.c.wg.Done()
			defer func() { <-b.slots }()
			b.forward(batch)
		}()
	}
}

func (b *batcher) failQueued(carry *pendingWrite) {
	if carry != nil {
		carry.done <- writeResult{err: raft.ErrClosed}
	}
	for {
		select {
		case p := <-b.queue:
			p.done <- writeResult{err: raft.ErrClosed}
		default:
			return
		}
	}
}

// forward gets batch committed by whichever node leads, resending what has
// no outcome yet to the next leader as soon as one is elected, until each
// write's hold time is over.
func (b *batcher) forward(batch []*pendingWrite) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Not on drainOver: a send under way reached a leader, whose answer
	// says what became of the writes; cancelled, they would have an
	// unknown outcome. The loop below looks again every 50 ms, and expire
	// answers a drained node's writes once a try found no leader.
	go func() {
		select {
		case <-b.c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	pending := batch
	var lastErr error
	for {
		pending = b.expire(pending, lastErr)
		if len(pending) == 0 {
			return
		}
		changed := b.leader.changed()
		if b.c.store.IsLeader() {
			pending, lastErr = b.proposeHere(ctx, pending)
		} else if rec, err := b.leaderRecord(); err != nil {
			lastErr = err
		} else {
			pending, lastErr = b.send(ctx, rec, pending, changed)
		}
		if len(pending) == 0 || ctx.Err() != nil {
			continue
		}
		// Wait for the next leader, or look again shortly: a leader
		// that answered "not leader" may know no successor yet.
		wait := time.NewTimer(50 * time.Millisecond)
		select {
		case <-changed:
		case <-wait.C:
		case <-ctx.Done():
		}
		wait.Stop()
	}
}

// expire answers the writes whose hold time is over and drops those whose
// callers stopped waiting, keeping the rest.
func (b *batcher) expire(pending []*pendingWrite, lastErr error) []*pendingWrite {
	now := time.Now()
	keep := pending[:0]
	gaveUp := 0
	for _, p := range pending {
		switch {
		case p.ctx.Err() != nil:
			// The caller has answered already.
		case b.c.isStopping(), b.c.drained() && lastErr != nil:
			// Drained, only a write that a try left without a leader is
			// given up: one in a rolling restart, whose leader is fine,
			// goes on (Cluster.Drain).
			p.done <- writeResult{err: outcome(p, raft.ErrClosed, lastErr)}
		case now.After(p.deadline):
			p.done <- writeResult{err: outcome(p, raft.ErrNotLeader, lastErr)}
			gaveUp++
		default:
			keep = append(keep, p)
		}
	}
	if gaveUp > 0 {
		b.c.log.Warn("forwarded writes found no leader to take them within the hold time; answered 503",
			"writes", gaveUp, "hold", forwardHold, "last_error", lastErr)
	}
	return keep
}

// outcome is the error of a write given up on: not committed if no send of
// it can have reached a leader, else of unknown outcome. The cause is for
// the log; the client's message comes from the sentinel alone.
func outcome(p *pendingWrite, notSent, cause error) error {
	if p.sent {
		return fmt.Errorf("%w: %v", raft.ErrUnknownOutcome, cause)
	}
	return fmt.Errorf("%w: %v", notSent, cause)
}

// resentOutcome is the error to answer for p. A full disk's 507 says that
// nothing was stored, but it only speaks for the send it refused: once an
// earlier send may have reached a leader (and been committed, its answer
// lost), a refusal of the resend leaves the outcome unknown. The FSM's own
// answers need no such care, since it answers a resend with the first
// send's result (raft/dedup.go); the disk guard refuses before the FSM.
func resentOutcome(p *pendingWrite, err error) error {
	if p.sent && raft.IsDiskFull(err) {
		return fmt.Errorf("%w: an earlier send may have been committed; the resend was refused: %v", raft.ErrUnknownOutcome, err)
	}
	return err
}

// proposeHere proposes on this node, which leads now.
func (b *batcher) proposeHere(ctx context.Context, pending []*pendingWrite) ([]*pendingWrite, error) {
	cmds := make([]*raft.Command, len(pending))
	for i, p := range pending {
		cmds[i] = p.cmd
	}
	res := b.c.proposeChecked(ctx, cmds)
	var retry []*pendingWrite
	var lastErr error
	for i, p := range pending {
		if again, sent := retryable(res[i].Err); again {
			p.sent = p.sent || sent
			retry, lastErr = append(retry, p), res[i].Err
			continue
		}
		// A leader answers once its own FSM has applied the command.
		p.done <- writeResult{v: res[i].Value, err: resentOutcome(p, res[i].Err)}
	}
	return retry, lastErr
}

// retryable says whether a command's error is the cluster's and not the
// command's, so another try (at the next leader) may succeed, and whether
// the command may have been committed all the same.
func retryable(err error) (again, sent bool) {
	switch {
	case errors.Is(err, raft.ErrUnknownOutcome):
		return true, true
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrTimeout), errors.Is(err, raft.ErrClosed):
		return true, false
	}
	return false, false
}

// leaderRecord is the leader's recorded addresses, or raft.ErrNotLeader
// while there is none (or this node does not know its address yet).
func (b *batcher) leaderRecord() (raft.NodeRecord, error) {
	term := b.leader.changed()
	_, id := b.c.store.Raft().LeaderWithID()
	if id == "" {
		return raft.NodeRecord{}, fmt.Errorf("%w: no leader known", raft.ErrNotLeader)
	}
	now := time.Now()
	if rec, ok := b.known.get(string(id), term, now); ok {
		return rec, nil
	}
	rec, ok, err := b.c.store.Node(string(id))
	if err != nil {
		return raft.NodeRecord{}, err
	}
	if !ok || rec.HTTPAddr == "" {
		return raft.NodeRecord{}, fmt.Errorf("%w: no address recorded for leader %s", raft.ErrNotLeader, id)
	}
	b.known.put(string(id), rec, term, now)
	return rec, nil
}

// leaderCache holds the leader's record until the leader changes, and
// for leaderCacheFor at most. A read of it for every forwarded batch was
// 2 % of a follower's CPU, each a Badger lookup through every level to the
// oldest tables. The record of a member changes only when it starts again
// on new addresses, and a leader that starts again is a new leader for
// leaderWatch, even if re-elected; the time bound covers an observation
// that Raft dropped (its observer channel does not block).
type leaderCache struct {
	mu     sync.Mutex
	id     string
	rec    raft.NodeRecord
	term   <-chan struct{} // leaderWatch.changed when it was read
	readAt time.Time
}

const leaderCacheFor = 5 * time.Second

// get returns the record of leader id read while term was open, and
// lately.
func (c *leaderCache) get(id string, term <-chan struct{}, now time.Time) (raft.NodeRecord, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id != id || c.term != term || now.Sub(c.readAt) >= leaderCacheFor {
		return raft.NodeRecord{}, false
	}
	return c.rec, true
}

func (c *leaderCache) put(id string, rec raft.NodeRecord, term <-chan struct{}, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.id, c.rec, c.term, c.readAt = id, rec, term, now
}

// send makes one round trip to the leader with the pending writes and
// answers those that have an outcome. A leader change during the call
// cancels it: the deposed leader may never answer.
func (b *batcher) send(ctx context.Context, leader raft.NodeRecord, pending []*pendingWrite, changed <-chan struct{}) ([]*pendingWrite, error) {
	body := encodeBatch(pending)
	deadline := pending[0].deadline
	for _, p := range pending {
		deadline = later(deadline, p.deadline)
	}
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-cctx.Done():
		}
	}()
	// Only a request written in full can have been proposed: the leader
	// reads the whole body before it proposes anything.
	var wrote atomic.Bool
	tctx := httptrace.WithClientTrace(cctx, &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}})
	if b.c.opts.ObserveForward != nil {
		b.c.opts.ObserveForward(len(pending))
	}
	var resp forwardResponse
	err := b.c.callNode(tctx, leader.ID, leader.RaftAddr, http.MethodPost, forwardPath, json.RawMessage(body), &resp, true)
	if err == nil && len(resp.Results) != len(pending) {
		err = fmt.Errorf("%w: the leader answered %d results for %d commands", raft.ErrUnknownOutcome, len(resp.Results), len(pending))
	}
	if err != nil {
		var pe *peerError
		if errors.As(err, &pe) {
			// The leader refused the request before proposing any of it
			// (authentication, size): no resend will do better.
			b.c.log.Warn("the leader refused forwarded writes", "leader", leader.ID, "commands", len(pending), "error", err)
			for _, p := range pending {
				p.done <- writeResult{err: outcome(p, resource.Errorf(resource.CodeUnavailable,
					"The write was not committed: the leader refused it (%d); retry shortly.", pe.status), err)}
			}
			return nil, err
		}
		sent := wrote.Load() && !errors.Is(err, raft.ErrNotLeader)
		for _, p := range pending {
			p.sent = p.sent || sent
		}
		b.c.log.Debug("forwarding to the leader failed; resending to the next", "leader", leader.ID,
			"commands", len(pending), "sent", sent, "error", err)
		return pending, err
	}
	var retry, done []*pendingWrite
	var results []writeResult
	var lastErr error
	for i, p := range pending {
		v, err := resp.Results[i].Decode()
		if again, sent := retryable(err); again {
			p.sent = p.sent || sent
			retry, lastErr = append(retry, p), err
			continue
		}
		done, results = append(done, p), append(results, writeResult{v: v, err: resentOutcome(p, err)})
	}
	if len(done) > 0 {
		b.c.wg.Add(1)
		go func() {
			defer b.c.wg.Done()
			b.answerOnceApplied(done, results, resp.Applied)
		}()
	}
	return retry, lastErr
}

// answerOnceApplied answers forwarded writes once this node has applied
// the leader's index, so a client reading from the node it wrote through
// sees its write. One wait serves the whole batch.
func (b *batcher) answerOnceApplied(done []*pendingWrite, results []writeResult, applied uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), forwardHold)
	defer cancel()
	go func() {
		select {
		case <-b.c.stop:
			cancel()
		case <-b.c.drainOver:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := b.c.store.WaitApplied(ctx, applied); err != nil {
		b.c.log.Warn("forwarded writes committed but not yet applied here", "index", applied, "error", err)
		for i := range results {
			if results[i].err == nil {
				// A 2xx now would break read-after-write on this node; a
				// 503 that says the write is done does not.
				results[i] = writeResult{err: &resource.Error{Code: resource.CodeUnavailable, Message: resource.MsgCommittedNotApplied}}
			}
		}
	}
	for i, p := range done {
		p.done <- results[i]
	}
}

// encodeBatch is the forwardRequest of pending, put together from the
// commands' encodings rather than encoding them again.
func encodeBatch(pending []*pendingWrite) []byte {
	n := 16
	for _, p := range pending {
		n += len(p.body) + 1
	}
	b := append(make([]byte, 0, n), `{"commands":[`...)
	for i, p := range pending {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.body...)
	}
	return append(b, "]}"...)
}

func (c *Cluster) isStopping() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// serveForward is the leader's side: it proposes a follower's batch at once,
// so the commands share its group commit, and answers one result each.
func (c *Cluster) serveForward(ctx context.Context, r *http.Request, body []byte) (any, error) {
	cmds, err := decodeForward(body)
	if err != nil {
		return nil, err
	}
	// Only the leader proposes for others: a forwarded write is never
	// forwarded again.
	if !c.store.IsLeader() {
		return nil, raft.ErrNotLeader
	}
	res := c.proposeChecked(ctx, cmds)
	out := forwardResponse{Results: make([]*raft.WireResult, len(res)), Applied: c.store.Applied()}
	for i, r := range res {
		w, err := raft.EncodeResult(r.Value, r.Err, 0)
		if err != nil {
			c.log.Error("a forwarded command's result has no wire form", "op", cmds[i].Op, "error", err)
			w = &raft.WireResult{StoreError: "unknownOutcome"}
		}
		out.Results[i] = w
	}
	if b, ok := out.encode(); ok {
		return b, nil
	}
	return out, nil
}

// proposeChecked proposes the commands that pass checkClock together and
// answers the others with its refusal, each result in its command's place.
func (c *Cluster) proposeChecked(ctx context.Context, cmds []*raft.Command) []raft.Result {
	pass, at, refused := c.checkClocks(cmds)
	if refused == nil {
		return c.store.ProposeAll(ctx, cmds)
	}
	res := make([]raft.Result, len(cmds))
	for i, err := range refused {
		res[i].Err = err
	}
	if len(pass) > 0 {
		for i, r := range c.store.ProposeAll(ctx, pass) {
			res[at[i]] = r
		}
	}
	return res
}

// encode is json.Marshal(r) when every result's is written by hand, as a
// send's is: encoding/json checks and compacts each notification again on
// the way out, which was 2.5 % of a leader's CPU under writes through
// every node of three.
func (r *forwardResponse) encode() (encodedJSON, bool) {
	b := append(make([]byte, 0, 512*len(r.Results)), `{"results":[`...)
	for i, w := range r.Results {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = raft.AppendWireResult(b, w); !ok {
			return nil, false
		}
	}
	b = append(b, `],"applied":`...)
	b = strconv.AppendUint(b, r.Applied, 10)
	return append(b, '}'), true
}

// decodeForward reads a forwardRequest's commands. encodeBatch writes the
// commands one after another in an array, and that array is read in one
// pass when it holds sends alone (raft.DecodeCommands).
func decodeForward(body []byte) ([]*raft.Command, error) {
	const head, tail = `{"commands":`, `}`
	if len(body) > len(head)+len(tail) && string(body[:len(head)]) == head && body[len(body)-1] == '}' {
		if cmds, err := raft.DecodeCommands(body[len(head) : len(body)-1]); err == nil && len(cmds) > 0 && !slices.Contains(cmds, nil) {
			return cmds, nil
		}
	}
	var req forwardRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, resource.Errorf(resource.CodeInvalidRequest, "commands: %v", err)
	}
	cmds := make([]*raft.Command, len(req.Commands))
	for i, b := range req.Commands {
		if err := json.Unmarshal(b, &cmds[i]); err != nil {
			return nil, resource.Errorf(resource.CodeInvalidRequest, "command %d: %v", i, err)
		}
	}
	return cmds, nil
}

// leaderWatch tells waiting senders of every leader change that Raft
// reports, including "no leader" when this node stops hearing from one.
type leaderWatch struct {
	mu sync.Mutex
	ch chan struct{}
}

// changed returns a channel closed at the next leader change.
func (w *leaderWatch) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

func (w *leaderWatch) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// start follows Raft's leader observations until the cluster stops.
func (b *batcher) start() {
	ch := make(chan hraft.Observation, 16)
	obs := hraft.NewObserver(ch, false, func(o *hraft.Observation) bool {
		_, ok := o.Data.(hraft.LeaderObservation)
		return ok
	})
	r := b.c.store.Raft()
	r.RegisterObserver(obs)
	b.c.wg.Add(2)
	go func() {
		defer b.c.wg.Done()
		defer r.DeregisterObserver(obs)
		for {
			select {
			case <-b.c.stop:
				return
			case <-ch:
				b.leader.fire()
			}
		}
	}()
	go b.run()
}
