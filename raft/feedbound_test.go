package raft

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// sparseFeed stores total notifications for a new user and marks all but
// every every-th read, so that ?readState=unread matches a few spread
// across the feed; it returns the user's id and the unread ids, newest
// first.
func sparseFeed(tb testing.TB, s *Store, total, every int) (string, []string) {
	tb.Helper()
	ctx := context.Background()
	u := newUser("sparse")
	app := newApp()
	proposeAll(tb, s, &Command{Op: OpCreateUser, User: u}, &Command{Op: OpCreateApp, App: app})
	now := time.Now()
	var sends, patches []*Command
	var unread []string
	read := resource.ReadRead
	for i := range total {
		// Ids sort by creation time: a millisecond apart, oldest first.
		c := sendCmd(u.ID, app.ID, fmt.Sprintf("n%d", i), now.Add(time.Duration(i-total)*time.Millisecond), now.Add(time.Hour))
		sends = append(sends, c)
		if i%every == every/2 {
			unread = append([]string{c.Notif.ID}, unread...)
			continue
		}
		patches = append(patches, &Command{Op: OpPatchNotif, Now: now.UnixNano(), UserID: u.ID, ID: c.Notif.ID,
			NotifPatch: &resource.NotificationPatch{ReadState: &read}})
	}
	for _, cmds := range [][]*Command{sends, patches} {
		for _, r := range s.ProposeAll(ctx, cmds) {
			if r.Err != nil {
				tb.Fatal(r.Err)
			}
		}
	}
	return u.ID, unread
}

func unreadOnly(v *NotificationView) bool {
	return v.Status == resource.StatusActive && v.ReadState == resource.ReadUnread
}

// A bounded read examines at most its bound, ends its page there with the
// last notification examined as Next, and paging on to the end returns
// every match once, newest first, from Badger and from the page cache.
func TestNotificationViewsExamineAtMostTheBound(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	const total, every, bound = 3000, 600, 500
	uid, unread := sparseFeed(t, s, total, every)
	all, err := s.NotificationViews(uid, "", total, 0, "", nil)
	if err != nil || len(all.Items) != total || all.Next != "" || all.Examined != total {
		t.Fatalf("the whole feed: %d items, next %q, %d examined, %v", len(all.Items), all.Next, all.Examined, err)
	}
	pos := map[string]int{}
	for i, v := range all.Items {
		pos[v.ID] = i
	}
	for _, filter := range []string{"", "unread"} {
		for round := range 2 { // the second round of "unread" comes from the page cache
			var got []string
			after, pages, empty := "", 0, 0
			for {
				p, err := s.NotificationViews(uid, after, 1, bound, filter, unreadOnly)
				if err != nil {
					t.Fatal(err)
				}
				if pages++; pages > total {
					t.Fatalf("%q: paging did not end", filter)
				}
				if p.Examined > bound {
					t.Fatalf("%q: a page examined %d notifications, bound %d", filter, p.Examined, bound)
				}
				if filter != "" && round == 1 && p.Examined != 0 {
					t.Fatalf("%q: the second round's page after %q was read again (%d examined)", filter, after, p.Examined)
				}
				for _, v := range p.Items {
					got = append(got, v.ID)
				}
				if len(p.Items) == 0 && p.Next != "" {
					empty++
				}
				if p.Next == "" {
					break
				}
				// Next is where the page stopped: no further than the
				// bound beyond where it began.
				start := -1
				if after != "" {
					start = pos[after]
				}
				if n, ok := pos[p.Next]; !ok || n <= start || n-start > bound {
					t.Fatalf("%q: a page after %q (at %d) ends at %q (at %d, %v)", filter, after, start, p.Next, n, ok)
				}
				after = p.Next
			}
			if !slices.Equal(got, unread) {
				t.Fatalf("%q, round %d: %d matches %v\nwant %d %v", filter, round, len(got), got, len(unread), unread)
			}
			// 3,000 notifications at most 500 a page: at least 6 pages,
			// and 5 matches 600 apart leave pages without any.
			if pages < total/bound || empty == 0 {
				t.Fatalf("%q: %d pages, %d empty with a nextLink", filter, pages, empty)
			}
		}
	}

	// A page that fills before the bound is as it was: Next its last item.
	p, err := s.NotificationViews(uid, "", 10, bound, "", nil)
	if err != nil || len(p.Items) != 10 || p.Next != all.Items[9].ID || p.Examined != 11 {
		t.Fatalf("a full page: %d items, next %q (want %q), %d examined, %v", len(p.Items), p.Next, all.Items[9].ID, p.Examined, err)
	}
	// Filled by the bound's last: Next is that item, as either rule says.
	p, err = s.NotificationViews(uid, "", bound, bound, "", nil)
	if err != nil || len(p.Items) != bound || p.Next != all.Items[bound-1].ID || p.Examined != bound {
		t.Fatalf("a page filled at the bound: %d items, next %q, %d examined, %v", len(p.Items), p.Next, p.Examined, err)
	}
	// A bound that the feed's end meets exactly leaves no nextLink to an
	// empty last page; one more notification does.
	none := func(*NotificationView) bool { return false }
	for _, c := range []struct {
		after string
		next  string
	}{
		{all.Items[total-bound-1].ID, ""},
		{all.Items[total-bound-2].ID, all.Items[total-2].ID},
	} {
		p, err := s.NotificationViews(uid, c.after, 5, bound, "", none)
		if err != nil || len(p.Items) != 0 || p.Next != c.next || p.Examined != bound {
			t.Fatalf("after %q: %d items, next %q (want %q), %d examined, %v", c.after, len(p.Items), p.Next, c.next, p.Examined, err)
		}
	}
}

// BenchmarkFilteredFeedPage is the first page of ?readState=unread&$top=50
// over a user of 10,000 notifications of which 10 are unread, read as after
// a write to the user (no cached page; the views are cached), with the
// feed's bound (2000) and without (0); and, to weigh the bound, pages of
// $top=100 and 1000 that every notification fills.
func BenchmarkFilteredFeedPage(b *testing.B) {
	s := openTestStore(b, b.TempDir(), nil)
	defer s.Close()
	uid, _ := sparseFeed(b, s, 10000, 1000)
	active := func(v *NotificationView) bool { return v.Status == resource.StatusActive }
	for _, c := range []struct {
		name         string
		top, examine int
		keep         func(*NotificationView) bool
	}{
		{"unread/examine=0", 50, 0, unreadOnly},
		{"unread/examine=1000", 50, 1000, unreadOnly},
		{"unread/examine=2000", 50, 2000, unreadOnly},
		{"active/top=100", 100, 2000, active},
		{"active/top=1000", 1000, 2000, active},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.NotificationViews(uid, "", c.top, c.examine, "", c.keep); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
