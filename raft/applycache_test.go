package raft

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"
	"github.com/herald-notify/herald/resource"
)

// The FSM keeps a user's subscriptions, whether the user exists and its
// counters from one batch to the next (applycache.go). Each step here is
// a batch of its own, so a cache that missed a write would fan out to a
// subscription that is gone, miss a new one, accept a send for a deleted
// user or count a quota wrong.
func TestSendsFollowChangesMadeInEarlierBatches(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	var delivered []resource.DeliveryRef
	f.onDeliveries = func(d []resource.DeliveryRef) { delivered = append(delivered, d...) }
	now := time.Now()
	u := newUser("lee")
	app := &resource.ApplicationRecord{ID: "app", AppID: "appid", TargetHostName: "a.example"}
	sub := func(id string) *Command {
		return &Command{Op: OpCreateSub, Now: now.UnixNano(), Sub: &resource.SubscriptionRecord{Subscription: resource.Subscription{
			ID: id, UserID: u.ID, TargetHostName: "a.example", PlatformType: resource.PlatformWeb, Status: resource.SubActive,
			Channel: resource.Channel{Type: resource.ChannelLive}, ExpirationDateTime: resource.At(now.Add(time.Hour))}, AppID: app.ID}}
	}
	index := uint64(1)
	apply := func(c *Command) Result {
		t.Helper()
		out := f.ApplyBatch([]*hraft.Log{entry(t, index, c)})
		index++
		return out[0].([]Result)[0]
	}
	must := func(c *Command) Result {
		t.Helper()
		r := apply(c)
		if r.Err != nil {
			t.Fatalf("%s: %v", c.Op, r.Err)
		}
		return r
	}
	// send sends one notification (quota max, 0: none) and returns the
	// subscriptions it was fanned out to and the result.
	send := func(max int) ([]string, Result) {
		t.Helper()
		delivered = nil
		c := sendCmd(u.ID, app.ID, "", now, now.Add(time.Hour))
		c.MaxItems = max
		r := apply(c)
		var to []string
		for _, d := range delivered {
			to = append(to, d.SubscriptionID)
		}
		slices.Sort(to)
		return to, r
	}
	wantTo := func(step string, got []string, want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: fanned out to %v, want %v", step, got, want)
		}
	}

	must(&Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})
	must(&Command{Op: OpCreateApp, Now: now.UnixNano(), App: app})
	to, _ := send(0)
	wantTo("no subscription", to)
	must(sub("first"))
	to, _ = send(0)
	wantTo("one subscription", to, "first")
	must(sub("second"))
	to, _ = send(0)
	wantTo("two subscriptions", to, "first", "second")
	must(&Command{Op: OpDeleteSub, Now: now.UnixNano(), UserID: u.ID, ID: "first"})
	to, _ = send(0)
	wantTo("the first deleted", to, "second")

	// Four notifications are stored: a quota of five takes one more.
	if _, r := send(5); r.Err != nil {
		t.Fatalf("fifth notification under a quota of five: %v", r.Err)
	}
	_, r := send(5)
	var e *resource.Error
	if !errors.As(r.Err, &e) || e.Code != resource.CodeQuotaReached {
		t.Fatalf("sixth notification under a quota of five: %v, want %s", r.Err, resource.CodeQuotaReached)
	}
	page, err := (&Store{db: db}).ListNotifications(u.ID, "", 100, nil)
	if err != nil || len(page.Items) != 5 {
		t.Fatalf("notifications: %d, %v; want 5", len(page.Items), err)
	}
	must(&Command{Op: OpDeleteNotif, Now: now.UnixNano(), UserID: u.ID, ID: page.Items[0].ID})
	if _, r := send(5); r.Err != nil {
		t.Fatalf("a send after one of five was deleted, under a quota of five: %v", r.Err)
	}

	must(&Command{Op: OpDeleteUser, Now: now.UnixNano(), UserID: u.ID})
	_, r = send(0)
	if !errors.As(r.Err, &e) || e.Code != resource.CodeNotFound {
		t.Fatalf("a send to the deleted user: %v, want %s", r.Err, resource.CodeNotFound)
	}
	// The same id again, as a restored backup or a test might bring it.
	must(&Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})
	to, r = send(0)
	if r.Err != nil {
		t.Fatalf("a send to the user created again: %v", r.Err)
	}
	wantTo("the user created again", to)
}

// A send records a delivery for every subscription, and indexes as pending
// only those the delivery engine sends. A live subscription's pending
// delivery is kept in the notification, not in a record of its own: most
// are never reported by a stream, and a key for each cost every send.
// Reads show it as any other; a stream's report gives it a record, which
// later changes keep up.
func TestLiveDeliveriesAreKeptInTheNotificationUntilReported(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	s := &Store{db: db}
	now := time.Now()
	u := newUser("kim")
	sub := func(id string, ch resource.Channel) *Command {
		return &Command{Op: OpCreateSub, Now: now.UnixNano(), Sub: &resource.SubscriptionRecord{Subscription: resource.Subscription{
			ID: id, UserID: u.ID, TargetHostName: "a.example", PlatformType: resource.PlatformWeb, Status: resource.SubActive,
			Channel: ch, ExpirationDateTime: resource.At(now.Add(time.Hour))}, AppID: "app"}}
	}
	send := sendCmd(u.ID, "app", "", now, now.Add(time.Hour))
	index := uint64(0)
	apply := func(cmds ...*Command) {
		t.Helper()
		for _, c := range cmds {
			index++
			if r := f.ApplyBatch([]*hraft.Log{entry(t, index, c)})[0].([]Result)[0]; r.Err != nil {
				t.Fatalf("%s: %v", c.Op, r.Err)
			}
		}
	}
	apply(&Command{Op: OpCreateUser, Now: now.UnixNano(), User: u},
		&Command{Op: OpCreateApp, Now: now.UnixNano(), App: &resource.ApplicationRecord{ID: "app", AppID: "appid", TargetHostName: "a.example"}},
		sub("live", resource.Channel{Type: resource.ChannelLive}), sub("live2", resource.Channel{Type: resource.ChannelLive}),
		sub("hook", resource.Channel{Type: resource.ChannelWebhook, URL: "https://hooks.example/h"}), send)
	nid := send.Notif.ID
	stored := func(key []byte) bool {
		t.Helper()
		err := db.View(func(txn *badger.Txn) error { _, err := txn.Get(key); return err })
		if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	if !stored(deliveryKey(u.ID, nid, "hook")) || !stored(pendingKey(u.ID, nid, "hook")) {
		t.Error("the webhook's delivery is not recorded and indexed as pending")
	}
	for _, sid := range []string{"live", "live2"} {
		if stored(deliveryKey(u.ID, nid, sid)) || stored(pendingKey(u.ID, nid, sid)) {
			t.Errorf("the live delivery to %s has a record or an index entry of its own", sid)
		}
	}
	type state struct{ sid, channel, platform, state string }
	want := func(when string, ws ...state) []resource.DeliveryRecord {
		t.Helper()
		ds, err := s.Deliveries(u.ID, nid)
		if err != nil {
			t.Fatal(err)
		}
		var got []state
		for _, d := range ds {
			got = append(got, state{d.SubscriptionID, d.ChannelType, d.PlatformType, d.State})
			if d.UserID != u.ID || d.NotificationID != nid {
				t.Errorf("%s: delivery to %s names user %q, notification %q", when, d.SubscriptionID, d.UserID, d.NotificationID)
			}
		}
		if !reflect.DeepEqual(got, ws) {
			t.Fatalf("%s: deliveries %v, want %v", when, got, ws)
		}
		for _, d := range ds {
			one, found, err := s.Delivery(u.ID, nid, d.SubscriptionID)
			if err != nil || !found || !reflect.DeepEqual(*one, d) {
				t.Fatalf("%s: Delivery(%s) = %+v, %v, %v; Deliveries has %+v", when, d.SubscriptionID, one, found, err, d)
			}
		}
		return ds
	}
	want("after the send", state{"hook", "webhook", "web", "pending"}, state{"live", "live", "web", "pending"},
		state{"live2", "live", "web", "pending"})

	report := func(sid string, seq uint64) {
		t.Helper()
		apply(&Command{Op: OpDeliveryOutcomes, Now: now.UnixNano(), Outcomes: []DeliveryOutcome{{UserID: u.ID,
			NotificationID: nid, SubscriptionID: sid, Seq: seq, Outcome: OutcomeDelivered, At: now.Add(time.Second).UnixNano()}}})
	}
	n, _, err := s.Notification(u.ID, nid)
	if err != nil {
		t.Fatal(err)
	}
	created := n.Seq
	report("live", created)
	if !stored(deliveryKey(u.ID, nid, "live")) {
		t.Fatal("a stream's report left the live delivery without a record")
	}
	ds := want("after a stream reported live", state{"hook", "webhook", "web", "pending"}, state{"live", "live", "web", "delivered"},
		state{"live2", "live", "web", "pending"})
	if got := ds[1].DeliveredDateTime; got.IsZero() {
		t.Error("the reported delivery has no deliveredDateTime")
	}

	// A change fans out again: the recorded delivery and the kept one are
	// both pending the change, and an older change's report does not
	// deliver it.
	read := resource.ReadRead
	apply(&Command{Op: OpPatchNotif, Now: now.UnixNano(), UserID: u.ID, ID: nid, NotifPatch: &resource.NotificationPatch{ReadState: &read}})
	want("after a change", state{"hook", "webhook", "web", "pending"}, state{"live", "live", "web", "pending"},
		state{"live2", "live", "web", "pending"})
	report("live2", created)
	want("after a report of the older change", state{"hook", "webhook", "web", "pending"}, state{"live", "live", "web", "pending"},
		state{"live2", "live", "web", "pending"})
	if n, _, err = s.Notification(u.ID, nid); err != nil {
		t.Fatal(err)
	}
	report("live2", n.Seq)
	report("live", n.Seq)
	want("after reports of the change", state{"hook", "webhook", "web", "pending"}, state{"live", "live", "web", "delivered"},
		state{"live2", "live", "web", "delivered"})

	// Reports of a notification that is gone make nothing.
	apply(&Command{Op: OpDeleteNotif, Now: now.UnixNano(), UserID: u.ID, ID: nid})
	apply(&Command{Op: OpPurge, Now: now.Add(2 * time.Hour).UnixNano(), MaxItems: 100})
	report("live", n.Seq+5)
	if stored(deliveryKey(u.ID, nid, "live")) || stored(notifKey(u.ID, nid)) {
		t.Error("a purged notification's live delivery was kept or made again")
	}
}
