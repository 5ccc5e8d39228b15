// Package pushcontent decides what a mobile push (FCM, APNs) carries for
// one message: whether the device shows an alert, and the flat string data
// the app acts on. Both providers get the same answer, so that an Android
// and an iOS device of one user behave alike.
package pushcontent

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"unicode/utf8"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/resource"
)

// Event is the message's event: created, updated or deleted. An expiry is
// delivered as a deletion, as on the live stream.
func Event(msg *fanout.Message) string {
	switch msg.Type {
	case resource.ChangeCreated, resource.ChangeUpdated:
		return msg.Type
	}
	return resource.ChangeDeleted
}

// Reason is why a deleted notification went: "deleted" or "expired".
func Reason(msg *fanout.Message) string {
	if msg.Reason != "" {
		return msg.Reason
	}
	if msg.Type == resource.ChangeExpired {
		return resource.ChangeExpired
	}
	return resource.ChangeDeleted
}

// StateSync reports whether msg only tells the device that a notification
// is gone or handled: a deletion, or an update recording that the user has
// read, dismissed or opened it on some device. Such messages exist so that
// the app removes what it shows (universal dismiss); alerting again, or
// waking the device urgently, would do the opposite. An update that only
// replaced the content (same appNotificationId) is still unread and is not
// a state sync.
func StateSync(msg *fanout.Message) bool {
	n := &msg.Notification
	switch Event(msg) {
	case resource.ChangeDeleted:
		return true
	case resource.ChangeUpdated:
		return n.ReadState == resource.ReadRead ||
			n.UserActionState == resource.ActionDismissed || n.UserActionState == resource.ActionActivated
	}
	return false
}

// Alert is what the device should show, or nil for a silent message: a
// state sync or a raw-only notification.
func Alert(msg *fanout.Message) *resource.VisualContent {
	if StateSync(msg) {
		return nil
	}
	return msg.Notification.Payload.VisualContent
}

// Urgent reports whether msg should wake the device at once: a High
// priority notification that is not a state sync. Providers penalise apps
// whose urgent messages show nothing, so a dismissal never is.
func Urgent(msg *fanout.Message) bool {
	return !StateSync(msg) && msg.Notification.Priority == resource.PriorityHigh
}

// Data is the message as flat strings, the form FCM's data map requires
// and the custom keys of an APNs payload. "type" and "id" are always
// there; the rest only when known, so that a deletion stays small.
func Data(msg *fanout.Message) map[string]string {
	n := &msg.Notification
	d := make(map[string]string, 8)
	d["type"] = Event(msg)
	d["id"] = n.ID
	if d["type"] == resource.ChangeDeleted {
		d["reason"] = Reason(msg)
	}
	put := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	put("appNotificationId", n.AppNotificationID)
	put("groupName", n.GroupName)
	put("readState", n.ReadState)
	put("userActionState", n.UserActionState)
	if n.Payload.RawContent != nil {
		d["rawContent"] = *n.Payload.RawContent
	}
	if !n.ExpirationDateTime.IsZero() {
		d["expirationDateTime"] = n.ExpirationDateTime.String()
	}
	return d
}

// MaxPayload is the largest push body FCM and APNs take (4 KiB).
const MaxPayload = 4096

// Shrink returns msg without the content that may not fit a push: the raw
// content and the alert's body. A push built from it carries
// "truncated": "true", and the app fetches the notification by its id.
func Shrink(msg *fanout.Message) *fanout.Message {
	m := *msg
	m.Notification.Payload.RawContent = nil
	if v := m.Notification.Payload.VisualContent; v != nil {
		m.Notification.Payload.VisualContent = &resource.VisualContent{Title: v.Title}
	}
	return &m
}

// CutTitle returns msg with the alert's title shorter by at least n bytes
// of its JSON encoding and marked with an ellipsis: a push Shrink left too
// large has nothing else to give, since the API's limit lets a title take
// 4 KiB alone. The cut counts what each character takes in the push (&, <,
// > and control characters take six bytes escaped), so cutting what the
// push is over by makes it fit, without cutting an escaped title to
// nothing.
func CutTitle(msg *fanout.Message, n int) *fanout.Message {
	v := msg.Notification.Payload.VisualContent
	if v == nil || v.Title == "" {
		return msg
	}
	const ellipsis = "…"
	budget := encodedLen(v.Title) - n - encodedLen(ellipsis)
	keep := 0
	for keep < len(v.Title) {
		_, size := utf8.DecodeRuneInString(v.Title[keep:])
		if w := encodedLen(v.Title[keep : keep+size]); w <= budget {
			budget -= w
			keep += size
			continue
		}
		break
	}
	m := *msg
	m.Notification.Payload.VisualContent = &resource.VisualContent{Title: v.Title[:keep] + ellipsis, Body: v.Body}
	return &m
}

// encodedLen is how many bytes s takes inside a JSON string, as
// encoding/json writes it; it adds up character by character.
func encodedLen(s string) int {
	b, _ := json.Marshal(s)
	return len(b) - 2
}

// MaxCollapseID is the longest apns-collapse-id Apple accepts, in bytes.
const MaxCollapseID = 64

// CollapseID is the apns-collapse-id of an alert: the appNotificationId,
// so that a replaced notification replaces the shown one, or else the
// notification's id, so that a repeat of an alert iOS showed (delivery is
// at least once, and iOS shows it without the app) does not show twice.
// One longer than Apple's 64 bytes is hashed to 64 hex digits, which keeps
// that property. Both the APNs sender and FCM's apns block use it, so that
// an iOS device collapses alike through either.
func CollapseID(n *resource.Notification) string {
	key := cmp.Or(n.AppNotificationID, n.ID)
	if len(key) <= MaxCollapseID {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
