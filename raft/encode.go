package raft

import (
	"bytes"
	"encoding/json"

	"github.com/herald-notify/herald/resource"
)

// A send's notification is encoded once: the change's data, the stored
// record and the response are built from the same bytes. encoding/json
// would encode the notification again for the record and, for the change,
// re-validate and compact the data it already holds; that was a third of
// the FSM's time under ingest. Both functions return exactly what
// json.Marshal returns for the same value (encode_test.go), so what is
// stored does not depend on which one wrote it.

// recordTail is the part of a NotificationRecord beyond its Notification.
type recordTail struct {
	UserID string `json:"userId"`
	AppID  string `json:"appObjectId"`
	Seq    uint64 `json:"seq,omitempty"`
}

// encodeRecord returns n encoded, given data, its Notification encoded.
func encodeRecord(data []byte, n *resource.NotificationRecord) []byte {
	tail, err := json.Marshal(recordTail{UserID: n.UserID, AppID: n.AppID, Seq: n.Seq})
	if err != nil {
		panic(err) // two strings and a number
	}
	return splice(data, tail[1:])
}

// encodeChange returns ch encoded; ch.Data must be compact JSON, as
// json.Marshal makes it. The change is encoded without its data, which
// comes last and then reads null, and the data goes in the null's place.
func encodeChange(ch *resource.Change) []byte {
	head := *ch
	head.Data = nil
	b, err := json.Marshal(head)
	if err != nil {
		panic(err)
	}
	b = bytes.TrimSuffix(b, []byte("null}"))
	b = append(b, ch.Data...)
	return append(b, '}')
}

// splice joins the JSON object obj with the members in rest (an object's
// members and its closing brace).
func splice(obj, rest []byte) []byte {
	b := make([]byte, 0, len(obj)+len(rest))
	b = append(b, obj[:len(obj)-1]...)
	if len(obj) > 2 && len(rest) > 1 {
		b = append(b, ',')
	}
	return append(b, rest...)
}
