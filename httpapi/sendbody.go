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
	ok := r.fields(sendBodyNames, func(i int) bool {
		switch sendBodyNames[i] {
		case "targetHostName":
			return r.str(&out.TargetHostName)
		case "appNotificationId":
			return r.str(&out.AppNotificationID)
		case "groupName":
			return r.str(&out.GroupName)
		case "priority":
			return r.str(&out.Priority)
		case "payload":
			out.Payload = new(resource.Payload)
			return r.payload(out.Payload)
		case "targetPolicy":
			out.TargetPolicy = new(resource.TargetPolicy)
			return r.targetPolicy(out.TargetPolicy)
		case "displayTimeToLive":
			out.DisplayTimeToLive = new(resource.Seconds)
			return r.decode(r.number, out.DisplayTimeToLive)
		case "expirationDateTime":
			out.ExpirationDateTime = new(resource.Time)
			return r.decode(r.rawString, out.ExpirationDateTime)
		}
		return false
	})
	if !ok || !r.end() {
		return false
	}
	*in = out
	return true
}

// sendBodyNames are the properties readSendBody reads; fallbackPolicy is
// left to encoding/json.
var sendBodyNames = []string{"targetHostName", "appNotificationId", "groupName", "priority",
	"payload", "targetPolicy", "displayTimeToLive", "expirationDateTime"}

func (r *bodyReader) payload(p *resource.Payload) bool {
	return r.fields([]string{"rawContent", "visualContent"}, func(i int) bool {
		if i == 0 {
			p.RawContent = new(string)
			return r.str(p.RawContent)
		}
		p.VisualContent = new(resource.VisualContent)
		return r.fields([]string{"title", "body"}, func(i int) bool {
			if i == 0 {
				return r.str(&p.VisualContent.Title)
			}
			return r.str(&p.VisualContent.Body)
		})
	})
}

func (r *bodyReader) targetPolicy(t *resource.TargetPolicy) bool {
	return r.fields([]string{"platformTypes"}, func(int) bool {
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

// fields reads an object whose members are among names, each at most
// once; read reads the value of names[i].
func (r *bodyReader) fields(names []string, read func(i int) bool) bool {
	var seen uint32
	return r.object(func(key []byte) bool {
		for i, name := range names {
			if string(key) == name {
				if seen&(1<<i) != 0 {
					return false
				}
				seen |= 1 << i
				return read(i)
			}
		}
		return false
	})
}

// decode hands the JSON text that read takes to v's own decoder, as
// encoding/json would.
func (r *bodyReader) decode(read func() ([]byte, bool), v interface{ UnmarshalJSON([]byte) error }) bool {
	b, ok := read()
	return ok && v.UnmarshalJSON(b) == nil
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
