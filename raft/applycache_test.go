package raft

import (
	"encoding/json"
	"errors"
	"fmt"
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
// only those the delivery engine sends: a live stream's is marked delivered
// by the stream, and an index entry per notification would only grow what
// the engine reads when it starts.
func TestLiveDeliveriesAreRecordedButNotIndexedAsPending(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("kim")
	sub := func(id string, ch resource.Channel) *Command {
		return &Command{Op: OpCreateSub, Now: now.UnixNano(), Sub: &resource.SubscriptionRecord{Subscription: resource.Subscription{
			ID: id, UserID: u.ID, TargetHostName: "a.example", PlatformType: resource.PlatformWeb, Status: resource.SubActive,
			Channel: ch, ExpirationDateTime: resource.At(now.Add(time.Hour))}, AppID: "app"}}
	}
	send := sendCmd(u.ID, "app", "", now, now.Add(time.Hour))
	cmds := []*Command{{Op: OpCreateUser, Now: now.UnixNano(), User: u},
		{Op: OpCreateApp, Now: now.UnixNano(), App: &resource.ApplicationRecord{ID: "app", AppID: "appid", TargetHostName: "a.example"}},
		sub("live", resource.Channel{Type: resource.ChannelLive}),
		sub("hook", resource.Channel{Type: resource.ChannelWebhook, URL: "https://hooks.example/h"}), send}
	for i, c := range cmds {
		if r := f.ApplyBatch([]*hraft.Log{entry(t, uint64(i+1), c)})[0].([]Result)[0]; r.Err != nil {
			t.Fatalf("%s: %v", c.Op, r.Err)
		}
	}
	nid := send.Notif.ID
	err := db.View(func(txn *badger.Txn) error {
		for _, sid := range []string{"live", "hook"} {
			item, err := txn.Get(deliveryKey(u.ID, nid, sid))
			if err != nil {
				return fmt.Errorf("delivery to %s: %w", sid, err)
			}
			var d resource.DeliveryRecord
			if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &d) }); err != nil {
				return err
			}
			if d.State != resource.DeliveryPending {
				t.Errorf("delivery to %s is %q, want pending", sid, d.State)
			}
		}
		if _, err := txn.Get(pendingKey(u.ID, nid, "hook")); err != nil {
			t.Errorf("the webhook's delivery is not indexed as pending: %v", err)
		}
		if _, err := txn.Get(pendingKey(u.ID, nid, "live")); !errors.Is(err, badger.ErrKeyNotFound) {
			t.Errorf("the live stream's delivery is indexed as pending (%v)", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
