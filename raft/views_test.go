package raft

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/jsonread"
	"github.com/herald-notify/herald/resource"
)

// A view's JSON is what the handlers wrote before views existed: the stored
// record decoded and its Notification encoded, escapes and all.
func TestNotificationViewIsTheEncodedNotification(t *testing.T) {
	now := time.Now()
	raw := "<script>alert('&')</script> \u2028 é \u00a0 \"quoted\""
	ttl := 60
	in := resource.NotificationInput{AppNotificationID: "a<b>&c", GroupName: "g\u2029",
		Payload:           &resource.Payload{RawContent: &raw, VisualContent: &resource.VisualContent{Title: "<b>hi</b>", Body: "x & y"}},
		DisplayTimeToLive: (*resource.Seconds)(&ttl)}
	if err := in.Validate(now, "a.example"); err != nil {
		t.Fatal(err)
	}
	rec := resource.NotificationRecord{Notification: in.NewNotification(resource.NewNotificationID(now), now),
		UserID: "u1", AppID: "app1", Seq: 7}
	stored, err := json.Marshal(&rec)
	if err != nil {
		t.Fatal(err)
	}
	v, err := newNotificationView(stored)
	if err != nil {
		t.Fatal(err)
	}
	var back resource.NotificationRecord
	if err := json.Unmarshal(stored, &back); err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal([]resource.Notification{back.Notification})
	if err != nil {
		t.Fatal(err)
	}
	if got := append(append([]byte{'['}, v.JSON...), ']'); !bytes.Equal(got, want) {
		t.Fatalf("view JSON\n%s\nwant (as an element of the collection)\n%s", got, want)
	}
	if v.ReadState != rec.ReadState || v.UserActionState != rec.UserActionState || v.Status != rec.Status ||
		v.TargetHostName != rec.TargetHostName || v.GroupName != rec.GroupName || v.AppID != rec.AppID {
		t.Fatalf("view fields %+v, record %+v", v, rec)
	}
}

// A cached view is served only for the version it was made from: a patch,
// a delete and a restored snapshot are seen at once, with no invalidation.
func TestNotificationViewsFollowWrites(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	u := newUser("dave")
	app := newApp()
	proposeAll(t, s, &Command{Op: OpCreateUser, User: u}, &Command{Op: OpCreateApp, App: app})
	var ids []string
	for i := range 3 {
		c := sendCmd(u.ID, app.ID, fmt.Sprintf("n%d", i), time.Now(), time.Now().Add(time.Hour))
		if _, err := s.Propose(ctx, c); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Notif.ID)
	}
	all := func() []*NotificationView {
		t.Helper()
		p, err := s.NotificationViews(u.ID, "", 10, 0, "all", nil)
		if err != nil {
			t.Fatal(err)
		}
		return p.Items
	}
	first := all()
	if len(first) != 3 || s.cache.views.get(notifKey(u.ID, ids[0]), 0) != nil {
		t.Fatalf("%d views", len(first))
	}
	if again := all(); again[0] != first[0] {
		t.Fatal("a second read decoded the notification again")
	}

	read := resource.ReadRead
	if _, err := s.Propose(ctx, &Command{Op: OpPatchNotif, Now: time.Now().UnixNano(), UserID: u.ID, ID: ids[2],
		NotifPatch: &resource.NotificationPatch{ReadState: &read}}); err != nil {
		t.Fatal(err)
	}
	v, ok, err := s.NotificationView(u.ID, ids[2])
	if err != nil || !ok || v.ReadState != resource.ReadRead || !bytes.Contains(v.JSON, []byte(`"readState":"read"`)) {
		t.Fatalf("after the patch: %+v %v %v", v, ok, err)
	}
	if got := all(); got[0].ReadState != resource.ReadRead || got[1] != first[1] {
		t.Fatalf("after the patch the page has %q first", got[0].ReadState)
	}

	if _, err := s.Propose(ctx, &Command{Op: OpDeleteNotif, Now: time.Now().UnixNano(), UserID: u.ID, ID: ids[1]}); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := s.NotificationView(u.ID, ids[1]); ok && v.Status != resource.StatusDeleted {
		t.Fatalf("a deleted notification's view: %+v", v)
	}
	p, err := s.NotificationViews(u.ID, "", 10, 0, "active", func(v *NotificationView) bool { return v.Status == resource.StatusActive })
	if err != nil || len(p.Items) != 2 {
		t.Fatalf("active after the delete: %d %v", len(p.Items), err)
	}
	// Paging: continue after the first.
	p, err = s.NotificationViews(u.ID, "", 1, 0, "all", nil)
	if err != nil || len(p.Items) != 1 || p.Next != ids[2] {
		t.Fatalf("first page: %d items, next %q, %v", len(p.Items), p.Next, err)
	}
	p, err = s.NotificationViews(u.ID, p.Next, 5, 0, "all", nil)
	if err != nil || len(p.Items) != 2 || p.Next != "" {
		t.Fatalf("second page: %d items, next %q, %v", len(p.Items), p.Next, err)
	}
	if _, ok, err := s.NotificationView(u.ID, "nope"); ok || err != nil {
		t.Fatalf("an unknown notification: %v %v", ok, err)
	}
}

// bytes is what the cache holds, by its estimate.
func (c *viewCache) bytes() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.curBytes + c.oldBytes
}

// The cache stays within its bound, dropping entries as it fills.
func TestViewCacheIsBounded(t *testing.T) {
	const limit = 64 << 10
	c := newViewCache(limit)
	body := bytes.Repeat([]byte("x"), 500)
	for i := range 1000 {
		c.put(fmt.Appendf(nil, "n/u/%04d", i), 1, &NotificationView{JSON: body})
		if b := c.bytes(); b > limit {
			t.Fatalf("%d bytes held after %d puts, bound %d", b, i+1, limit)
		}
	}
	if c.get([]byte("n/u/0999"), 1) == nil || c.get([]byte("n/u/0000"), 1) != nil {
		t.Fatal("the newest entry was not kept, or the oldest was")
	}
	// A view of the older generation is served, and a late reader's
	// older version does not shadow it.
	var old []byte
	for k := range c.old {
		old = []byte(k)
		break
	}
	if _, inCur := c.cur[string(old)]; old == nil || inCur || c.get(old, 1) == nil {
		t.Fatalf("%s, in the older generation, was not served", old)
	}
	c.put(old, 0, &NotificationView{})
	if c.get(old, 1) == nil {
		t.Fatal("a late reader's older version shadowed the older generation's")
	}
	if c.get([]byte("n/u/0999"), 2) != nil {
		t.Fatal("an entry was served for another version")
	}
	c.put([]byte("n/u/0999"), 0, &NotificationView{})
	if v := c.get([]byte("n/u/0999"), 1); v == nil || len(v.JSON) != 500 {
		t.Fatal("a late reader's older version replaced a newer one")
	}
}

// A page of 50 cached views allocates a bounded handful (the read
// transaction, the iterator and its items, the page), not per notification.
// Measured 21 with Go 1.26 (December 2026); the budget leaves room for drift.
func TestNotificationViewsPageAllocs(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	u := newUser("erin")
	app := newApp()
	proposeAll(t, s, &Command{Op: OpCreateUser, User: u}, &Command{Op: OpCreateApp, App: app})
	var cmds []*Command
	for i := range 120 {
		cmds = append(cmds, sendCmd(u.ID, app.ID, fmt.Sprintf("n%d", i), time.Now(), time.Now().Add(time.Hour)))
	}
	for _, r := range s.ProposeAll(ctx, cmds) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	page := func() {
		p, err := s.NotificationViews(u.ID, "", 50, 0, "", nil)
		if err != nil || len(p.Items) != 50 {
			t.Fatalf("%d views, %v", len(p.Items), err)
		}
	}
	page() // fills the cache
	got := testing.AllocsPerRun(50, page)
	t.Logf("%.0f allocations per page of 50 cached views", got)
	if budget := 40.0; got > budget*allocSlack {
		t.Errorf("%.0f allocations per page of 50, budget %.0f", got, budget*allocSlack)
	}
	// From the page cache: the page's key, its items and one key to look
	// each view up in. Measured 4.
	cachedPage := func() {
		p, err := s.NotificationViews(u.ID, "", 50, 0, "all", nil)
		if err != nil || len(p.Items) != 50 {
			t.Fatalf("%d views, %v", len(p.Items), err)
		}
	}
	cachedPage()
	got = testing.AllocsPerRun(50, cachedPage)
	t.Logf("%.0f allocations per page of 50 from the page cache", got)
	if budget := 6.0; got > budget*allocSlack {
		t.Errorf("%.0f allocations per page of 50 from the page cache, budget %.0f", got, budget*allocSlack)
	}
}

// slowView is newNotificationView with encoding/json alone, as it was.
func slowView(b []byte) (*NotificationView, error) {
	var n resource.NotificationRecord
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	out, err := json.Marshal(&n.Notification)
	if err != nil {
		return nil, err
	}
	return &NotificationView{ID: n.ID, ReadState: n.ReadState, UserActionState: n.UserActionState, Status: n.Status,
		TargetHostName: n.TargetHostName, GroupName: n.GroupName, AppID: n.AppID, Seq: n.Seq,
		ExpiresMs: n.ExpirationDateTime.UnixMilli(), JSON: out}, nil
}

// A view made by hand is the view encoding/json makes, for records as the
// FSM stores them (its own encoding and json.Marshal's) and random ones.
func TestViewsMadeByHandMatchEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	fast := 0
	for i := range 5000 {
		n := randomSend(r).Notif
		if i%3 == 0 {
			n = canonicalSend(i).Notif
		}
		n.Seq = uint64(i)
		for j := range i % 3 {
			n.LiveTargets = append(n.LiveTargets, resource.LiveTarget{SubscriptionID: fmt.Sprintf("s%d<%d>", i, j),
				PlatformType: resource.PlatformWeb, PendingSeq: uint64(i * j)})
		}
		records := [][]byte{encodeRecord(appendNotification(nil, &n.Notification), n)}
		if b, err := json.Marshal(n); err == nil {
			records = append(records, b)
		}
		for _, b := range records {
			want, werr := slowView(b)
			got, gerr := newNotificationView(b)
			if (werr == nil) != (gerr == nil) || werr == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("record %s\n got %+v (%v)\nwant %+v (%v)", b, got, gerr, want, werr)
			}
			var byHand resource.NotificationRecord
			if d := (jsonReader{jsonread.Reader{B: b}}); d.notification(&byHand) && d.End() {
				fast++
				var want resource.NotificationRecord
				if err := json.Unmarshal(b, &want); err != nil || !reflect.DeepEqual(byHand, want) {
					t.Fatalf("record %s\n read by hand %+v\nencoding/json %+v (%v)", b, byHand, want, err)
				}
			}
		}
	}
	if fast < 5000 {
		t.Fatalf("only %d of 10,000 records took the hand-written path", fast)
	}
}

func FuzzNotificationView(f *testing.F) {
	r := rand.New(rand.NewPCG(13, 14))
	for i := range 8 {
		n := canonicalSend(i).Notif
		f.Add(encodeRecord(appendNotification(nil, &n.Notification), n))
		b, _ := json.Marshal(randomSend(r).Notif)
		f.Add(b)
	}
	f.Add([]byte(`{"id":"a\u00e9","readState":"unread","seq":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := slowView(b)
		got, gerr := newNotificationView(b)
		if (werr == nil) != (gerr == nil) || werr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("record %q\n got %+v (%v)\nwant %+v (%v)", b, got, gerr, want, werr)
		}
		if gerr != nil {
			return
		}
		// What a page, a delta and a stream event copy as they are: valid
		// JSON, written as json.Marshal writes it, and a view of its own.
		var n resource.Notification
		if err := json.Unmarshal(got.JSON, &n); err != nil {
			t.Fatalf("record %q: the view's JSON %s does not decode: %v", b, got.JSON, err)
		}
		if again, err := json.Marshal(&n); err != nil || !bytes.Equal(again, got.JSON) {
			t.Fatalf("record %q: the view's JSON %s is written again as %s (%v)", b, got.JSON, again, err)
		}
		if v, err := newNotificationView(got.JSON); err != nil || !bytes.Equal(v.JSON, got.JSON) {
			t.Fatalf("record %q: the view's JSON %s viewed again: %v", b, got.JSON, err)
		}
	})
}
