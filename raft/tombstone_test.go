package raft

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// A deleted notification's tombstone keeps no content from
// ContentlessTombstoneLevel: it stays until the notification expires, outside
// every quota, so a sender that sends and deletes in a loop within its rate
// limit added a copy of each payload to the disk for up to 30 days. The
// change log keeps its copy, so that a replay shows each change as it was,
// until the log's retention trims it; then nothing holds the content. Under
// level 3 (a cluster with an older member) the tombstone keeps it, as every
// older node does, and what level 3 wrote stays readable after the raise.
func TestADeletedNotificationKeepsNoContent(t *testing.T) {
	for _, level := range []int{3, 4} {
		t.Run(fmt.Sprintf("rules%d", level), func(t *testing.T) {
			f, db := openFSM(t, t.TempDir())
			defer db.Close()
			now := time.Now()
			u := newUser("tomb")
			app := &resource.ApplicationRecord{ID: "app", AppID: "appid", TargetHostName: "a.example"}
			apply := entries(t, f)
			apply(&Command{Op: OpSetRules, Now: now.UnixNano(), Level: level},
				&Command{Op: OpCreateUser, Now: now.UnixNano(), User: u},
				&Command{Op: OpCreateApp, Now: now.UnixNano(), App: app})
			send := func(anid, secret string) string {
				t.Helper()
				c := sendCmd(u.ID, app.ID, anid, now, now.Add(time.Hour))
				c.Notif.Payload = resource.Payload{RawContent: &secret, VisualContent: &resource.VisualContent{Title: secret}}
				c.Notif.FallbackPolicy = &resource.FallbackPolicy{EndpointFallback: &resource.EndpointFallback{
					VisualContent: &resource.VisualContent{Title: secret}}}
				return apply(c)[0].Value.(SendResult).Notification.ID
			}
			secret := "SECRET-" + strings.Repeat("x", 3000)
			id := send("one", secret)
			apply(&Command{Op: OpDeleteNotifsBy, Now: now.UnixNano(), UserID: u.ID, AppID: app.ID, AppNotifID: "one"})

			holding := keysWhere(t, db, func([]byte) bool { return true })
			for k, v := range holding {
				if !strings.Contains(v, "SECRET-") {
					delete(holding, k)
				}
			}
			s := &Store{db: db}
			n, found, err := s.Notification(u.ID, id)
			if err != nil || !found || n.Status != resource.StatusDeleted {
				t.Fatalf("the tombstone reads %+v, %v, %v", n, found, err)
			}
			changes, err := s.Changes(u.ID, 0, 100)
			if err != nil || len(changes) != 2 {
				t.Fatalf("changes %+v, %v; want two", changes, err)
			}
			if changes[0].Type != resource.ChangeCreated || !strings.Contains(string(changes[0].Data), "SECRET-") ||
				changes[1].Type != resource.ChangeDeleted {
				t.Fatalf("the replay shows %s %s, then %s; want the creation as it was, then the deletion",
					changes[0].Type, changes[0].Data, changes[1].Type)
			}
			want := []string{string(changeKey(u.ID, changes[0].Seq))} // the log's copy
			if level < ContentlessTombstoneLevel {
				want = append(want, string(notifKey(u.ID, id))) // the older rule's tombstone
				if n.Payload.RawContent == nil {
					t.Fatal("under level 3 the tombstone lost its content")
				}
			} else {
				if n.Payload.RawContent != nil || n.Payload.VisualContent != nil || n.FallbackPolicy != nil {
					t.Fatalf("the tombstone holds %+v %+v", n.Payload, n.FallbackPolicy)
				}
				if n.ID != id || n.AppNotificationID != "one" || n.ReadState != resource.ReadUnread ||
					!n.ExpirationDateTime.Equal(now.Add(time.Hour).Truncate(time.Millisecond)) {
					t.Fatalf("the tombstone lost its metadata: %+v", n)
				}
			}
			if got := keysOf(holding); !sameSet(got, want) {
				t.Fatalf("under level %d the content is in %v, want %v", level, got, want)
			}
			// A tombstone written before a raise reads the same after it,
			// and a notification deleted afterwards follows the new rule.
			apply(&Command{Op: OpSetRules, Now: now.UnixNano(), Level: RulesLevel})
			if again, _, err := s.Notification(u.ID, id); err != nil || (again.Payload.RawContent != nil) != (n.Payload.RawContent != nil) {
				t.Fatalf("after the raise the tombstone reads %+v, %v", again, err)
			}
			if again, err := s.Changes(u.ID, 0, 100); err != nil || string(again[0].Data) != string(changes[0].Data) {
				t.Fatalf("after the raise the changes read %v, %v", again, err)
			}
			id2 := send("two", "SECRET-2")
			apply(&Command{Op: OpDeleteNotif, Now: now.UnixNano(), UserID: u.ID, ID: id2})
			if m, _, _ := s.Notification(u.ID, id2); m.Payload.RawContent != nil {
				t.Fatalf("deleted under level %d, the tombstone holds %v", RulesLevel, *m.Payload.RawContent)
			}
			// Past the log's retention (not the expiry), the purge trims the
			// changes, and under the new rule no copy of the content is left.
			apply(&Command{Op: OpPurge, Now: now.Add(2 * time.Minute).UnixNano(), Retention: int64(time.Minute), MaxItems: 1000})
			left := keysWhere(t, db, func([]byte) bool { return true })
			for k, v := range left {
				if !strings.Contains(v, "SECRET-") {
					delete(left, k)
				}
			}
			if want := map[bool]int{true: 1, false: 0}[level < ContentlessTombstoneLevel]; len(left) != want {
				t.Fatalf("after the trim the content is in %v, want %d records (the level-%d tombstone)", keysOf(left), want, level)
			}
			if m, found, _ := s.Notification(u.ID, id2); !found || m.Status != resource.StatusDeleted {
				t.Fatalf("the tombstone went with the trim: %+v %v", m, found)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

func keysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
