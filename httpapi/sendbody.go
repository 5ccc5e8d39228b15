package httpapi

import (
	"github.com/herald-notify/herald/internal/jsonread"
	"github.com/herald-notify/herald/resource"
)

// A send's body was decoded by encoding/json's Decoder, which with its
// reflection, its copy of the body and its strict mode was over half of
// the send handler's CPU under ingest. readSendBody reads the shape that
// applications actually send (known property names in their exact case,
// strings without escapes, the objects Graph defines) and gives up on
// anything else: escapes, nulls, a name in another case, a property twice,
// fallbackPolicy, any syntax error. decodeBytes then decodes the body with
// encoding/json as before, so every error, and every input the fast path
// does not know, keeps the behaviour and the message it had. Whatever this
// reads, it reads as encoding/json does (sendbody_test.go holds the two to
// each other over generated and fuzzed bodies). It reads with
// internal/jsonread, the reader of the sends in Raft entries, in its Plain
// mode: a string with escapes is left to encoding/json too.

// readSendBody decodes b, a whole body that is valid UTF-8, into in; false
// leaves in untouched.
func readSendBody(b []byte, in *resource.NotificationInput) bool {
	r := jsonread.Reader{B: b, Plain: true}
	var out resource.NotificationInput
	ok := r.Object(sendBodyNames, func(i int) (ok bool) {
		switch i {
		case 0:
			out.TargetHostName, ok = r.String()
		case 1:
			out.AppNotificationID, ok = r.String()
		case 2:
			out.GroupName, ok = r.String()
		case 3:
			out.Priority, ok = r.String()
		case 4:
			out.Payload = new(resource.Payload)
			ok = r.Payload(out.Payload)
		case 5:
			out.TargetPolicy = new(resource.TargetPolicy)
			ok = r.TargetPolicy(out.TargetPolicy)
		case 6:
			out.DisplayTimeToLive = new(resource.Seconds)
			ok = r.Decode(r.Number, out.DisplayTimeToLive)
		case 7:
			out.ExpirationDateTime = new(resource.Time)
			ok = r.Time(out.ExpirationDateTime)
		}
		return ok
	})
	if !ok || !r.End() {
		return false
	}
	*in = out
	return true
}

// sendBodyNames are the properties readSendBody reads, in the order of its
// cases; fallbackPolicy is left to encoding/json.
var sendBodyNames = []string{"targetHostName", "appNotificationId", "groupName", "priority",
	"payload", "targetPolicy", "displayTimeToLive", "expirationDateTime"}
