package raft

import (
	"encoding/json"
	"strconv"

	"github.com/herald-notify/herald/internal/jsonread"
	"github.com/herald-notify/herald/resource"
)

// A send is most of what the log carries, and encoding/json spent as much
// of a node's CPU writing and reading sends in entries (reflection, a
// decoder per value, a string per field) as the FSM spent applying them.
// The functions here write a send command and its notification by hand,
// byte for byte as json.Marshal does, and read back exactly what
// json.Unmarshal reads from such bytes. The format is unchanged: nodes of
// earlier versions read what these write, and these read what they wrote.
// Whatever the hand-written path does not know (another command, a field
// it does not expect, an escape in a number's place) goes through
// encoding/json instead, so only the shape json.Marshal gives a send takes
// the fast path. sendcodec_test.go holds both directions to encoding/json
// over generated sends and fuzzed input, and fails when one of these types
// gains a field that the code here does not write.

// appendSend appends c, a send with no other command field set, as
// json.Marshal encodes it; ok is false for any other command.
func appendSend(b []byte, c *Command) ([]byte, bool) {
	if !plainSend(c) {
		return b, false
	}
	b = append(b, `{"op":"send","now":`...)
	b = strconv.AppendInt(b, c.Now, 10)
	if c.RequestID != "" {
		b = append(b, `,"requestId":`...)
		b = appendJSONString(b, c.RequestID)
	}
	b = append(b, `,"notif":`...)
	b = appendNotificationRecord(b, c.Notif)
	if c.MaxItems != 0 {
		b = append(b, `,"maxItems":`...)
		b = strconv.AppendInt(b, int64(c.MaxItems), 10)
	}
	return append(b, '}'), true
}

// plainSend reports whether c is a send that sets only the fields a send
// from the API sets.
func plainSend(c *Command) bool {
	return c != nil && c.Op == OpSend && c.Notif != nil &&
		c.User == nil && c.UserPatch == nil && c.App == nil && c.Credential == nil &&
		c.Tokens == nil && c.Sub == nil && c.SubPatch == nil && c.NotifPatch == nil &&
		c.VAPID == nil && c.Outcomes == nil && c.Node == nil && c.Slots == nil &&
		c.Audit == nil && c.Client == nil &&
		c.UserID == "" && c.AppID == "" && c.ID == "" && c.ConsumeHash == "" &&
		c.Session == "" && c.GroupName == "" && c.AppNotifID == "" &&
		c.Retention == 0 && c.AuditRetention == 0 && c.Level == 0
}

// appendNotificationRecord appends n as json.Marshal encodes it.
func appendNotificationRecord(b []byte, n *resource.NotificationRecord) []byte {
	b = appendNotification(b, &n.Notification)
	return appendRecordTail(b[:len(b)-1], n)
}

// appendRecordTail appends the members a NotificationRecord has beyond its
// Notification, and the closing brace, to b: an encoded Notification
// without its own.
func appendRecordTail(b []byte, n *resource.NotificationRecord) []byte {
	b = append(b, `,"userId":`...)
	b = appendJSONString(b, n.UserID)
	b = append(b, `,"appObjectId":`...)
	b = appendJSONString(b, n.AppID)
	if n.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, n.Seq, 10)
	}
	if len(n.LiveTargets) > 0 {
		b = append(b, `,"liveTargets":[`...)
		for i, t := range n.LiveTargets {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"subscriptionId":`...)
			b = appendJSONString(b, t.SubscriptionID)
			b = append(b, `,"platformType":`...)
			b = appendJSONString(b, t.PlatformType)
			b = append(b, `,"pendingSeq":`...)
			b = strconv.AppendUint(b, t.PendingSeq, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// notificationSize is about what appendNotification writes for n, so that
// a send's buffer is made once: a buffer of 512 bytes grew, and copied
// the notification again, for most sends of the bench's size.
func notificationSize(n *resource.Notification) int {
	size := 448 + len(n.ID) + len(n.TargetHostName) + len(n.AppNotificationID) + len(n.GroupName) + len(n.Priority)
	if n.Payload.RawContent != nil {
		size += len(*n.Payload.RawContent)
	}
	if v := n.Payload.VisualContent; v != nil {
		size += len(v.Title) + len(v.Body)
	}
	for _, p := range n.TargetPolicy.PlatformTypes {
		size += len(p) + 3
	}
	return size
}

// appendNotification appends n as json.Marshal encodes it.
func appendNotification(b []byte, n *resource.Notification) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, n.ID)
	b = append(b, `,"targetHostName":`...)
	b = appendJSONString(b, n.TargetHostName)
	if n.AppNotificationID != "" {
		b = append(b, `,"appNotificationId":`...)
		b = appendJSONString(b, n.AppNotificationID)
	}
	if n.GroupName != "" {
		b = append(b, `,"groupName":`...)
		b = appendJSONString(b, n.GroupName)
	}
	b = append(b, `,"payload":{`...)
	p := &n.Payload
	if p.RawContent != nil {
		b = append(b, `"rawContent":`...)
		b = appendJSONString(b, *p.RawContent)
	}
	if v := p.VisualContent; v != nil {
		if p.RawContent != nil {
			b = append(b, ',')
		}
		b = append(b, `"visualContent":{"title":`...)
		b = appendJSONString(b, v.Title)
		if v.Body != "" {
			b = append(b, `,"body":`...)
			b = appendJSONString(b, v.Body)
		}
		b = append(b, '}')
	}
	b = append(b, `},"targetPolicy":{"platformTypes":`...)
	b = appendStrings(b, n.TargetPolicy.PlatformTypes)
	b = append(b, `},"priority":`...)
	b = appendJSONString(b, n.Priority)
	if n.DisplayTimeToLive != nil {
		b = append(b, `,"displayTimeToLive":`...)
		b = strconv.AppendInt(b, int64(*n.DisplayTimeToLive), 10)
	}
	b = append(b, `,"expirationDateTime":`...)
	b = appendTime(b, n.ExpirationDateTime)
	if n.FallbackPolicy != nil {
		b = append(b, `,"fallbackPolicy":`...)
		b = appendMarshal(b, n.FallbackPolicy)
	}
	b = append(b, `,"createdDateTime":`...)
	b = appendTime(b, n.CreatedDateTime)
	b = append(b, `,"lastModifiedDateTime":`...)
	b = appendTime(b, n.LastModifiedDateTime)
	b = append(b, `,"readState":`...)
	b = appendJSONString(b, n.ReadState)
	b = append(b, `,"userActionState":`...)
	b = appendJSONString(b, n.UserActionState)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, n.Status)
	return append(b, '}')
}

func appendTime(b []byte, t resource.Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = resource.AppendTime(b, t.Time)
	return append(b, '"')
}

// appendJSONString appends s quoted as json.Marshal quotes it. Printable
// ASCII that JSON does not escape (json.Marshal also escapes <, > and &)
// is copied; anything else is left to json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return appendMarshal(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendMarshal(b []byte, v any) []byte {
	m, err := json.Marshal(v)
	if err != nil {
		panic(storageFailure{err}) // strings, numbers and a FallbackPolicy always encode
	}
	return append(b, m...)
}

// decodeSends reads a JSON array of commands as json.Unmarshal reads it
// into []*Command, provided every command is a send in the shape
// appendSend writes; ok is false otherwise, and the caller then uses
// json.Unmarshal.
func decodeSends(data []byte) (cmds []*Command, ok bool) {
	d := jsonReader{jsonread.Reader{B: data}}
	if !d.Byte('[') {
		return nil, false
	}
	if d.Peek(']') {
		return nil, false // json.Unmarshal makes an empty, non-nil slice; leave it to that
	}
	for {
		c, ok := d.send()
		if !ok {
			return nil, false
		}
		cmds = append(cmds, c)
		if d.Byte(']') {
			break
		}
		if !d.Byte(',') {
			return nil, false
		}
	}
	return cmds, d.End()
}

// jsonReader is the reader of internal/jsonread, with the readers of a
// send and its notification as this package encodes them.
type jsonReader struct{ jsonread.Reader }

var sendNames = []string{"op", "now", "requestId", "notif", "maxItems"}

func (d *jsonReader) send() (*Command, bool) {
	c := &Command{}
	ok := d.Object(sendNames, func(k int) (ok bool) {
		switch k {
		case 0:
			var op string
			op, ok = d.String()
			c.Op = Op(op)
			return ok && c.Op == OpSend
		case 1:
			c.Now, ok = d.Int64()
		case 2:
			c.RequestID, ok = d.String()
		case 3:
			c.Notif = &resource.NotificationRecord{}
			ok = d.notification(c.Notif)
		case 4:
			c.MaxItems, ok = d.Int()
		}
		return ok
	})
	return c, ok && c.Op == OpSend && c.Notif != nil
}

var notifNames = []string{"id", "targetHostName", "appNotificationId", "groupName", "payload",
	"targetPolicy", "priority", "displayTimeToLive", "expirationDateTime", "createdDateTime",
	"lastModifiedDateTime", "readState", "userActionState", "status", "userId", "appObjectId", "seq", "liveTargets"}

// notification reads a NotificationRecord; a fallbackPolicy is left to
// encoding/json.
func (d *jsonReader) notification(n *resource.NotificationRecord) bool {
	return d.notificationIn(n, notifNames)
}

// notificationIn reads an object with the members names, the first of
// notifNames: a Notification's alone, or a NotificationRecord's.
func (d *jsonReader) notificationIn(n *resource.NotificationRecord, names []string) bool {
	return d.Object(names, func(k int) (ok bool) {
		switch k {
		case 0:
			n.ID, ok = d.String()
		case 1:
			n.TargetHostName, ok = d.String()
		case 2:
			n.AppNotificationID, ok = d.String()
		case 3:
			n.GroupName, ok = d.String()
		case 4:
			ok = d.Payload(&n.Payload)
		case 5:
			ok = d.TargetPolicy(&n.TargetPolicy)
		case 6:
			n.Priority, ok = d.String()
		case 7:
			var v int
			v, ok = d.Int()
			n.DisplayTimeToLive = &v
		case 8:
			ok = d.Time(&n.ExpirationDateTime)
		case 9:
			ok = d.Time(&n.CreatedDateTime)
		case 10:
			ok = d.Time(&n.LastModifiedDateTime)
		case 11:
			n.ReadState, ok = d.String()
		case 12:
			n.UserActionState, ok = d.String()
		case 13:
			n.Status, ok = d.String()
		case 14:
			n.UserID, ok = d.String()
		case 15:
			n.AppID, ok = d.String()
		case 16:
			n.Seq, ok = d.Uint64()
		case 17:
			ok = d.liveTargets(&n.LiveTargets)
		}
		return ok
	})
}

var liveTargetNames = []string{"subscriptionId", "platformType", "pendingSeq"}

// liveTargets reads a non-empty array of LiveTarget; null and [] are left
// to encoding/json, as appendRecordTail writes neither.
func (d *jsonReader) liveTargets(list *[]resource.LiveTarget) bool {
	if !d.Byte('[') {
		return false
	}
	for {
		var t resource.LiveTarget
		if !d.Object(liveTargetNames, func(k int) (ok bool) {
			switch k {
			case 0:
				t.SubscriptionID, ok = d.String()
			case 1:
				t.PlatformType, ok = d.String()
			case 2:
				t.PendingSeq, ok = d.Uint64()
			}
			return ok
		}) {
			return false
		}
		*list = append(*list, t)
		if d.Byte(']') {
			return true
		}
		if !d.Byte(',') {
			return false
		}
	}
}

// EncodeCommand returns c as json.Marshal encodes it.
func EncodeCommand(c *Command) ([]byte, error) {
	return appendCommand(make([]byte, 0, 640), c)
}

// appendCommand appends c as json.Marshal encodes it.
func appendCommand(b []byte, c *Command) ([]byte, error) {
	if b, ok := appendSend(b, c); ok {
		return b, nil
	}
	m, err := json.Marshal(c)
	return append(b, m...), err
}

// DecodeCommands reads a JSON array of commands as json.Unmarshal reads it
// into []*Command.
func DecodeCommands(data []byte) ([]*Command, error) {
	if cmds, ok := decodeSends(data); ok {
		return cmds, nil
	}
	var cmds []*Command
	err := json.Unmarshal(data, &cmds)
	return cmds, err
}

// notificationNames are the members of a Notification alone.
var notificationNames = notifNames[:14]

// encodeSendResult is json.Marshal(r), given r.Encoded.
func encodeSendResult(r SendResult) []byte {
	b := make([]byte, 0, len(r.Encoded)+40)
	b = append(b, `{"Notification":`...)
	b = append(b, r.Encoded...)
	b = append(b, `,"Created":`...)
	b = strconv.AppendBool(b, r.Created)
	return append(b, '}')
}

// decodeSendResult reads what encodeSendResult wrote, keeping the
// notification's bytes as Encoded so that a follower answers with them
// rather than encode the notification again; anything else goes to
// json.Unmarshal.
func decodeSendResult(b []byte) (any, error) {
	const head = `{"Notification":`
	d := jsonReader{jsonread.Reader{B: b, I: len(head)}}
	var rec resource.NotificationRecord
	if len(b) > len(head) && string(b[:len(head)]) == head && d.notificationIn(&rec, notificationNames) {
		end, rest := d.I, string(b[d.I:])
		if rest == `,"Created":true}` || rest == `,"Created":false}` {
			return SendResult{Notification: rec.Notification, Created: rest == `,"Created":true}`,
				Encoded: append([]byte(nil), b[len(head):end]...)}, nil
		}
	}
	var r SendResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return r, nil
}

// The records a send writes besides the notification, as json.Marshal
// encodes them.

func encodeStoredChange(c *storedChange) []byte {
	b := make([]byte, 0, 96+len(c.NotificationID)+len(c.TargetHostName))
	b = append(b, `{"type":`...)
	b = appendJSONString(b, c.Type)
	b = append(b, `,"notificationId":`...)
	b = appendJSONString(b, c.NotificationID)
	b = append(b, `,"targetHostName":`...)
	b = appendJSONString(b, c.TargetHostName)
	if len(c.PlatformTypes) > 0 {
		b = append(b, `,"platformTypes":`...)
		b = appendStrings(b, c.PlatformTypes)
	}
	return append(b, '}')
}

func appendStrings(b []byte, list []string) []byte {
	if list == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

func encodeDelivery(d *resource.DeliveryRecord) []byte {
	b := make([]byte, 0, 384)
	b = append(b, `{"subscriptionId":`...)
	b = appendJSONString(b, d.SubscriptionID)
	b = append(b, `,"channelType":`...)
	b = appendJSONString(b, d.ChannelType)
	b = append(b, `,"platformType":`...)
	b = appendJSONString(b, d.PlatformType)
	b = append(b, `,"state":`...)
	b = appendJSONString(b, d.State)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(d.Attempts), 10)
	b = append(b, `,"lastAttemptDateTime":`...)
	b = appendTime(b, d.LastAttemptDateTime)
	b = append(b, `,"lastError":`...)
	if d.LastError == nil {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, *d.LastError)
	}
	b = append(b, `,"deliveredDateTime":`...)
	b = appendTime(b, d.DeliveredDateTime)
	b = append(b, `,"attemptHistory":`...)
	if d.AttemptHistory == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, a := range d.AttemptHistory {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"dateTime":`...)
			b = appendTime(b, a.DateTime)
			b = append(b, `,"outcome":`...)
			b = appendJSONString(b, a.Outcome)
			if a.Error != "" {
				b = append(b, `,"error":`...)
				b = appendJSONString(b, a.Error)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"userId":`...)
	b = appendJSONString(b, d.UserID)
	b = append(b, `,"notificationId":`...)
	b = appendJSONString(b, d.NotificationID)
	if d.PendingSeq != 0 {
		b = append(b, `,"pendingSeq":`...)
		b = strconv.AppendUint(b, d.PendingSeq, 10)
	}
	if d.PendingType != "" {
		b = append(b, `,"pendingType":`...)
		b = appendJSONString(b, d.PendingType)
	}
	b = append(b, `,"nextAttempt":`...)
	b = appendTime(b, d.NextAttempt)
	if d.Host != "" {
		b = append(b, `,"host":`...)
		b = appendJSONString(b, d.Host)
	}
	return append(b, '}')
}

// encodeRequestRecord is json.Marshal(r) for a result without an error of
// the command's own and with a value as json.Marshal writes one; ok is
// false for any other.
func encodeRequestRecord(r *requestRecord) ([]byte, bool) {
	b := make([]byte, 0, 64+len(r.Result.Value))
	b = append(b, `{"exp":`...)
	b = strconv.AppendInt(b, r.Exp, 10)
	b = append(b, `,"result":`...)
	b, ok := AppendWireResult(b, &r.Result)
	if !ok {
		return nil, false
	}
	return append(b, '}'), true
}

// AppendWireResult appends json.Marshal(w) to b for a result without an
// error of the command's own and with a value as json.Marshal writes one;
// ok is false for any other, and b is then to be dropped.
func AppendWireResult(b []byte, w *WireResult) (_ []byte, ok bool) {
	if w.Error != nil || !marshalled(w.Value) {
		return b, false
	}
	b = append(b, `{"applied":`...)
	b = strconv.AppendUint(b, w.Applied, 10)
	if w.Type != "" {
		b = append(b, `,"type":`...)
		b = appendJSONString(b, w.Type)
	}
	if len(w.Value) > 0 {
		b = append(b, `,"value":`...)
		b = append(b, w.Value...)
	}
	if w.StoreError != "" {
		b = append(b, `,"storeError":`...)
		b = appendJSONString(b, w.StoreError)
	}
	return append(b, '}'), true
}

// marshalled reports whether json.Marshal would copy the JSON v as it is:
// it removes whitespace between tokens, and within strings it escapes <,
// > and &, and U+2028 and U+2029.
func marshalled(v []byte) bool {
	in := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case in && (c == '<' || c == '>' || c == '&'):
			return false
		case in && c == 0xe2 && i+2 < len(v) && v[i+1] == 0x80 && (v[i+2] == 0xa8 || v[i+2] == 0xa9):
			return false
		case !in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}
