package raft

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/resource"
)

// A created or updated change is stored without the notification while
// its record holds it, and Changes reads it there; when the record changes
// or goes, the change gets the notification as it was, so a replay still
// shows every change as it was. A change stored with its data, as earlier
// versions wrote it, keeps its data.
func TestChangesReadTheNotificationFromItsRecord(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	s := &Store{db: db}
	now := time.Now()
	u := newUser("gina")
	send := sendCmd(u.ID, "app", "", now, now.Add(time.Hour))
	send.Notif.Payload.VisualContent.Title = "quarterly-report-ready"
	res := f.ApplyBatch([]*hraft.Log{
		entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u}),
		entry(t, 2, send),
	})
	sent := res[1].([]Result)[0].Value.(SendResult)
	nid := sent.Notification.ID

	raw := func(seq uint64) []byte {
		var v []byte
		if err := db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(changeKey(u.ID, seq))
			if err != nil {
				return err
			}
			v, err = item.ValueCopy(nil)
			return err
		}); err != nil {
			t.Fatalf("change %d: %v", seq, err)
		}
		return v
	}
	if v := raw(1); bytes.Contains(v, []byte("quarterly-report-ready")) || bytes.Contains(v, []byte(u.ID)) {
		t.Fatalf("stored change %s holds the notification or the user id, which the record and the key hold", v)
	}
	ch, err := s.Changes(u.ID, 0, 10)
	if err != nil || len(ch) != 1 {
		t.Fatalf("changes = %+v, %v; want the created one", ch, err)
	}
	if c := ch[0]; c.Seq != 1 || c.UserID != u.ID || c.Type != resource.ChangeCreated || c.NotificationID != nid ||
		!bytes.Equal(c.Data, sent.Encoded) {
		t.Fatalf("change = %+v (data %s), want seq 1 of %s creating %s with data %s", c, c.Data, u.ID, nid, sent.Encoded)
	}

	state := func(c resource.Change) (n resource.Notification) {
		t.Helper()
		if err := json.Unmarshal(c.Data, &n); err != nil || n.ID != nid {
			t.Fatalf("change %d data %s (%v), want notification %s", c.Seq, c.Data, err, nid)
		}
		return n
	}
	if h, err := s.ChangeHeads(u.ID, 0, 10); err != nil || len(h) != 1 || h[0].Seq != 1 || h[0].NotificationID != nid || h[0].Data != nil {
		t.Fatalf("change heads = %+v, %v; want change 1 of %s without its data", h, err, nid)
	}
	read, dismissed := resource.ReadRead, resource.ActionDismissed
	f.ApplyBatch([]*hraft.Log{entry(t, 3, &Command{Op: OpPatchNotif, Now: now.Add(time.Second).UnixNano(),
		UserID: u.ID, ID: nid, NotifPatch: &resource.NotificationPatch{ReadState: &read}})})
	if !bytes.Contains(raw(1), []byte("quarterly-report-ready")) {
		t.Fatalf("change 1 is %s after its record changed, want the notification as it was", raw(1))
	}
	f.ApplyBatch([]*hraft.Log{entry(t, 4, &Command{Op: OpPatchNotif, Now: now.Add(2 * time.Second).UnixNano(),
		UserID: u.ID, ID: nid, NotifPatch: &resource.NotificationPatch{UserActionState: &dismissed}})})
	ch, _ = s.Changes(u.ID, 0, 10)
	if len(ch) != 3 || ch[1].Type != resource.ChangeUpdated || ch[2].Type != resource.ChangeUpdated {
		t.Fatalf("changes = %+v, want created and two updated", ch)
	}
	if n := state(ch[0]); n.ReadState != resource.ReadUnread || n.UserActionState != resource.ActionNone {
		t.Fatalf("created change reads %s/%s, want unread and no action, as it was", n.ReadState, n.UserActionState)
	}
	if n := state(ch[1]); n.ReadState != resource.ReadRead || n.UserActionState != resource.ActionNone {
		t.Fatalf("first update reads %s/%s, want read and no action", n.ReadState, n.UserActionState)
	}
	if n := state(ch[2]); n.ReadState != resource.ReadRead || n.UserActionState != resource.ActionDismissed {
		t.Fatalf("second update reads %s/%s, want read and dismissed", n.ReadState, n.UserActionState)
	}
	if ch, _ := s.Changes(u.ID, 1, 10); len(ch) != 2 || ch[0].Seq != 2 {
		t.Fatalf("changes after 1 = %+v, want seqs 2 and 3", ch)
	}

	f.ApplyBatch([]*hraft.Log{entry(t, 5, &Command{Op: OpDeleteNotif, Now: now.Add(3 * time.Second).UnixNano(), UserID: u.ID, ID: nid})})
	ch, _ = s.Changes(u.ID, 0, 10)
	if len(ch) != 4 || state(ch[2]).UserActionState != resource.ActionDismissed || ch[3].Type != resource.ChangeDeleted ||
		!strings.Contains(string(ch[3].Data), `"@removed"`) {
		t.Fatalf("changes after the delete = %+v, want the last update as it was, then deleted with @removed", ch)
	}

	// An expiry purges the record: its change keeps the notification.
	send2 := sendCmd(u.ID, "app", "", now, now.Add(time.Minute))
	f.ApplyBatch([]*hraft.Log{entry(t, 6, send2)})
	f.ApplyBatch([]*hraft.Log{entry(t, 7, &Command{Op: OpPurge, Now: now.Add(2 * time.Minute).UnixNano(), MaxItems: 100, Retention: int64(time.Hour)})})
	ch, _ = s.Changes(u.ID, 4, 10)
	if len(ch) != 2 || ch[0].Type != resource.ChangeCreated || !bytes.Contains(ch[0].Data, []byte(send2.Notif.ID)) ||
		ch[1].Type != resource.ChangeExpired {
		t.Fatalf("changes after the expiry = %+v, want created (with its notification) and expired", ch)
	}

	// An entry as earlier versions stored it, data and all.
	old := resource.Change{Seq: 9, UserID: u.ID, Type: resource.ChangeCreated, NotificationID: "old",
		Data: json.RawMessage(`{"id":"old"}`)}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(changeKey(u.ID, 9), encodeChange(&old)) }); err != nil {
		t.Fatal(err)
	}
	if ch, _ := s.Changes(u.ID, 6, 10); len(ch) != 1 || ch[0].Seq != 9 || string(ch[0].Data) != `{"id":"old"}` {
		t.Fatalf("an old entry reads %+v, want seq 9 with its data", ch)
	}
}
