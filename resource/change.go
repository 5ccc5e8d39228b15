package resource

import (
	"encoding/json"
	"strconv"
)

// Change types of a user's change log. The log is what delta and the live
// stream read; its sequence number is their cursor.
const (
	ChangeCreated = "created"
	ChangeUpdated = "updated"
	ChangeDeleted = "deleted"
	ChangeExpired = "expired"
)

// Change is one entry of a user's change log.
type Change struct {
	Seq            uint64   `json:"seq"`
	UserID         string   `json:"userId"`
	Type           string   `json:"type"`
	NotificationID string   `json:"notificationId"`
	TargetHostName string   `json:"targetHostName"`
	PlatformTypes  []string `json:"platformTypes,omitempty"`
	// Data is what receivers get, encoded once when the change is applied:
	// the whole notification for created and updated, and
	// {"id", "@removed": {"reason"}} for deleted and expired.
	Data json.RawMessage `json:"data"`
}

// StreamEvent is the event name of the change on the live stream, where an
// expiry is a deletion.
func (c *Change) StreamEvent() string {
	if c.Type == ChangeExpired {
		return ChangeDeleted
	}
	return c.Type
}

// Targets reports whether a subscription on platform p receives the change.
func (c *Change) Targets(host, platform string) bool {
	if c.TargetHostName != host {
		return false
	}
	return policyTargets(c.PlatformTypes, platform)
}

// Removed is the body of a deleted or expired notification in delta and on
// the stream.
type Removed struct {
	ID      string        `json:"id"`
	Removed RemovedReason `json:"@removed"`
}

// RemovedReason says why.
type RemovedReason struct {
	Reason string `json:"reason"`
}

// FormatCursor encodes a change sequence number as the opaque cursor of the
// live stream's event ids.
func FormatCursor(seq uint64) string { return "c" + strconv.FormatUint(seq, 36) }

// ParseCursor decodes a cursor; ok is false for anything FormatCursor did not
// make. strconv also takes upper-case digits and leading zeros, so that
// several spellings would name one position; only the canonical one counts.
func ParseCursor(s string) (seq uint64, ok bool) {
	if len(s) < 2 || s[0] != 'c' {
		return 0, false
	}
	v, err := strconv.ParseUint(s[1:], 36, 64)
	if err != nil || FormatCursor(v) != s {
		return 0, false
	}
	return v, true
}
