package fanout

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// scriptSender answers each attempt with the next scripted result (the
// last one repeats) and records the messages it got. It stands in for a
// channel's sender; the senders' own tests cover the wire protocols.
type scriptSender struct {
	mu     sync.Mutex
	script []Result
	got    []*Message
	block  chan struct{} // when set, Send waits for it or for ctx
}

func (s *scriptSender) Send(ctx context.Context, sub *resource.SubscriptionRecord, m *Message) Result {
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return Result{Outcome: Retry, Err: "timeout"}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, m)
	r := s.script[min(len(s.got)-1, len(s.script)-1)]
	return r
}

func (s *scriptSender) messages() []*Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Message{}, s.got...)
}

type fixture struct {
	t     *testing.T
	dir   string
	store *raft.Store
	user  string
	app   *resource.ApplicationRecord
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (f *fixture) open(engine func() *Engine) *Engine {
	var e *Engine
	s, err := raft.Open(raft.Options{Dir: f.dir, NodeID: "n1", RaftAddr: freeAddr(f.t), Bootstrap: true,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, Logger: quiet,
		OnDeliveries: func(refs []resource.DeliveryRef) {
			if e != nil {
				e.Notify(refs)
			}
		}})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		f.t.Fatal(err)
	}
	f.store = s
	e = engine()
	if err := e.Start(); err != nil {
		f.t.Fatal(err)
	}
	return e
}

func newFixture(t *testing.T) *fixture {
	return &fixture{t: t, dir: t.TempDir()}
}

func (f *fixture) propose(c *raft.Command) any {
	f.t.Helper()
	c.Now = time.Now().UnixNano()
	v, err := f.store.Propose(context.Background(), c)
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

func (f *fixture) setup() {
	u := &resource.UserRecord{User: resource.User{ID: resource.NewGUID(), UserPrincipalName: "u" + resource.NewSecret(4), AccountEnabled: true}}
	f.user = u.ID
	f.app = &resource.ApplicationRecord{ID: resource.NewGUID(), AppID: resource.NewGUID(), TargetHostName: "a.example"}
	f.propose(&raft.Command{Op: raft.OpCreateUser, User: u})
	f.propose(&raft.Command{Op: raft.OpCreateApp, App: f.app})
}

// rulesAt raises the store's rules level, as a cluster's leader does once
// every member knows it.
func (f *fixture) rulesAt(level int) {
	f.propose(&raft.Command{Op: raft.OpSetRules, Level: level})
}

func (f *fixture) subscribe(url string) string {
	s := &resource.SubscriptionRecord{Subscription: resource.Subscription{ID: resource.NewSecret(18), UserID: f.user,
		TargetHostName: "a.example", PlatformType: resource.PlatformWeb, Status: resource.SubActive,
		Channel:            resource.Channel{Type: resource.ChannelWebhook, URL: url},
		ExpirationDateTime: resource.At(time.Now().Add(time.Hour))}, AppID: f.app.ID, WebhookSecret: "whsec_x"}
	f.propose(&raft.Command{Op: raft.OpCreateSub, Sub: s})
	return s.ID
}

func (f *fixture) send(title string) string {
	now := time.Now()
	in := resource.NotificationInput{Payload: &resource.Payload{VisualContent: &resource.VisualContent{Title: title}}}
	if err := in.Validate(now, "a.example"); err != nil {
		f.t.Fatal(err)
	}
	n := &resource.NotificationRecord{Notification: in.NewNotification(resource.NewNotificationID(now), now), UserID: f.user, AppID: f.app.ID}
	return f.propose(&raft.Command{Op: raft.OpSend, Notif: n}).(raft.SendResult).Notification.ID
}

func (f *fixture) waitDelivery(nid, sid string, ok func(*resource.DeliveryRecord) bool) *resource.DeliveryRecord {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, found, err := f.store.Delivery(f.user, nid, sid)
		if err != nil {
			f.t.Fatal(err)
		}
		if found && ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("delivery %s→%s did not reach the expected state; last %+v", nid, sid, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func engineWith(f *fixture, s Sender) func() *Engine {
	return engineOver(f, s, quiet, nil)
}

// engineOver is engineWith logging to logger, over the store wrap makes of
// the fixture's (nil: the fixture's own).
func engineOver(f *fixture, s Sender, logger *slog.Logger, wrap func(EngineStore) EngineStore) func() *Engine {
	return func() *Engine {
		var store EngineStore = f.store
		if wrap != nil {
			store = wrap(store)
		}
		return NewEngine(EngineOptions{Store: store, Senders: map[string]Sender{resource.ChannelWebhook: s},
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Timeout: 200 * time.Millisecond, Logger: logger})
	}
}

func TestEngineRetriesUntilDelivered(t *testing.T) {
	f := newFixture(t)
	s := &scriptSender{script: []Result{{Outcome: Retry, Err: "500"}, {Outcome: Retry, Err: "429", RetryAfter: 20 * time.Millisecond}, {Outcome: Delivered}}}
	e := f.open(engineWith(f, s))
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	sid := f.subscribe("https://hooks.example/a")
	nid := f.send("build finished")
	d := f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryDelivered })
	if d.Attempts != 3 || d.DeliveredDateTime.IsZero() || d.LastError != nil || d.PendingSeq != 0 {
		t.Fatalf("delivered record = %+v, want 3 attempts, a delivery time, no error, nothing pending", d)
	}
	msgs := s.messages()
	if len(msgs) != 3 || msgs[0].DeliveryID != msgs[2].DeliveryID || msgs[0].Type != resource.ChangeCreated {
		t.Fatalf("messages = %+v: want 3 attempts of one created message with one delivery id", msgs)
	}
}

func TestEngineDisablesGoneEndpoint(t *testing.T) {
	f := newFixture(t)
	s := &scriptSender{script: []Result{{Outcome: Disable, Err: "webhook answered 410 Gone"}}}
	e := f.open(engineWith(f, s))
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	sid := f.subscribe("https://hooks.example/a")
	nid := f.send("hello")
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryFailed })
	sub, _, _ := f.store.Subscription(sid)
	if sub.Status != resource.SubDisabled || sub.StatusReason == nil || *sub.StatusReason != "webhook answered 410 Gone" {
		t.Fatalf("subscription = %+v, want disabled with the reason", sub.Subscription)
	}
	// A disabled subscription gets no further deliveries.
	nid2 := f.send("again")
	if ds, _ := f.store.Deliveries(f.user, nid2); len(ds) != 0 {
		t.Fatalf("a disabled subscription got a delivery record: %+v", ds)
	}
}

func TestEngineSlowHostDoesNotDelayOthers(t *testing.T) {
	f := newFixture(t)
	slow := &scriptSender{script: []Result{{Outcome: Delivered}}, block: make(chan struct{})}
	fast := &scriptSender{script: []Result{{Outcome: Delivered}}}
	router := senderFunc(func(ctx context.Context, sub *resource.SubscriptionRecord, m *Message) Result {
		if sub.Channel.URL == "https://slow.example/hook" {
			return slow.Send(ctx, sub, m)
		}
		return fast.Send(ctx, sub, m)
	})
	e := f.open(func() *Engine {
		return NewEngine(EngineOptions{Store: f.store, Senders: map[string]Sender{resource.ChannelWebhook: router},
			Workers: 4, PerHost: 2, MinBackoff: time.Hour, Timeout: time.Hour, Logger: quiet})
	})
	defer f.store.Close()
	defer e.Stop()
	defer close(slow.block)
	f.setup()
	var slowSubs []string
	for i := 0; i < 3; i++ {
		slowSubs = append(slowSubs, f.subscribe("https://slow.example/hook"))
	}
	fastSub := f.subscribe("https://fast.example/hook")
	for i := 0; i < 5; i++ {
		nid := f.send("n")
		f.waitDelivery(nid, fastSub, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryDelivered })
	}
	if got := len(slow.messages()); got != 0 {
		t.Fatalf("the slow host finished %d sends while blocked", got)
	}
}

// A user whose subscriptions name many slow hosts (a wildcard DNS name gives
// any number) held every worker, since each host stayed under PerHost: every
// other user's deliveries waited behind attempts that each took the whole
// timeout. One user gets PerHost attempts at once, whatever the hosts.
func TestEngineOneUsersSlowHostsDoNotHoldEveryWorker(t *testing.T) {
	f := newFixture(t)
	slow := &scriptSender{script: []Result{{Outcome: Delivered}}, block: make(chan struct{})}
	fast := &scriptSender{script: []Result{{Outcome: Delivered}}}
	router := senderFunc(func(ctx context.Context, sub *resource.SubscriptionRecord, m *Message) Result {
		if strings.HasSuffix(sub.Channel.URL, ".slow.example/hook") {
			return slow.Send(ctx, sub, m)
		}
		return fast.Send(ctx, sub, m)
	})
	e := f.open(func() *Engine {
		return NewEngine(EngineOptions{Store: f.store, Senders: map[string]Sender{resource.ChannelWebhook: router},
			Workers: 4, PerHost: 2, MinBackoff: time.Hour, Timeout: time.Hour, Logger: quiet})
	})
	defer f.store.Close()
	defer e.Stop()
	defer close(slow.block)
	f.setup()
	for i := 0; i < 6; i++ {
		f.subscribe(fmt.Sprintf("https://h%d.slow.example/hook", i))
	}
	f.send("to the user with slow hosts")
	// Another user, whose one host answers at once.
	other := &resource.UserRecord{User: resource.User{ID: resource.NewGUID(), UserPrincipalName: "o" + resource.NewSecret(4), AccountEnabled: true}}
	f.propose(&raft.Command{Op: raft.OpCreateUser, User: other})
	f.user = other.ID
	sid := f.subscribe("https://fast.example/hook")
	for i := 0; i < 3; i++ {
		nid := f.send("n")
		f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryDelivered })
	}
	if got := len(slow.messages()); got != 0 {
		t.Fatalf("the slow hosts finished %d sends while blocked", got)
	}
}

type senderFunc func(ctx context.Context, sub *resource.SubscriptionRecord, m *Message) Result

func (f senderFunc) Send(ctx context.Context, sub *resource.SubscriptionRecord, m *Message) Result {
	return f(ctx, sub, m)
}

func TestEngineResumesRetryAfterRestartWithSameDeliveryID(t *testing.T) {
	f := newFixture(t)
	down := &scriptSender{script: []Result{{Outcome: Retry, Err: "connection refused"}}}
	e := f.open(engineWith(f, down))
	f.setup()
	sid := f.subscribe("https://hooks.example/a")
	nid := f.send("resume me")
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.Attempts >= 2 })
	e.Stop()
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}

	up := &scriptSender{script: []Result{{Outcome: Delivered}}}
	e = f.open(engineWith(f, up))
	defer f.store.Close()
	defer e.Stop()
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryDelivered })
	before, after := down.messages(), up.messages()
	if len(after) != 1 || after[0].DeliveryID != before[0].DeliveryID {
		t.Fatalf("after restart: %d messages, id %q; want one with the earlier id %q", len(after), after[0].DeliveryID, before[0].DeliveryID)
	}
}

func TestEngineSkipsLiveAndUnownedUsers(t *testing.T) {
	f := newFixture(t)
	s := &scriptSender{script: []Result{{Outcome: Delivered}}}
	e := f.open(func() *Engine {
		return NewEngine(EngineOptions{Store: f.store, Senders: map[string]Sender{resource.ChannelWebhook: s},
			Owns: func(string) bool { return false }, Logger: quiet})
	})
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	sid := f.subscribe("https://hooks.example/a")
	nid := f.send("not mine")
	d, ok, _ := f.store.Delivery(f.user, nid, sid)
	if !ok || d.State != resource.DeliveryPending {
		t.Fatalf("record = %+v, want pending (another node owns the user)", d)
	}
	if e.Pending() != 0 {
		t.Fatalf("engine queued %d deliveries of a user it does not own", e.Pending())
	}
}

func (f *fixture) subscribeAPNs() string {
	s := &resource.SubscriptionRecord{Subscription: resource.Subscription{ID: resource.NewSecret(18), UserID: f.user,
		TargetHostName: "a.example", PlatformType: resource.PlatformIOS, Status: resource.SubActive,
		Channel:            resource.Channel{Type: resource.ChannelAPNs, Token: "00ff", Topic: "com.example.app", Environment: "sandbox"},
		ExpirationDateTime: resource.At(time.Now().Add(time.Hour))}, AppID: f.app.ID}
	f.propose(&raft.Command{Op: raft.OpCreateSub, Sub: s})
	return s.ID
}

// sendRaw sends a high-priority raw notification with an iOS fallback after
// delay seconds. It builds the record directly: the API's 60 s minimum delay
// would make the test slow, and the engine does not depend on it.
func (f *fixture) sendRaw(delay int) string {
	now := time.Now()
	raw := "sync:42"
	n := &resource.NotificationRecord{Notification: resource.Notification{ID: resource.NewNotificationID(now),
		TargetHostName: "a.example", Payload: resource.Payload{RawContent: &raw}, Priority: resource.PriorityHigh,
		FallbackPolicy: &resource.FallbackPolicy{EndpointFallback: &resource.EndpointFallback{
			PlatformTypes: resource.StringOrList{"iOS"}, FallbackDelayInSeconds: delay,
			VisualContent: &resource.VisualContent{Title: "You have a new message"}}},
		ExpirationDateTime: resource.At(now.Add(time.Hour)), CreatedDateTime: resource.At(now),
		ReadState: resource.ReadUnread, UserActionState: resource.ActionNone, Status: resource.StatusActive},
		UserID: f.user, AppID: f.app.ID}
	return f.propose(&raft.Command{Op: raft.OpSend, Notif: n}).(raft.SendResult).Notification.ID
}

func apnsEngine(f *fixture, s Sender) func() *Engine {
	return func() *Engine {
		return NewEngine(EngineOptions{Store: f.store, Senders: map[string]Sender{resource.ChannelAPNs: s},
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: quiet})
	}
}

func TestEngineSendsIOSFallbackWhenRawIsNotFetched(t *testing.T) {
	f := newFixture(t)
	s := &scriptSender{script: []Result{{Outcome: Delivered}}}
	e := f.open(apnsEngine(f, s))
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	sid := f.subscribeAPNs()
	nid := f.sendRaw(0)
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool {
		return d.State == resource.DeliveryDelivered && d.PendingSeq == 0
	})
	msgs := s.messages()
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want the raw push and the fallback alert", len(msgs))
	}
	if msgs[0].Notification.Payload.RawContent == nil || msgs[0].Notification.Payload.VisualContent != nil {
		t.Fatalf("first message %+v is not the raw push", msgs[0].Notification.Payload)
	}
	fb := msgs[1].Notification.Payload
	if fb.VisualContent == nil || fb.VisualContent.Title != "You have a new message" || fb.RawContent != nil {
		t.Fatalf("second message %+v is not the fallback alert", fb)
	}
}

// An iOS app may take its pushes through FCM (platformType ios, an fcm
// channel): its raw push reaches iOS as a background push all the same,
// which iOS may hold back, so the fallback alert is owed to it too. Only
// an apns channel got it.
func TestEngineSendsIOSFallbackThroughFCM(t *testing.T) {
	f := newFixture(t)
	s := &scriptSender{script: []Result{{Outcome: Delivered}}}
	e := f.open(func() *Engine {
		return NewEngine(EngineOptions{Store: f.store, Senders: map[string]Sender{resource.ChannelFCM: s},
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: quiet})
	})
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	sub := &resource.SubscriptionRecord{Subscription: resource.Subscription{ID: resource.NewSecret(18), UserID: f.user,
		TargetHostName: "a.example", PlatformType: resource.PlatformIOS, Status: resource.SubActive,
		Channel:            resource.Channel{Type: resource.ChannelFCM, Token: "fcm-ios"},
		ExpirationDateTime: resource.At(time.Now().Add(time.Hour))}, AppID: f.app.ID}
	f.propose(&raft.Command{Op: raft.OpCreateSub, Sub: sub})
	nid := f.sendRaw(0)
	f.waitDelivery(nid, sub.ID, func(d *resource.DeliveryRecord) bool {
		return d.State == resource.DeliveryDelivered && d.PendingSeq == 0
	})
	msgs := s.messages()
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want the raw push and the fallback alert", len(msgs))
	}
	if fb := msgs[1].Notification.Payload; fb.VisualContent == nil || fb.VisualContent.Title != "You have a new message" {
		t.Fatalf("second message %+v is not the fallback alert", fb)
	}
}

func TestEngineFetchCancelsIOSFallback(t *testing.T) {
	f := newFixture(t)
	s := &scriptSender{script: []Result{{Outcome: Delivered}}}
	e := f.open(apnsEngine(f, s))
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	sid := f.subscribeAPNs()
	nid := f.sendRaw(2)
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.PendingType == raft.PendingFallback })
	// The app, woken by the silent push, fetched the notification.
	n, _, _ := f.store.Notification(f.user, nid)
	e.Report(raft.DeliveryOutcome{UserID: f.user, NotificationID: nid, SubscriptionID: sid,
		Seq: n.Seq, Outcome: raft.OutcomeDelivered, At: time.Now().UnixNano()})
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.PendingSeq == 0 })
	deadline := time.Now().Add(10 * time.Second)
	for e.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the fallback task was never dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(s.messages()); n != 1 {
		t.Fatalf("got %d messages; the fetch should have cancelled the fallback", n)
	}
}

// A fallback that falls due on a deleted notification is not shown: a
// subscription inactive at the deletion kept its pending fallback, and
// renewed before it fell due, it showed the deleted notification's alert;
// from rules level 4 the tombstone holds no fallbackPolicy at all.
func TestEngineSkipsTheFallbackOfADeletedNotification(t *testing.T) {
	for _, level := range []int{3, raft.RulesLevel} {
		t.Run(fmt.Sprintf("rules%d", level), func(t *testing.T) {
			f := newFixture(t)
			s := &scriptSender{script: []Result{{Outcome: Delivered}}}
			e := f.open(apnsEngine(f, s))
			defer f.store.Close()
			defer e.Stop()
			f.setup()
			f.rulesAt(level)
			sid := f.subscribeAPNs()
			nid := f.sendRaw(2)
			f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.PendingType == raft.PendingFallback })
			past, later := resource.At(time.Now().Add(-time.Second)), resource.At(time.Now().Add(time.Hour))
			f.propose(&raft.Command{Op: raft.OpUpdateSub, UserID: f.user, ID: sid, SubPatch: &resource.SubscriptionPatch{ExpirationDateTime: &past}})
			f.propose(&raft.Command{Op: raft.OpDeleteNotif, UserID: f.user, ID: nid})
			f.propose(&raft.Command{Op: raft.OpUpdateSub, UserID: f.user, ID: sid, SubPatch: &resource.SubscriptionPatch{ExpirationDateTime: &later}})
			d := f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.PendingSeq == 0 })
			if n := len(s.messages()); n != 1 || d.State != resource.DeliverySkipped {
				t.Fatalf("%d messages, the delivery %s; want the raw push alone and the fallback skipped", n, d.State)
			}
		})
	}
}

// Live subscriptions are the live stream's to deliver: the engine queues
// nothing for them, and their records stay pending until a stream with
// their subscriptionId passes the change on.
func TestEngineLeavesLiveDeliveriesToStreams(t *testing.T) {
	f := newFixture(t)
	s := &scriptSender{script: []Result{{Outcome: Delivered}}}
	e := f.open(engineWith(f, s))
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	live := &resource.SubscriptionRecord{Subscription: resource.Subscription{ID: resource.NewSecret(18), UserID: f.user,
		TargetHostName: "a.example", PlatformType: resource.PlatformWeb, Status: resource.SubActive,
		Channel: resource.Channel{Type: resource.ChannelLive}, ExpirationDateTime: resource.At(time.Now().Add(time.Hour))}, AppID: f.app.ID}
	f.propose(&raft.Command{Op: raft.OpCreateSub, Sub: live})
	hook := f.subscribe("https://hooks.example/a")
	nid := f.send("both")
	f.waitDelivery(nid, hook, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryDelivered })
	d, ok, _ := f.store.Delivery(f.user, nid, live.ID)
	if !ok || d.State != resource.DeliveryPending || d.Attempts != 0 {
		t.Fatalf("live record = %+v, want pending with no attempts", d)
	}
	if len(s.messages()) != 1 || e.Pending() != 0 {
		t.Fatalf("sender got %d messages, engine holds %d tasks; want 1 and 0", len(s.messages()), e.Pending())
	}
}

// When a user's slot moves here, Rescan picks up the deliveries committed
// while another node owned it; when it moves away, the engine drops the task
// at its next attempt instead of sending a second copy.
func TestEngineFollowsOwnership(t *testing.T) {
	f := newFixture(t)
	var owned atomic.Bool
	s := &scriptSender{script: []Result{{Outcome: Delivered}}}
	e := f.open(func() *Engine {
		return NewEngine(EngineOptions{Store: f.store, Senders: map[string]Sender{resource.ChannelWebhook: s},
			Owns: func(string) bool { return owned.Load() }, Logger: quiet,
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	})
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	sid := f.subscribe("https://hooks.example/a")
	nid := f.send("moved here")
	if e.Pending() != 0 {
		t.Fatalf("queued %d deliveries before owning the user", e.Pending())
	}
	owned.Store(true)
	if err := e.Rescan(); err != nil {
		t.Fatal(err)
	}
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryDelivered })

	// A destination that keeps failing is retried while owned, and
	// abandoned here once the slot moves away.
	s.mu.Lock()
	s.script = []Result{{Outcome: Retry, Err: "500"}}
	s.mu.Unlock()
	nid = f.send("moving away")
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.Attempts >= 1 })
	owned.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for e.Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still %d tasks after the user moved away", e.Pending())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d, _, _ := f.store.Delivery(f.user, nid, sid); d.State != resource.DeliveryPending {
		t.Fatalf("record %+v: the new owner must find it pending", d)
	}
}

// changeBetweenReads is the engine's store, but on the engine's nth read
// of the notification it first applies a PATCH of it: the change lands
// between the engine's read of the delivery record and of the
// notification.
type changeBetweenReads struct {
	EngineStore
	f     *fixture
	nth   int
	reads atomic.Int32
}

func (c *changeBetweenReads) Notification(uid, nid string) (*resource.NotificationRecord, bool, error) {
	if int(c.reads.Add(1)) == c.nth {
		read := resource.ReadRead
		c.f.propose(&raft.Command{Op: raft.OpPatchNotif, UserID: uid, ID: nid, NotifPatch: &resource.NotificationPatch{ReadState: &read}})
	}
	return c.EngineStore.Notification(uid, nid)
}

// A message id names one change, and every message under it carries that
// change: a retry whose notification changed in the middle of the
// attempt goes out under the newer change's id (found by the chaos
// harness: one webhook-id carried the created and the read state).
func TestEngineMessageIDMatchesItsContent(t *testing.T) {
	f := newFixture(t)
	s := &scriptSender{script: []Result{{Outcome: Retry, Err: "503"}, {Outcome: Delivered}}}
	store := &changeBetweenReads{f: f, nth: 2}
	e := f.open(engineOver(f, s, quiet, func(es EngineStore) EngineStore { store.EngineStore = es; return store }))
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	sid := f.subscribe("https://hooks.example/a")
	nid := f.send("read me")
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryDelivered })
	byID := map[string]string{}
	msgs := s.messages()
	for _, m := range msgs {
		if prev, ok := byID[m.DeliveryID]; ok && prev != m.Notification.ReadState {
			t.Fatalf("message id %s went out with readState %s and %s", m.DeliveryID, prev, m.Notification.ReadState)
		}
		byID[m.DeliveryID] = m.Notification.ReadState
	}
	if last := msgs[len(msgs)-1]; last.Notification.ReadState != resource.ReadRead {
		t.Fatalf("the delivered message is %s, want the patched state", last.Notification.ReadState)
	}
}

// A webhook's failing clock measures an outage, not the quiet time after
// one: a receiver that failed once, got nothing to do for longer than
// WebhookDisableAfter, then answered one 503 is retried, not disabled.
// The clock used to run from that first failure, so the first transient
// error after any quiet spell disabled a working endpoint for good.
func TestEngineQuietSpellDoesNotCountAsFailing(t *testing.T) {
	f := newFixture(t)
	const disableAfter = 400 * time.Millisecond
	var attempts atomic.Int32
	s := senderFunc(func(ctx context.Context, sub *resource.SubscriptionRecord, m *Message) Result {
		if m.Notification.Payload.VisualContent.Title == "during the outage" {
			return Result{Outcome: Retry, Err: "HTTP 503"}
		}
		if attempts.Add(1) == 1 {
			return Result{Outcome: Retry, Err: "HTTP 503 (a deploy)"}
		}
		return Result{Outcome: Delivered}
	})
	e := f.open(func() *Engine {
		return NewEngine(EngineOptions{Store: f.store, Senders: map[string]Sender{resource.ChannelWebhook: s},
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Timeout: 100 * time.Millisecond,
			WebhookDisableAfter: disableAfter, Logger: quiet})
	})
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	f.rulesAt(raft.RulesLevel)
	sid := f.subscribe("https://hooks.example/a")

	// A short-lived notification gives up at its expiry while the receiver is down.
	now := time.Now()
	exp := resource.At(now.Add(100 * time.Millisecond))
	in := resource.NotificationInput{Payload: &resource.Payload{VisualContent: &resource.VisualContent{Title: "during the outage"}},
		ExpirationDateTime: &exp}
	if err := in.Validate(now, "a.example"); err != nil {
		t.Fatal(err)
	}
	n := &resource.NotificationRecord{Notification: in.NewNotification(resource.NewNotificationID(now), now), UserID: f.user, AppID: f.app.ID}
	nid := f.propose(&raft.Command{Op: raft.OpSend, Notif: n}).(raft.SendResult).Notification.ID
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryFailed })

	// Nothing to deliver for longer than the disable window.
	deadline := time.Now().Add(10 * time.Second)
	for {
		sub, _, err := f.store.Subscription(sid)
		if err != nil {
			t.Fatal(err)
		}
		if sub.FailingSince != 0 && time.Since(time.Unix(0, sub.FailingUntil)) > 2*disableAfter {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failing clock did not start: %+v", sub)
		}
		time.Sleep(5 * time.Millisecond)
	}

	nid = f.send("after the quiet spell")
	d := f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.State != resource.DeliveryPending })
	sub, _, _ := f.store.Subscription(sid)
	if d.State != resource.DeliveryDelivered || sub.Status != resource.SubActive {
		t.Fatalf("delivery %s, subscription %s (%s): one 503 after a quiet spell disabled the webhook",
			d.State, sub.Status, deref(sub.StatusReason))
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// herald_delivery_attempts_total counts each attempt under the outcome its
// delivery records: the attempt that disables a webhook for failing too
// long is a disable, in the metric as in attemptHistory, not a retry. A
// long outage is disabled under the rules before level 3 too, whose
// records have no FailingUntil.
func TestEngineCountsAttemptsAsRecorded(t *testing.T) {
	for _, level := range []int{2, raft.RulesLevel} {
		t.Run(fmt.Sprintf("rules%d", level), func(t *testing.T) { countsAttemptsAsRecorded(t, level) })
	}
}

func countsAttemptsAsRecorded(t *testing.T, level int) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	s := &scriptSender{script: []Result{{Outcome: Retry, Err: "HTTP 503"}}}
	e := f.open(func() *Engine {
		return NewEngine(EngineOptions{Store: f.store, Senders: map[string]Sender{resource.ChannelWebhook: s},
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Timeout: 100 * time.Millisecond,
			WebhookDisableAfter: 100 * time.Millisecond, Registry: reg, Logger: quiet})
	})
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	f.rulesAt(level)
	sid := f.subscribe("https://hooks.example/a")
	nid := f.send("nobody home")
	d := f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryFailed })
	if last := d.AttemptHistory[len(d.AttemptHistory)-1]; last.Outcome != raft.OutcomeDisable {
		t.Fatalf("last attempt %+v, want disable", last)
	}
	count := func(outcome string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "herald_delivery_attempts_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["channel"] == resource.ChannelWebhook && labels["outcome"] == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	if got, want := count(raft.OutcomeDisable), 1.0; got != want {
		t.Errorf("disable attempts counted %v, want %v", got, want)
	}
	if got, want := count(raft.OutcomeRetry), float64(d.Attempts-1); got != want {
		t.Errorf("retry attempts counted %v, want %v (of %d attempts)", got, want, d.Attempts)
	}
}

// A retry that runs late because the node was down (or the user's slot was
// moving) was owed all along: the outage did not end while nobody could
// try. Its failure continues the failing clock, so a webhook that has
// failed for longer than WebhookDisableAfter is disabled at the first
// attempt after the restart. It used to count as a new outage whenever the
// downtime exceeded MaxBackoff, and the clock started again from zero.
func TestEngineOutageOutlastsNodeDowntime(t *testing.T) {
	f := newFixture(t)
	const disableAfter = 500 * time.Millisecond
	opts := func() *Engine {
		return NewEngine(EngineOptions{Store: f.store,
			Senders:    map[string]Sender{resource.ChannelWebhook: &scriptSender{script: []Result{{Outcome: Retry, Err: "HTTP 503"}}}},
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Timeout: 100 * time.Millisecond,
			WebhookDisableAfter: disableAfter, Logger: quiet})
	}
	e := f.open(opts)
	f.setup()
	f.rulesAt(raft.RulesLevel)
	sid := f.subscribe("https://hooks.example/a")
	nid := f.send("nobody home")
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.Attempts >= 2 })
	e.Stop()
	d, _, err := f.store.Delivery(f.user, nid, sid)
	if err != nil {
		t.Fatal(err)
	}
	sub, _, err := f.store.Subscription(sid)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != resource.DeliveryPending || sub.Status != resource.SubActive || sub.FailingUntil == 0 {
		t.Fatalf("before the downtime: delivery %s, subscription %s, failingUntil %d", d.State, sub.Status, sub.FailingUntil)
	}
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	before := len(d.AttemptHistory)

	// The node stays down past the disable window and past MaxBackoff
	// plus twice the timeout after the last retry came due.
	deadline := time.Now().Add(10 * time.Second)
	for time.Since(time.Unix(0, sub.FailingSince)) <= disableAfter ||
		time.Since(time.Unix(0, sub.FailingUntil)) <= time.Second {
		if time.Now().After(deadline) {
			t.Fatal("the downtime did not pass")
		}
		time.Sleep(10 * time.Millisecond)
	}

	e = f.open(opts)
	defer f.store.Close()
	defer e.Stop()
	d = f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryFailed })
	if got := d.AttemptHistory[before]; got.Outcome != raft.OutcomeDisable {
		t.Fatalf("first attempt after the restart: %s (%s), want disable: the downtime restarted the failing clock", got.Outcome, got.Error)
	}
}

// A change still pending for a subscription that was inactive when its
// notification was deleted (the deletion fans out to active subscriptions
// only) goes out as the deletion, not as the change: sent as it was
// pending, a webhook retrying a creation got a "created" message for a
// deleted notification, with the tombstone's empty payload from rules
// level 4 (and its deleted content before).
func TestEngineSendsADeletionForAChangePendingPastItsDeletion(t *testing.T) {
	for _, level := range []int{3, raft.RulesLevel} {
		t.Run(fmt.Sprintf("rules%d", level), func(t *testing.T) {
			f := newFixture(t)
			s := &scriptSender{script: []Result{{Outcome: Retry, Err: "HTTP 503"}, {Outcome: Delivered}}}
			e := f.open(func() *Engine {
				return NewEngine(EngineOptions{Store: f.store, Senders: map[string]Sender{resource.ChannelWebhook: s},
					MinBackoff: 2 * time.Second, MaxBackoff: 2 * time.Second, Timeout: 200 * time.Millisecond, Logger: quiet})
			})
			defer f.store.Close()
			defer e.Stop()
			f.setup()
			f.rulesAt(level)
			sid := f.subscribe("https://hooks.example/a")
			nid := f.send("soon deleted")
			f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.Attempts == 1 && d.PendingSeq != 0 })
			past, later := resource.At(time.Now().Add(-time.Second)), resource.At(time.Now().Add(time.Hour))
			f.propose(&raft.Command{Op: raft.OpUpdateSub, UserID: f.user, ID: sid, SubPatch: &resource.SubscriptionPatch{ExpirationDateTime: &past}})
			f.propose(&raft.Command{Op: raft.OpDeleteNotif, UserID: f.user, ID: nid})
			f.propose(&raft.Command{Op: raft.OpUpdateSub, UserID: f.user, ID: sid, SubPatch: &resource.SubscriptionPatch{ExpirationDateTime: &later}})
			f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.PendingSeq == 0 })
			msgs := s.messages()
			if len(msgs) != 2 {
				t.Fatalf("%d messages, want the creation's attempt and one more", len(msgs))
			}
			if m := msgs[1]; m.Type != resource.ChangeDeleted || m.Reason != resource.ChangeDeleted || m.DeliveryID == msgs[0].DeliveryID {
				t.Fatalf("after the deletion the webhook got a %q message (reason %q, id %s after %s) with payload %+v; want the deletion, under an id of its own",
					m.Type, m.Reason, m.DeliveryID, msgs[0].DeliveryID, m.Notification.Payload)
			}
		})
	}
}

// laggingRecorder commits the engine's delivery outcomes through the real
// store, then answers as a follower does whose write the leader committed
// but which had not applied it within the forwarding's wait
// (cluster/batch.go): the 503 that says the write is done.
type laggingRecorder struct {
	EngineStore
	lagged atomic.Int32
}

func (l *laggingRecorder) Propose(ctx context.Context, c *raft.Command) (any, error) {
	v, err := l.EngineStore.Propose(ctx, c)
	if err == nil && c.Op == raft.OpDeliveryOutcomes {
		l.lagged.Add(1)
		return nil, &resource.Error{Code: resource.CodeUnavailable, Message: resource.MsgCommittedNotApplied}
	}
	return v, err
}

// A follower resumed after a SIGSTOP in the three-node soak logged
// "recording delivery outcomes failed" at WARN for outcomes the same line
// said were committed: an operator reads that deliveries will be sent
// again, while nothing was lost.
func TestEngineCommittedButNotAppliedOutcomesAreRecorded(t *testing.T) {
	f := newFixture(t)
	s := &scriptSender{script: []Result{{Outcome: Delivered}}}
	store := &laggingRecorder{}
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	e := f.open(engineOver(f, s, logger, func(es EngineStore) EngineStore { store.EngineStore = es; return store }))
	defer f.store.Close()
	defer e.Stop()
	f.setup()
	sid := f.subscribe("https://hooks.example/a")
	nid := f.send("hello")
	f.waitDelivery(nid, sid, func(d *resource.DeliveryRecord) bool { return d.State == resource.DeliveryDelivered })
	// The outcome shows in the store before the recorder has its answer
	// back and logged it (CI met the check in between): Stop waits for
	// the recorder.
	e.Stop()
	if store.lagged.Load() == 0 {
		t.Fatal("no outcome was answered as committed but not applied")
	}
	logMu.Lock()
	defer logMu.Unlock()
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("outcomes that committed were logged as a failure:\n%s", logs.String())
	}
}

type writerFunc func(p []byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// Thousands of subscriptions held at once (a push service throttling a
// whole project) must not make every further hold scan them all: the
// sweep runs again only once the map doubled, and it still drops the
// holds that ended.
func TestHoldQuietSweepsAmortized(t *testing.T) {
	e := &Engine{quiet: map[string]time.Time{}}
	later := time.Now().Add(time.Hour)
	for i := range quietSweepMin {
		e.holdQuiet("held-"+strconv.Itoa(i), later)
	}
	sweeps := 0
	for i := range quietSweepMin {
		before := e.quietSweep
		e.holdQuiet("more-"+strconv.Itoa(i), later)
		if e.quietSweep != before {
			sweeps++
		}
	}
	if sweeps > 1 {
		t.Errorf("%d sweeps for %d holds past the threshold, want at most 1", sweeps, quietSweepMin)
	}
	// Ended holds still go at the next sweep.
	past := time.Now().Add(-time.Second)
	for id := range e.quiet {
		e.quiet[id] = past
	}
	for i := 0; len(e.quiet) > 1 && i < 4*quietSweepMin; i++ {
		e.holdQuiet("new-"+strconv.Itoa(i), later)
	}
	if len(e.quiet) > quietSweepMin {
		t.Errorf("%d holds kept after they ended", len(e.quiet))
	}
}
