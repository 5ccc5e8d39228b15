package fanout

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// EngineStore is what the delivery engine needs of the replicated state.
type EngineStore interface {
	Propose(ctx context.Context, cmd *raft.Command) (any, error)
	Subscription(id string) (*resource.SubscriptionRecord, bool, error)
	Notification(uid, nid string) (*resource.NotificationRecord, bool, error)
	Delivery(uid, nid, sid string) (*resource.DeliveryRecord, bool, error)
	PendingDeliveries(fn func(*resource.DeliveryRecord) bool) error
}

// EngineOptions configure the delivery engine.
type EngineOptions struct {
	Store EngineStore
	// Senders by channel type (resource.ChannelWebPush, ...). A channel
	// without a sender is left pending, not failed: its credentials may
	// come with the next restart.
	Senders map[string]Sender
	// Owns reports whether this node runs the deliveries of a user (the
	// owner of the user's slot). Nil: every user.
	Owns func(userID string) bool
	// Workers bounds concurrent attempts; PerHost bounds them per
	// destination host, so one slow host cannot take every worker; one
	// user's deliveries get half the workers (userLimit), so its
	// subscriptions to many slow hosts cannot take them all either.
	Workers, PerHost int
	// Timeout bounds one attempt.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the retry delay, which doubles per
	// attempt, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// WebhookDisableAfter disables a webhook subscription whose deliveries
	// have kept failing this long.
	WebhookDisableAfter time.Duration
	Logger              *slog.Logger
	Registry            prometheus.Registerer
}

// Engine runs the external deliveries of the users this node owns: it
// schedules pending deliveries, sends them through bounded workers, retries
// with backoff, and records outcomes back through Raft in batches.
type Engine struct {
	o   EngineOptions
	log *slog.Logger
	m   *engineMetrics

	mu       sync.Mutex
	queue    taskHeap
	tasks    map[taskKey]*task // queued or in flight
	hostBusy map[string]int
	wake     chan struct{}

	// waiting holds due tasks whose host or user is at its limit, in
	// order, by hostBusy's key; one is released each time an attempt on
	// that host, or for that user, ends.
	waiting map[string][]*task

	// quiet holds, by subscription, until when its endpoint asked not to
	// be sent to (Retry-After). It is every message's to that endpoint,
	// not only the answered one's: a throttled receiver is not to get the
	// next notification at once. In memory only: after a restart the
	// stored retry times still space the pending messages.
	quiet map[string]time.Time
	// quietSweep is the size of quiet at which holdQuiet next drops the
	// holds that ended: twice what the last sweep left (at least
	// quietSweepMin), so that the sweeps cost O(1) per hold however many
	// subscriptions are held at once.
	quietSweep int

	work      chan *task
	outcomes  chan raft.DeliveryOutcome
	outMu     sync.RWMutex // guards outClosed against sends on a closed channel
	outClosed bool
	stop      chan struct{}
	ctx       context.Context // cancelled at Stop, ending attempts in flight
	cancel    context.CancelFunc
	workers   sync.WaitGroup // the dispatcher and the workers
	recorder  sync.WaitGroup
	stopOnce  sync.Once
	// quitting is the recorder's own: once stopping, a batch that could
	// not be recorded ends the recording (the rest stay pending).
	quitting bool
}

type taskKey struct{ uid, nid, sid string }

type task struct {
	key      taskKey
	channel  string
	host     string // what PerHost limits: the endpoint's host, or the provider
	seq      uint64
	due      time.Time
	attempts int
	index    int // in the heap; -1 when not queued
	running  bool
	waiting  bool // held in Engine.waiting for its host
	again    bool // a newer message arrived while running
	// fallback: the iOS fallback alert is what is due next. The engine
	// knows before the store does, since outcomes commit asynchronously.
	fallback bool
}

// NewEngine builds an engine; Start runs it.
func NewEngine(o EngineOptions) *Engine {
	if o.Workers <= 0 {
		o.Workers = 32
	}
	if o.PerHost <= 0 {
		o.PerHost = 8
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Hour
	}
	if o.WebhookDisableAfter <= 0 {
		o.WebhookDisableAfter = 72 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	e := &Engine{o: o, log: o.Logger, m: newEngineMetrics(o.Registry),
		tasks: map[taskKey]*task{}, hostBusy: map[string]int{}, wake: make(chan struct{}, 1),
		work: make(chan *task), outcomes: make(chan raft.DeliveryOutcome, 4096),
		stop: make(chan struct{}), waiting: map[string][]*task{}, quiet: map[string]time.Time{}}
	// The queue an operator alerts on: deliveries owed and not yet done,
	// whether waiting for their time, their host, or a worker.
	o.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_delivery_queue",
		Help: "Deliveries this node owes: queued, backing off, or in flight."},
		func() float64 { return float64(e.Pending()) }))
	return e
}

// Start loads the pending deliveries of owned users and starts working.
func (e *Engine) Start() error {
	err := e.o.Store.PendingDeliveries(func(d *resource.DeliveryRecord) bool {
		if e.o.Senders[d.ChannelType] != nil && e.owns(d.UserID) {
			e.schedule(taskKey{d.UserID, d.NotificationID, d.SubscriptionID}, d.ChannelType, d.Host, d.PendingSeq,
				d.NextAttempt.Time, trailingRetries(d.AttemptHistory))
		}
		return true
	})
	if err != nil {
		return err
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.workers.Add(1 + e.o.Workers)
	e.recorder.Add(1)
	go e.dispatch()
	go e.record()
	for i := 0; i < e.o.Workers; i++ {
		go e.worker()
	}
	return nil
}

// Stop ends the workers (attempts in flight are cut short and count as
// retries), then writes every outcome reached. What is still pending stays
// in the store and resumes at the next start.
func (e *Engine) Stop() {
	e.stopOnce.Do(func() {
		close(e.stop)
		if e.cancel != nil {
			e.cancel()
		}
		e.workers.Wait()
		e.outMu.Lock()
		e.outClosed = true
		close(e.outcomes)
		e.outMu.Unlock()
		e.recorder.Wait()
	})
}

// Rescan schedules the pending deliveries of owned users that the engine
// does not hold yet: after this node gained slots (or leadership), the
// deliveries it now owns were committed while another node ran them.
func (e *Engine) Rescan() error {
	return e.o.Store.PendingDeliveries(func(d *resource.DeliveryRecord) bool {
		k := taskKey{d.UserID, d.NotificationID, d.SubscriptionID}
		e.mu.Lock()
		_, held := e.tasks[k]
		e.mu.Unlock()
		if !held && e.o.Senders[d.ChannelType] != nil && e.owns(d.UserID) {
			e.schedule(k, d.ChannelType, d.Host, d.PendingSeq, d.NextAttempt.Time, trailingRetries(d.AttemptHistory))
		}
		return true
	})
}

func (e *Engine) owns(uid string) bool { return e.o.Owns == nil || e.o.Owns(uid) }

// Notify takes newly committed deliveries. It runs on the FSM goroutine, so
// it only queues.
func (e *Engine) Notify(refs []resource.DeliveryRef) {
	now := time.Now()
	for _, r := range refs {
		// A channel without a sender (live, or no credentials configured)
		// keeps its records pending in the store, not in memory; a start
		// with the credentials picks them up.
		if !e.owns(r.UserID) {
			continue
		}
		if e.o.Senders[r.ChannelType] == nil {
			if r.ChannelType != resource.ChannelLive {
				e.m.unconfigured.WithLabelValues(r.ChannelType).Inc()
			}
			continue
		}
		e.schedule(taskKey{r.UserID, r.NotificationID, r.SubscriptionID}, r.ChannelType, r.Host, r.Seq, now, -1)
	}
}

// schedule queues a delivery at due, or brings a queued one forward to the
// newer message. attempts < 0 keeps what the task knows.
func (e *Engine) schedule(k taskKey, channel, host string, seq uint64, due time.Time, attempts int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.tasks[k]
	if t == nil {
		if host == "" {
			host = channel
		}
		t = &task{key: k, channel: channel, host: host, seq: seq, due: due, index: -1, attempts: max(attempts, 0)}
		e.tasks[k] = t
		heap.Push(&e.queue, t)
		e.poke()
		return
	}
	if seq > t.seq {
		t.seq = seq
		t.attempts = 0 // a new message starts a new schedule
		t.fallback = false
	}
	if t.running {
		t.again = true
		return
	}
	if t.waiting {
		return // already due; it runs when its host has room
	}
	if due.Before(t.due) {
		t.due = due
		heap.Fix(&e.queue, t.index)
		e.poke()
	}
}

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// hostLimit is how many attempts may run at once to t's destination. FCM
// and APNs are one "host" each but serve any load, so they may use half the
// workers; an ordinary host gets PerHost.
func (e *Engine) hostLimit(t *task) int {
	if t.channel == resource.ChannelFCM || t.channel == resource.ChannelAPNs {
		return max(e.o.PerHost, e.o.Workers/2)
	}
	return e.o.PerHost
}

// userSlot is the key in hostBusy and waiting of t's user. No host name
// holds a NUL.
func userSlot(t *task) string { return "\x00user:" + t.key.uid }

// userLimit is how many attempts one user's deliveries may run at once,
// however many hosts its subscriptions name (a wildcard DNS name gives any
// number): half the workers, so that one user's slow hosts leave the other
// half to everyone else, and at least one more than a host gets, so that
// one slow host of a user does not hold up its other devices.
func (e *Engine) userLimit() int { return max(e.o.PerHost+1, e.o.Workers/2) }

// dispatch hands due tasks to workers, holding back those whose host is at
// its limit.
func (e *Engine) dispatch() {
	defer e.workers.Done()
	defer close(e.work)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		t, wait := e.next()
		if t != nil {
			select {
			case e.work <- t:
				continue
			case <-e.stop:
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-e.stop:
			return
		case <-e.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// next pops a due task that may run now, or says how long to wait.
func (e *Engine) next() (*task, time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	for e.queue.Len() > 0 {
		t := e.queue[0]
		if wait := t.due.Sub(now); wait > 0 {
			return nil, wait
		}
		heap.Pop(&e.queue)
		if until, ok := e.quiet[t.key.sid]; ok {
			if now.Before(until) {
				t.due = until
				heap.Push(&e.queue, t)
				continue
			}
			delete(e.quiet, t.key.sid)
		}
		full := ""
		if e.hostBusy[t.host] >= e.hostLimit(t) {
			full = t.host
		} else if u := userSlot(t); e.hostBusy[u] >= e.userLimit() {
			full = u
		}
		if full != "" {
			t.waiting = true
			e.waiting[full] = append(e.waiting[full], t)
			continue
		}
		e.hostBusy[t.host]++
		e.hostBusy[userSlot(t)]++
		t.running = true
		return t, 0
	}
	return nil, time.Hour
}

func (e *Engine) worker() {
	defer e.workers.Done()
	for t := range e.work {
		// The attempt works on a copy: schedule may change the task
		// meanwhile, under the lock.
		e.mu.Lock()
		st := *t
		e.mu.Unlock()
		next, ok := e.attempt(&st)
		e.mu.Lock()
		if st.seq == t.seq {
			t.attempts, t.fallback = st.attempts, st.fallback
		}
		for _, slot := range [2]string{t.host, userSlot(t)} {
			if e.hostBusy[slot]--; e.hostBusy[slot] <= 0 {
				delete(e.hostBusy, slot)
			}
			if w := e.waiting[slot]; len(w) > 0 {
				// A slot on this host, or for this user, is free: the
				// longest-waiting task goes next (and waits again if its
				// other limit is still reached).
				next := w[0]
				w[0] = nil
				if e.waiting[slot] = w[1:]; len(w) == 1 {
					delete(e.waiting, slot)
				}
				next.waiting = false
				next.due = time.Now()
				heap.Push(&e.queue, next)
			}
		}
		t.running = false
		switch {
		case t.again:
			t.again = false
			t.due = time.Now()
			heap.Push(&e.queue, t)
		case ok:
			t.due = next
			heap.Push(&e.queue, t)
		default:
			delete(e.tasks, t.key)
		}
		e.mu.Unlock()
		e.poke()
	}
}

// attempt sends one message and reports its outcome. It returns when to try
// again and true when the delivery stays pending. t is the worker's copy.
func (e *Engine) attempt(t *task) (time.Time, bool) {
	k := t.key
	if !e.owns(k.uid) {
		// The user's slot moved to another node, which picks the delivery
		// up from the store; sending here too would deliver it twice.
		return time.Time{}, false
	}
	d, ok, err := e.o.Store.Delivery(k.uid, k.nid, k.sid)
	if err != nil {
		e.log.Error("read delivery", "error", err)
		return time.Now().Add(e.o.MinBackoff), true
	}
	if !ok || d.PendingSeq == 0 {
		return time.Time{}, false
	}
	seq := max(d.PendingSeq, t.seq)
	pending := d.PendingType
	if t.fallback {
		t.fallback = false
		// A newer change (read, dismissed, deleted) supersedes the fallback.
		if d.PendingType == resource.ChangeCreated || d.PendingType == raft.PendingFallback {
			pending = raft.PendingFallback
		}
	}
	out := raft.DeliveryOutcome{UserID: k.uid, NotificationID: k.nid, SubscriptionID: k.sid, Seq: seq}
	finish := func(outcome, msg string) (time.Time, bool) {
		out.Outcome, out.Error, out.At = outcome, msg, time.Now().UnixNano()
		e.report(out)
		return time.Time{}, false
	}
	sub, ok, err := e.o.Store.Subscription(k.sid)
	now := time.Now()
	if err != nil {
		return now.Add(e.o.MinBackoff), true
	}
	if !ok || !sub.ActiveAt(now) {
		return finish(raft.OutcomeSkipped, "the subscription is no longer active")
	}
	n, ok, err := e.o.Store.Notification(k.uid, k.nid)
	if err != nil {
		return now.Add(e.o.MinBackoff), true
	}
	if !ok {
		return time.Time{}, false // purged: its records are gone too
	}
	// The delivery record and the notification are two reads: a change
	// applied between them would send the newer notification under the
	// older change's message id, and a receiver that drops duplicates by
	// webhook-id would then drop the newer state. Every change of the
	// notification moves the record's pending change, so an unmoved
	// record means the notification read matches it; a moved one means
	// trying again at once with the newer change.
	d2, ok, err := e.o.Store.Delivery(k.uid, k.nid, k.sid)
	if err != nil {
		return now.Add(e.o.MinBackoff), true
	}
	if !ok || d2.PendingSeq != d.PendingSeq || d2.PendingType != d.PendingType {
		return now, true
	}
	if !now.Before(n.ExpirationDateTime.Time) {
		return finish(raft.OutcomeFailed, "the notification expired before it could be delivered")
	}
	sender := e.o.Senders[t.channel]
	if sender == nil {
		return time.Time{}, false // not queued in the first place; see Notify
	}
	// The id names the change and the subscription: two subscriptions
	// that get the same change get two messages, and a receiver that
	// serves both drops an id it has seen (Standard Webhooks).
	msgSeq := seq
	if n.Status == resource.StatusDeleted && (pending == resource.ChangeCreated || pending == resource.ChangeUpdated) {
		// The deletion did not fan out to this subscription (it was
		// inactive then), so the change pending here is older than the
		// notification's state: it goes out as the deletion, under the
		// deletion's change, not as a change of a deleted notification
		// (whose tombstone holds no content from rules level 4).
		pending, msgSeq = resource.ChangeDeleted, max(seq, n.Seq)
	}
	msg := &Message{Type: pending, Notification: n.Notification,
		DeliveryID: "msg_" + k.nid + "_" + strconv.FormatUint(msgSeq, 36) + "_" + k.sid}
	switch msg.Type {
	case resource.ChangeDeleted:
		msg.Reason = resource.ChangeDeleted
	case raft.PendingFallback:
		// The raw push went out and the device has not fetched the
		// notification since: show the fallback content as an alert. A
		// deleted notification shows none: from rules level 4 its
		// tombstone holds no fallbackPolicy.
		if n.Status != resource.StatusActive || n.FallbackPolicy == nil || n.FallbackPolicy.EndpointFallback == nil {
			return finish(raft.OutcomeSkipped, "the notification was deleted before its fallback was due")
		}
		ef := n.FallbackPolicy.EndpointFallback
		msg.Type = resource.ChangeCreated
		msg.DeliveryID += "_fallback"
		msg.Notification.Payload = resource.Payload{VisualContent: ef.VisualContent}
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.o.Timeout)
	start := time.Now()
	res := sender.Send(ctx, sub, msg)
	cancel()
	end := time.Now()
	e.m.latency.WithLabelValues(t.channel).Observe(end.Sub(start).Seconds())
	out.Attempted, out.Error, out.At = true, res.Err, end.UnixNano()
	t.attempts++
	var due time.Time
	switch res.Outcome {
	case Delivered:
		out.Outcome = raft.OutcomeDelivered
		if delay, ok := fallbackDelay(sub, n, pending); ok {
			due = end.Add(delay)
			out.FallbackAt = due.UnixNano()
			t.fallback = true
		}
	case Disable:
		out.Outcome = raft.OutcomeDisable
	case Failed:
		out.Outcome = raft.OutcomeFailed
		out.FailingAgain = e.failingAgain(sub, d, end)
	default:
		out.FailingAgain = e.failingAgain(sub, d, end)
		if !out.FailingAgain && e.keptFailing(sub, end) {
			out.Outcome = raft.OutcomeDisable
			out.Error = "the webhook kept failing for " + e.o.WebhookDisableAfter.String() + ": " + res.Err
			break
		}
		if res.RetryAfter > 0 {
			e.holdQuiet(k.sid, end.Add(res.RetryAfter))
		}
		next := end.Add(max(e.backoff(t.attempts), res.RetryAfter))
		if !next.Before(n.ExpirationDateTime.Time) {
			out.Outcome = raft.OutcomeFailed
			out.Error = "gave up at the notification's expiry: " + res.Err
			break
		}
		out.Outcome, out.NextAttempt = raft.OutcomeRetry, next.UnixNano()
		due = next
	}
	// Counted as recorded, not as the endpoint answered: a retry the
	// engine ends (the webhook kept failing, the notification expired)
	// is a disable or a failure in the delivery's history, and an alert
	// on disables must see it too.
	e.m.attempts.WithLabelValues(t.channel, out.Outcome).Inc()
	e.report(out)
	return due, !due.IsZero()
}

// holdQuiet keeps every message to subscription sid back until until.
func (e *Engine) holdQuiet(sid string, until time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.quiet) >= max(e.quietSweep, quietSweepMin) {
		// An entry goes when a message of its subscription is next due;
		// one whose subscription gets no more would stay. Swept at every
		// hold once the map reached a fixed size, thousands of held
		// subscriptions (a push service throttling a project) made each
		// hold a scan of them all under e.mu.
		now := time.Now()
		for id, u := range e.quiet {
			if !now.Before(u) {
				delete(e.quiet, id)
			}
		}
		e.quietSweep = 2 * len(e.quiet)
	}
	if until.After(e.quiet[sid]) {
		e.quiet[sid] = until
	}
}

// quietSweepMin is the size of Engine.quiet below which holdQuiet does not
// sweep it.
const quietSweepMin = 4096

// fallbackDelay says whether a delivered message needs the iOS fallback of
// Graph's fallbackPolicy, and after how long: a high-priority raw
// notification sent to an iOS device as a silent push, which iOS may never
// hand to the app, whether through APNs or through FCM (which hands it to
// APNs as a background push).
func fallbackDelay(sub *resource.SubscriptionRecord, n *resource.NotificationRecord, pendingType string) (time.Duration, bool) {
	ios := sub.Channel.Type == resource.ChannelAPNs ||
		sub.Channel.Type == resource.ChannelFCM && sub.PlatformType == resource.PlatformIOS
	if !ios || pendingType != resource.ChangeCreated ||
		n.FallbackPolicy == nil || n.FallbackPolicy.EndpointFallback == nil ||
		n.Priority != resource.PriorityHigh || n.Payload.RawContent == nil || n.Payload.VisualContent != nil {
		return 0, false
	}
	return time.Duration(n.FallbackPolicy.EndpointFallback.FallbackDelayInSeconds) * time.Second, true
}

// trailingRetries counts the retries since the last other outcome: the
// backoff of the message now pending resumes from there, not from every
// attempt the delivery ever made.
func trailingRetries(h []resource.Attempt) int {
	n := 0
	for i := len(h) - 1; i >= 0 && h[i].Outcome == raft.OutcomeRetry; i-- {
		n++
	}
	return n
}

// backoff doubles from MinBackoff per attempt up to MaxBackoff, with ±20%
// jitter so that retries of one outage do not arrive together.
func (e *Engine) backoff(attempts int) time.Duration {
	d := e.o.MinBackoff
	for i := 1; i < attempts && d < e.o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, e.o.MaxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// keptFailing reports whether a webhook has failed without a success for
// longer than WebhookDisableAfter, by the replicated failing clock.
func (e *Engine) keptFailing(sub *resource.SubscriptionRecord, now time.Time) bool {
	return sub.Channel.Type == resource.ChannelWebhook && sub.FailingSince != 0 &&
		now.Sub(time.Unix(0, sub.FailingSince)) >= e.o.WebhookDisableAfter
}

// failingAgain reports whether a failure at now begins a new outage: the
// failing clock runs, but no attempt failed or had a retry due for longer
// than a retry may run late (behind a busy host), so nothing was owed in
// between. A webhook that failed once before a quiet weekend must not be
// disabled by Monday's first 503. A retry of d is owed however late it
// runs (the node was down, the user's slot moved): its failure continues
// the outage. A record without FailingUntil was written under rules
// before level 3, which keep one clock for all failures: without
// FailingUntil a long outage would look new at every retry and never be
// disabled.
func (e *Engine) failingAgain(sub *resource.SubscriptionRecord, d *resource.DeliveryRecord, now time.Time) bool {
	if sub.FailingSince == 0 || sub.FailingUntil == 0 || trailingRetries(d.AttemptHistory) > 0 {
		return false
	}
	return now.Sub(time.Unix(0, sub.FailingUntil)) > e.o.MaxBackoff+2*e.o.Timeout
}

// Report queues an outcome to record, such as a live stream's receipt.
func (e *Engine) Report(o raft.DeliveryOutcome) { e.report(o) }

// report hands an outcome to the recorder. After Stop it is dropped: the
// delivery stays pending and is redone, which at-least-once allows.
func (e *Engine) report(o raft.DeliveryOutcome) {
	e.outMu.RLock()
	defer e.outMu.RUnlock()
	if !e.outClosed {
		e.outcomes <- o
	}
}

// record writes outcomes through Raft in batches: whatever arrived while
// the previous batch was committing. It ends when Stop closes the channel,
// after writing everything that was reported.
func (e *Engine) record() {
	defer e.recorder.Done()
	for o := range e.outcomes {
		batch := []raft.DeliveryOutcome{o}
	drain:
		for len(batch) < 512 {
			select {
			case o, ok := <-e.outcomes:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		if !e.quitting {
			e.propose(batch)
		}
	}
}

func (e *Engine) propose(batch []raft.DeliveryOutcome) {
	e.m.outcomeBatch.Observe(float64(len(batch)))
	// Outcomes are retried until they commit: a delivered message whose
	// outcome is lost would be sent again. While Raft cannot commit, the
	// recorder waits and the outcome queue fills, which holds the workers.
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := e.o.Store.Propose(ctx, &raft.Command{Op: raft.OpDeliveryOutcomes, Now: time.Now().UnixNano(), Outcomes: batch})
		cancel()
		if resource.CommittedNotApplied(err) {
			// Recorded: only this node's copy lags (a follower just back
			// from a pause). Called a failure, it read as deliveries to
			// be made again.
			return
		}
		var re *resource.Error
		if err == nil || errors.As(err, &re) || errors.Is(err, raft.ErrClosed) {
			if err != nil {
				e.log.Warn("recording delivery outcomes failed", "outcomes", len(batch), "error", err)
			}
			return
		}
		select {
		case <-e.stop:
			// Shutting down without a leader to take them: the records
			// stay pending and are redone, and so are the batches after
			// this one. Each try waits out the forwarding's hold (5 s),
			// so retries here held the node's shutdown to its timeout.
			e.log.Warn("recording delivery outcomes failed at shutdown; they stay pending", "outcomes", len(batch), "error", err)
			e.quitting = true
			return
		default:
		}
		e.log.Warn("recording delivery outcomes failed; retrying", "outcomes", len(batch), "error", err)
		time.Sleep(min(5*time.Second, 100*time.Millisecond<<min(try, 6)))
	}
}

// Pending is the number of deliveries queued or in flight.
func (e *Engine) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.tasks)
}

type taskHeap []*task

func (h taskHeap) Len() int           { return len(h) }
func (h taskHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h taskHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *taskHeap) Push(x any) {
	t := x.(*task)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}

type engineMetrics struct {
	attempts     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	outcomeBatch prometheus.Histogram
	unconfigured *prometheus.CounterVec
}

func newEngineMetrics(reg prometheus.Registerer) *engineMetrics {
	m := &engineMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_delivery_attempts_total",
			Help: "Delivery attempts by channel and outcome (delivered, retry, disable, failed)."}, []string{"channel", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_delivery_seconds",
			Help: "Time of one delivery attempt, by channel.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}, []string{"channel"}),
		outcomeBatch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "herald_delivery_outcome_batch",
			Help: "Delivery outcomes per Raft command.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		unconfigured: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_delivery_unconfigured_total",
			Help: "Deliveries held because their channel has no credentials configured."}, []string{"channel"}),
	}
	// Every series exists from the start at zero, so that an alert on
	// increase() sees the first attempt or the first held delivery, not
	// only the ones after a series appeared (found by review).
	for _, ch := range []string{resource.ChannelWebPush, resource.ChannelWebhook, resource.ChannelFCM, resource.ChannelAPNs} {
		for _, o := range []Outcome{Delivered, Retry, Disable, Failed} {
			m.attempts.WithLabelValues(ch, o.String())
		}
		m.unconfigured.WithLabelValues(ch)
	}
	reg.MustRegister(m.attempts, m.latency, m.outcomeBatch, m.unconfigured)
	return m
}
