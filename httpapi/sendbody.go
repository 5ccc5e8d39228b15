package httpapi

import (
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
// each other over generated and fuzzed bodies).

// readSendBody decodes b, a whole body that is valid UTF-8, into in; false
// leaves in untouched.
func readSendBody(b []byte, in *resource.NotificationInput) bool {
	r := bodyReader{b: b}
	var out resource.NotificationInput
	var seen uint16
	ok := r.object(func(key []byte) bool {
		bit, known := sendBodyKeys[string(key)]
		if !known || seen&bit != 0 {
			return false
		}
		seen |= bit
		switch bit {
		case keyTargetHostName:
			return r.str(&out.TargetHostName)
		case keyAppNotificationID:
			return r.str(&out.AppNotificationID)
		case keyGroupName:
			return r.str(&out.GroupName)
		case keyPriority:
			return r.str(&out.Priority)
		case keyPayload:
			out.Payload = new(resource.Payload)
			return r.payload(out.Payload)
		case keyTargetPolicy:
			out.TargetPolicy = new(resource.TargetPolicy)
			return r.targetPolicy(out.TargetPolicy)
		case keyDisplayTimeToLive:
			v, ok := r.number()
			if !ok {
				return false
			}
			out.DisplayTimeToLive = new(resource.Seconds)
			return out.DisplayTimeToLive.UnmarshalJSON(v) == nil
		case keyExpirationDateTime:
			v, ok := r.rawString()
			if !ok {
				return false
			}
			out.ExpirationDateTime = new(resource.Time)
			return out.ExpirationDateTime.UnmarshalJSON(v) == nil
		}
		return false
	})
	if !ok || !r.end() {
		return false
	}
	*in = out
	return true
}

const (
	keyTargetHostName uint16 = 1 << iota
	keyAppNotificationID
	keyGroupName
	keyPriority
	keyPayload
	keyTargetPolicy
	keyDisplayTimeToLive
	keyExpirationDateTime
)

// sendBodyKeys are the properties readSendBody reads; fallbackPolicy is
// left to encoding/json.
var sendBodyKeys = map[string]uint16{
	"targetHostName":     keyTargetHostName,
	"appNotificationId":  keyAppNotificationID,
	"groupName":          keyGroupName,
	"priority":           keyPriority,
	"payload":            keyPayload,
	"targetPolicy":       keyTargetPolicy,
	"displayTimeToLive":  keyDisplayTimeToLive,
	"expirationDateTime": keyExpirationDateTime,
}

func (r *bodyReader) payload(p *resource.Payload) bool {
	var seen uint8
	return r.object(func(key []byte) bool {
		switch string(key) {
		case "rawContent":
			if seen&1 != 0 {
				return false
			}
			seen |= 1
			p.RawContent = new(string)
			return r.str(p.RawContent)
		case "visualContent":
			if seen&2 != 0 {
				return false
			}
			seen |= 2
			p.VisualContent = new(resource.VisualContent)
			return r.visualContent(p.VisualContent)
		}
		return false
	})
}

func (r *bodyReader) visualContent(v *resource.VisualContent) bool {
	var seen uint8
	return r.object(func(key []byte) bool {
		switch string(key) {
		case "title":
			if seen&1 != 0 {
				return false
			}
			seen |= 1
			return r.str(&v.Title)
		case "body":
			if seen&2 != 0 {
				return false
			}
			seen |= 2
			return r.str(&v.Body)
		}
		return false
	})
}

func (r *bodyReader) targetPolicy(t *resource.TargetPolicy) bool {
	seen := false
	return r.object(func(key []byte) bool {
		if string(key) != "platformTypes" || seen {
			return false
		}
		seen = true
		r.space()
		if !r.next('[') {
			return false
		}
		t.PlatformTypes = []string{}
		r.space()
		if r.next(']') {
			return true
		}
		for {
			var s string
			if !r.str(&s) {
				return false
			}
			t.PlatformTypes = append(t.PlatformTypes, s)
			r.space()
			if r.next(']') {
				return true
			}
			if !r.next(',') {
				return false
			}
		}
	})
}

// bodyReader reads the few JSON forms readSendBody accepts.
type bodyReader struct {
	b []byte
	i int
}

func (r *bodyReader) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// next consumes c if it comes next.
func (r *bodyReader) next(c byte) bool {
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (r *bodyReader) end() bool {
	r.space()
	return r.i == len(r.b)
}

// object reads an object, calling member for each name with the reader
// at the name's value; member reads the value or returns false.
func (r *bodyReader) object(member func(key []byte) bool) bool {
	r.space()
	if !r.next('{') {
		return false
	}
	r.space()
	if r.next('}') {
		return true
	}
	for {
		key, ok := r.rawString()
		if !ok {
			return false
		}
		key = key[1 : len(key)-1]
		r.space()
		if !r.next(':') || !member(key) {
			return false
		}
		r.space()
		if r.next('}') {
			return true
		}
		if !r.next(',') {
			return false
		}
		r.space()
	}
}

// rawString reads a string with no escapes and no control characters and
// returns it with its quotes.
func (r *bodyReader) rawString() ([]byte, bool) {
	r.space()
	if !r.next('"') {
		return nil, false
	}
	start := r.i - 1
	for r.i < len(r.b) {
		c := r.b[r.i]
		r.i++
		switch {
		case c == '"':
			return r.b[start:r.i], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

func (r *bodyReader) str(s *string) bool {
	v, ok := r.rawString()
	if ok {
		*s = string(v[1 : len(v)-1])
	}
	return ok
}

// number reads an integer of up to nine digits, with no sign, fraction or
// exponent: displayTimeToLive as applications write it.
func (r *bodyReader) number() ([]byte, bool) {
	r.space()
	start := r.i
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
		r.i++
	}
	n := r.i - start
	// JSON allows no leading zero before more digits.
	if n == 0 || n > 9 || (n > 1 && r.b[start] == '0') {
		return nil, false
	}
	return r.b[start:r.i], true
}
