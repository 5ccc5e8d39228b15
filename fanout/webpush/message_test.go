package webpush

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/resource"
)

func notification() resource.Notification {
	raw := `{"build":4711}`
	return resource.Notification{
		ID:                "n1",
		AppNotificationID: "build-4711",
		GroupName:         "ci",
		Payload: resource.Payload{
			RawContent:    &raw,
			VisualContent: &resource.VisualContent{Title: "Build <4711> failed", Body: "3 tests & more"},
		},
		Priority:        resource.PriorityHigh,
		ReadState:       resource.ReadUnread,
		UserActionState: resource.ActionNone,
	}
}

func TestPlaintextOfCreated(t *testing.T) {
	got, err := plaintext(&fanout.Message{Type: resource.ChangeCreated, Notification: notification()})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"created","id":"n1","title":"Build <4711> failed","body":"3 tests & more","rawContent":"{\"build\":4711}","readState":"unread","userActionState":"noInteraction","appNotificationId":"build-4711","groupName":"ci"}`
	if string(got) != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
}

func TestPlaintextOfDeletionCarriesOnlyTypeIDReason(t *testing.T) {
	for _, c := range []struct{ typ, reason string }{
		{resource.ChangeDeleted, "deleted"},
		{resource.ChangeExpired, "expired"}, // an expiry is a deletion to a device
	} {
		got, err := plaintext(&fanout.Message{Type: c.typ, Reason: c.reason, Notification: notification()})
		if err != nil {
			t.Fatal(err)
		}
		want := `{"type":"deleted","id":"n1","reason":"` + c.reason + `"}`
		if string(got) != want {
			t.Errorf("\n got %s\nwant %s", got, want)
		}
	}
}

func TestPlaintextOmitsEmptyFields(t *testing.T) {
	got, _ := plaintext(&fanout.Message{Type: resource.ChangeUpdated, Notification: resource.Notification{ID: "n2", ReadState: "read"}})
	if want := `{"type":"updated","id":"n2","readState":"read"}`; string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestPlaintextTooLargeDropsContentAndSaysSo(t *testing.T) {
	n := notification()
	raw := strings.Repeat("r", 3000)
	n.Payload.RawContent = &raw
	n.Payload.VisualContent.Body = strings.Repeat("b", 1000)
	got, err := plaintext(&fanout.Message{Type: resource.ChangeCreated, Notification: n})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if len(got) > MaxPlaintext || m["truncated"] != true || m["rawContent"] != nil || m["body"] != nil ||
		m["title"] != "Build <4711> failed" || m["id"] != "n1" {
		t.Fatalf("%d bytes: %s", len(got), got)
	}

	// A title alone too long to fit goes as well.
	n.Payload.VisualContent.Title = strings.Repeat("t", 4000)
	got, _ = plaintext(&fanout.Message{Type: resource.ChangeCreated, Notification: n})
	if len(got) > MaxPlaintext || strings.Contains(string(got), "ttt") || !strings.Contains(string(got), `"truncated":true`) {
		t.Fatalf("%d bytes: %.200s", len(got), got)
	}
}
