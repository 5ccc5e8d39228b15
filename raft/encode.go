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
// the FSM's time under ingest. The notification itself is written by
// appendNotification (sendcodec.go). Both functions return exactly what
// json.Marshal returns for the same value (encode_test.go), so what is
// stored does not depend on which one wrote it.

// encodeRecord returns n encoded, given data, its Notification encoded.
func encodeRecord(data []byte, n *resource.NotificationRecord) []byte {
	// A live target takes about 110 bytes (a subscription id, a
	// platform, a sequence number and their names).
	b := make([]byte, 0, len(data)+64+len(n.UserID)+len(n.AppID)+len(n.LiveTargets)*112)
	return appendRecordTail(append(b, data[:len(data)-1]...), n)
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
