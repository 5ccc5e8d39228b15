package raft

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

func TestAppliedIndexWakesItsWaiters(t *testing.T) {
	var a appliedIndex
	a.Store(3)
	if !a.wait(3, nil, nil) {
		t.Fatal("wait for an index already applied did not return true")
	}
	woke := make(chan bool)
	go func() { woke <- a.wait(5, nil, nil) }()
	waiting := func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.moved == nil {
			return errors.New("no one waits")
		}
		return nil
	}
	pollUntil(t, "the waiter to block", waiting)
	a.Store(4)
	pollUntil(t, "the waiter to wait again after 4", waiting)
	select {
	case <-woke:
		t.Fatal("wait for 5 returned at 4")
	default:
	}
	a.Store(5)
	if !<-woke {
		t.Fatal("wait for 5 said false once 5 was applied")
	}
	done := make(chan struct{})
	go func() { woke <- a.wait(9, done, nil) }()
	close(done)
	if <-woke {
		t.Fatal("wait for 9 said true after it was given up")
	}
}

// The live streams get a batch's changes before Badger's commit; a client
// that saw one must find it in its next read of the notification, the
// feed, or the change log (a stream's replay, a delta).
func TestReadsAfterAnEventSeeIt(t *testing.T) {
	type seen struct {
		notif, view, feed, changes bool
		err                        error
	}
	results := make(chan seen, 1)
	var s *Store
	onChange := func(chs []resource.Change) {
		for _, ch := range chs {
			if ch.Type != resource.ChangeCreated {
				continue
			}
			// A client reads as soon as it has the event, here before
			// the FSM has even committed the batch to Badger.
			go func() {
				var r seen
				_, r.notif, r.err = s.Notification(ch.UserID, ch.NotificationID)
				if r.err == nil {
					var v *NotificationView
					v, r.view, r.err = s.NotificationView(ch.UserID, ch.NotificationID)
					r.view = r.view && v.Seq == ch.Seq
				}
				if r.err == nil {
					var p ViewPage
					p, r.err = s.NotificationViews(ch.UserID, "", 50, 0, "all", nil)
					for _, v := range p.Items {
						r.feed = r.feed || v.Seq == ch.Seq
					}
				}
				if r.err == nil {
					var cs []resource.Change
					cs, r.err = s.Changes(ch.UserID, ch.Seq-1, 10)
					r.changes = len(cs) > 0 && cs[0].NotificationID == ch.NotificationID
				}
				results <- r
			}()
			// Hold the commit until that read waits for it: without the
			// wait the read would find nothing every time.
			deadline := time.Now().Add(10 * time.Second)
			for {
				s.fsm.applied.mu.Lock()
				waiting := s.fsm.applied.moved != nil
				s.fsm.applied.mu.Unlock()
				if waiting {
					break
				}
				if time.Now().After(deadline) {
					return // the read did not wait: it found nothing
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	s = openTestStore(t, t.TempDir(), func(chs []resource.Change) { onChange(chs) })
	defer s.Close()
	u := newUser("erin")
	proposeAll(t, s, &Command{Op: OpCreateUser, User: u})
	now := time.Now()
	proposeAll(t, s, sendCmd(u.ID, "app", "", now, now.Add(time.Hour)))
	select {
	case r := <-results:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !r.notif || !r.view || !r.feed || !r.changes {
			t.Fatalf("a read right after the event: notification %v, view %v, feed %v, change log %v; want all found",
				r.notif, r.view, r.feed, r.changes)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no read after the event")
	}
}

// A follower answering a forwarded write waits for its own apply; it is
// woken by the apply, and gives up with its context.
func TestWaitAppliedEndsWithTheApplyOrTheContext(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	next := s.Applied() + 1
	done := make(chan error, 1)
	go func() { done <- s.WaitApplied(context.Background(), next) }()
	proposeAll(t, s, &Command{Op: OpCreateUser, User: newUser("frank")})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitApplied did not return after the apply")
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- s.WaitApplied(ctx, s.Applied()+100) }()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("WaitApplied after cancel = %v, want context.Canceled", err)
	}
}
