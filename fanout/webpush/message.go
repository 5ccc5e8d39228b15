package webpush

import (
	"bytes"
	"encoding/json"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/resource"
)

// pushMessage is the plaintext a service worker receives: compact, flat, and
// enough to show, update or close a notification without a round trip. The
// notification id is the key the worker uses to drop duplicates (delivery
// is at least once) and to find what it showed (as the Notification tag).
type pushMessage struct {
	Type              string `json:"type"`
	ID                string `json:"id"`
	Reason            string `json:"reason,omitempty"`
	Title             string `json:"title,omitempty"`
	Body              string `json:"body,omitempty"`
	RawContent        string `json:"rawContent,omitempty"`
	ReadState         string `json:"readState,omitempty"`
	UserActionState   string `json:"userActionState,omitempty"`
	AppNotificationID string `json:"appNotificationId,omitempty"`
	GroupName         string `json:"groupName,omitempty"`
	// Truncated tells the worker that content was left out to fit the
	// push service's size limit, and that it should fetch the
	// notification by id.
	Truncated bool `json:"truncated,omitempty"`
}

// plaintext builds the JSON for msg, at most MaxPlaintext bytes.
func plaintext(msg *fanout.Message) ([]byte, error) {
	n := &msg.Notification
	m := pushMessage{Type: msg.Type, ID: n.ID}
	if m.Type == resource.ChangeDeleted || m.Type == resource.ChangeExpired {
		// An expiry is a deletion to a device; the reason tells them apart.
		m.Type = resource.ChangeDeleted
		m.Reason = msg.Reason
		return encodeJSON(&m)
	}
	if vc := n.Payload.VisualContent; vc != nil {
		m.Title, m.Body = vc.Title, vc.Body
	}
	if n.Payload.RawContent != nil {
		m.RawContent = *n.Payload.RawContent
	}
	m.ReadState = n.ReadState
	m.UserActionState = n.UserActionState
	m.AppNotificationID = n.AppNotificationID
	m.GroupName = n.GroupName

	b, err := encodeJSON(&m)
	if err != nil || len(b) <= MaxPlaintext {
		return b, err
	}
	// The payload limit of API.md §5 is 4096 bytes and this message has
	// more fields, so a large payload does not fit. Drop the bulky parts;
	// the worker fetches the whole notification by id.
	m.RawContent, m.Body, m.Truncated = "", "", true
	if b, err = encodeJSON(&m); err != nil || len(b) <= MaxPlaintext {
		return b, err
	}
	// Only a title of thousands of characters gets here. What remains is
	// bounded: ids, states and names of at most 256 characters each.
	m.Title = ""
	return encodeJSON(&m)
}

func encodeJSON(m *pushMessage) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// A worker is not an HTML page; escaping <, > and & as \u003c would
	// only spend the size limit.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}
