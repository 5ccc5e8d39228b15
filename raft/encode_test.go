package raft

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// The spliced encodings are byte for byte what json.Marshal makes, for
// values with text that JSON escapes and with the optional fields both
// present and absent.
func TestSplicedEncodingsMatchMarshal(t *testing.T) {
	now := time.Now()
	ttl := 30
	raw := "<b>raw</b> & \x01"
	notifs := []resource.Notification{
		{ID: "n1", TargetHostName: "a.example", Priority: "High", ExpirationDateTime: resource.At(now)},
		{ID: "n2<&>", TargetHostName: "b.example", AppNotificationID: "x\"y\\z\u2028", GroupName: "g",
			Payload:            resource.Payload{RawContent: &raw, VisualContent: &resource.VisualContent{Title: "héllo\n", Body: "😀"}},
			TargetPolicy:       resource.TargetPolicy{PlatformTypes: []string{"windows", "webPush"}},
			DisplayTimeToLive:  &ttl,
			ExpirationDateTime: resource.At(now.Add(time.Hour)), CreatedDateTime: resource.At(now),
			ReadState: "unread", UserActionState: "noAction", Status: "active"},
	}
	live := [][]resource.LiveTarget{nil, {{SubscriptionID: "s1", PlatformType: "web", PendingSeq: 7}},
		{{SubscriptionID: "s<&>\u2028", PlatformType: "android", PendingSeq: 1 << 40}, {SubscriptionID: "s2", PlatformType: "web"}}}
	for i, n := range notifs {
		for j, seq := range []uint64{0, 1, 1 << 40} {
			rec := &resource.NotificationRecord{Notification: n, UserID: "u<1>", AppID: "a&1", Seq: seq,
				LiveTargets: live[(i+j)%len(live)]}
			data, err := json.Marshal(rec.Notification)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if got := encodeRecord(data, rec); !bytes.Equal(got, want) {
				t.Errorf("record:\n got %s\nwant %s", got, want)
			}
			for _, pt := range [][]string{nil, n.TargetPolicy.PlatformTypes} {
				ch := resource.Change{Seq: seq, UserID: rec.UserID, Type: resource.ChangeCreated, NotificationID: n.ID,
					TargetHostName: n.TargetHostName, PlatformTypes: pt, Data: data}
				want, err := json.Marshal(ch)
				if err != nil {
					t.Fatal(err)
				}
				if got := encodeChange(&ch); !bytes.Equal(got, want) {
					t.Errorf("change:\n got %s\nwant %s", got, want)
				}
			}
		}
	}
}
