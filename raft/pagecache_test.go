package raft

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// A feed page is served from the page cache until a write to one of the
// user's notifications, and only that user's, drops it.
func TestFeedPagesCachedUntilTheUsersNotificationsChange(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	alice, bob := newUser("alice"), newUser("bob")
	app := newApp()
	proposeAll(t, s, &Command{Op: OpCreateUser, User: alice}, &Command{Op: OpCreateUser, User: bob}, &Command{Op: OpCreateApp, App: app})
	send := func(u *resource.UserRecord, name string) string {
		t.Helper()
		c := sendCmd(u.ID, app.ID, name, time.Now(), time.Now().Add(time.Hour))
		if _, err := s.Propose(ctx, c); err != nil {
			t.Fatal(err)
		}
		return c.Notif.ID
	}
	var ids []string
	for i := range 3 {
		ids = append(ids, send(alice, fmt.Sprintf("a%d", i)))
	}
	send(bob, "b0")
	page := func() ViewPage {
		t.Helper()
		p, err := s.NotificationViews(alice.ID, "", 2, 0, "all", nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cached := func() *cachedPage {
		cp, _ := s.cache.page(alice.ID, pageKey("all", "", 2, 0))
		return cp
	}
	if p := page(); len(p.Items) != 2 || p.Next != ids[1] {
		t.Fatalf("first page: %d items, next %q", len(p.Items), p.Next)
	}
	cp := cached()
	if cp == nil || len(cp.ids) != 2 || cp.ids[0] != ids[2] || cp.next != ids[1] {
		t.Fatalf("cached page: %+v", cp)
	}
	// Served from the cache: a mark left in the cached page comes back.
	cp.next = "mark"
	if p := page(); p.Next != "mark" {
		t.Fatalf("a second read did not come from the cache: next %q", p.Next)
	}
	// Another user's notification leaves alice's pages alone.
	send(bob, "b1")
	if cached() == nil {
		t.Fatal("bob's notification dropped alice's page")
	}
	// Hers drops them, and the next read sees it.
	newest := send(alice, "a3")
	if cached() != nil {
		t.Fatal("alice's page outlived a notification sent to her")
	}
	if p := page(); p.Next != ids[2] || len(p.Items) != 2 {
		t.Fatalf("after a send: next %q, %d items", p.Next, len(p.Items))
	}
	// So do a patch and a delete.
	read := resource.ReadRead
	if _, err := s.Propose(ctx, &Command{Op: OpPatchNotif, Now: time.Now().UnixNano(), UserID: alice.ID, ID: newest,
		NotifPatch: &resource.NotificationPatch{ReadState: &read}}); err != nil {
		t.Fatal(err)
	}
	if p := page(); p.Items[0].ReadState != resource.ReadRead {
		t.Fatalf("after a patch the first item is %q", p.Items[0].ReadState)
	}
	if _, err := s.Propose(ctx, &Command{Op: OpDeleteNotif, Now: time.Now().UnixNano(), UserID: alice.ID, ID: newest}); err != nil {
		t.Fatal(err)
	}
	if p := page(); p.Items[0].Status != resource.StatusDeleted {
		t.Fatalf("after a delete the first item is %q", p.Items[0].Status)
	}
	p, err := s.NotificationViews(alice.ID, "", 2, 0, "active", func(v *NotificationView) bool { return v.Status == resource.StatusActive })
	if err != nil || len(p.Items) != 2 || p.Next != ids[1] {
		t.Fatalf("active page after a delete: %d items, next %q, %v", len(p.Items), p.Next, err)
	}
}

// A page read while a commit ended, or was under way, is not kept: it may
// show what the commit changed as it was before.
func TestFeedPageReadAcrossACommitIsNotKept(t *testing.T) {
	c := newRecordCache(viewCacheBytes(0))
	p := func() *cachedPage { return &cachedPage{ids: []string{"x"}, versions: []uint64{1}} }
	_, gen := c.page("u", "k")
	c.begin([]string{"n/u/x"})
	c.putPage("u", "k", gen, p())
	if cp, _ := c.page("u", "k"); cp != nil {
		t.Fatal("a page was kept while a commit was under way")
	}
	c.end([]string{"n/u/x"})
	c.putPage("u", "k", gen, p())
	if cp, _ := c.page("u", "k"); cp != nil {
		t.Fatal("a page read before a commit was kept after it")
	}
	_, gen = c.page("u", "k")
	c.putPage("u", "k", gen, p())
	if cp, _ := c.page("u", "k"); cp == nil {
		t.Fatal("a page read with no commit about was not kept")
	}
	c.reset()
	if cp, _ := c.page("u", "k"); cp != nil || c.pages.bytes != 0 {
		t.Fatal("a reset kept a page")
	}
}

// The cache stays within its bound.
func TestPageCacheIsBounded(t *testing.T) {
	c := newRecordCache(viewCacheBytes(0))
	c.pages = newPageCache(64 << 10)
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = resource.NewGUID()
	}
	for i := range 500 {
		_, gen := c.page("u", "k")
		c.putPage(fmt.Sprintf("u%d", i%40), fmt.Sprintf("k%d", i), gen, &cachedPage{ids: ids, versions: make([]uint64, 50)})
		if c.pages.bytes > c.pages.limit {
			t.Fatalf("%d bytes held, limit %d", c.pages.bytes, c.pages.limit)
		}
	}
	n, bytes := 0, 0
	for _, m := range c.pages.users {
		for _, p := range m {
			n++
			bytes += p.size
		}
	}
	if n == 0 || bytes != c.pages.bytes {
		t.Fatalf("%d pages of %d bytes, counted %d", n, bytes, c.pages.bytes)
	}
}

// Readers filling the page cache while notifications are sent and changed
// never leave a page older than a write that has returned: after every
// write, the first page shows it.
func TestFeedPagesNeverOutliveAReturnedWrite(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	u := newUser("carol")
	app := newApp()
	proposeAll(t, s, &Command{Op: OpCreateUser, User: u}, &Command{Op: OpCreateApp, App: app})
	first := func() ViewPage {
		p, err := s.NotificationViews(u.ID, "", 5, 0, "all", nil)
		if err != nil {
			t.Error(err)
		}
		return p
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
					first()
				}
			}
		}()
	}
	read := resource.ReadRead
	for i := range 200 {
		c := sendCmd(u.ID, app.ID, fmt.Sprintf("n%d", i), time.Now(), time.Now().Add(time.Hour))
		if _, err := s.Propose(ctx, c); err != nil {
			t.Fatal(err)
		}
		if p := first(); len(p.Items) == 0 || p.Items[0].Seq == 0 || !bytes.Contains(p.Items[0].JSON, []byte(c.Notif.ID)) {
			t.Fatalf("send %d: the first page does not start with it", i)
		}
		if i%3 == 0 {
			if _, err := s.Propose(ctx, &Command{Op: OpPatchNotif, Now: time.Now().UnixNano(), UserID: u.ID, ID: c.Notif.ID,
				NotifPatch: &resource.NotificationPatch{ReadState: &read}}); err != nil {
				t.Fatal(err)
			}
			if p := first(); p.Items[0].ReadState != resource.ReadRead {
				t.Fatalf("patch %d: the first page shows it %q", i, p.Items[0].ReadState)
			}
		}
	}
	close(stop)
	for range 4 {
		<-done
	}
	cached, err := s.NotificationViews(u.ID, "", 5, 0, "all", nil)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := s.NotificationViews(u.ID, "", 5, 0, "", nil)
	// Examined differs: the cached page was read by an earlier call.
	if err != nil || !reflect.DeepEqual(cached.Items, direct.Items) || cached.Next != direct.Next {
		t.Fatalf("the cached page differs from Badger's (%v)", err)
	}
}
