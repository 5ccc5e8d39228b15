package pushcontent

import (
	"testing"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/resource"
)

func msg(typ, read, action string, visual bool, prio string) *fanout.Message {
	m := &fanout.Message{Type: typ, Notification: resource.Notification{ID: "n", ReadState: read, UserActionState: action, Priority: prio}}
	if visual {
		m.Notification.Payload.VisualContent = &resource.VisualContent{Title: "t"}
	}
	return m
}

func TestWhatAlertsAndWhatIsUrgent(t *testing.T) {
	const u, r = resource.ReadUnread, resource.ReadRead
	const none, dis, act = resource.ActionNone, resource.ActionDismissed, resource.ActionActivated
	for _, tc := range []struct {
		name          string
		m             *fanout.Message
		alert, urgent bool
	}{
		{"created visual high", msg("created", u, none, true, "High"), true, true},
		{"created visual low", msg("created", u, none, true, "Low"), true, false},
		{"created raw high", msg("created", u, none, false, "High"), false, true},
		{"content replaced", msg("updated", u, none, true, "High"), true, true},
		{"read elsewhere", msg("updated", r, none, true, "High"), false, false},
		{"dismissed elsewhere", msg("updated", u, dis, true, "High"), false, false},
		{"opened elsewhere", msg("updated", u, act, true, "High"), false, false},
		{"deleted", msg("deleted", "", "", true, "High"), false, false},
		{"expired", msg("expired", "", "", true, "High"), false, false},
	} {
		if got := Alert(tc.m) != nil; got != tc.alert {
			t.Errorf("%s: alert %v, want %v", tc.name, got, tc.alert)
		}
		if got := Urgent(tc.m); got != tc.urgent {
			t.Errorf("%s: urgent %v, want %v", tc.name, got, tc.urgent)
		}
	}
}

func TestDataOfADeletion(t *testing.T) {
	d := Data(&fanout.Message{Type: resource.ChangeExpired, Notification: resource.Notification{ID: "n"}})
	if len(d) != 3 || d["type"] != "deleted" || d["id"] != "n" || d["reason"] != "expired" {
		t.Errorf("data %v", d)
	}
}
