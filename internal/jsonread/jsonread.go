// Package jsonread reads, without reflection, the JSON that Herald's hot
// paths meet most: a send in a Raft entry (package raft) and a send's
// request body (package httpapi). A Reader reads a value exactly as
// encoding/json reads it into the same Go type, or refuses it: an unknown
// or repeated member, a null, a number that is not a plain integer. The
// caller then hands the whole input to encoding/json, so whatever is
// refused keeps encoding/json's result and errors.
package jsonread

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/herald-notify/herald/resource"
)

// Reader reads B from I.
type Reader struct {
	B []byte
	I int
	// Plain refuses strings with escapes, for a caller whose input is
	// rarely escaped and whose fallback reads it whole anyway.
	Plain bool
}

// space skips JSON's white space: json.Marshal writes none, a client may.
func (r *Reader) space() {
	for r.I < len(r.B) {
		switch r.B[r.I] {
		case ' ', '\t', '\n', '\r':
			r.I++
		default:
			return
		}
	}
}

// Peek reports whether c comes next.
func (r *Reader) Peek(c byte) bool {
	r.space()
	return r.I < len(r.B) && r.B[r.I] == c
}

// Byte consumes c if it comes next.
func (r *Reader) Byte(c byte) bool {
	if r.Peek(c) {
		r.I++
		return true
	}
	return false
}

// End reports whether only white space is left.
func (r *Reader) End() bool {
	r.space()
	return r.I == len(r.B)
}

// Object reads an object's members, calling member with each name's index
// in names; member reads the value.
func (r *Reader) Object(names []string, member func(i int) bool) bool {
	if !r.Byte('{') {
		return false
	}
	if r.Byte('}') {
		return true
	}
	var seen uint64
	for {
		name, ok := r.RawString()
		if !ok || !r.Byte(':') {
			return false
		}
		k := -1
		for j, n := range names {
			if n == string(name) {
				k = j
				break
			}
		}
		// An unknown name could match a field case-insensitively in
		// encoding/json, or be ignored by it: either way, not here. Nor
		// a repeated one: encoding/json keeps the last, merging objects.
		if k < 0 || seen&(1<<k) != 0 {
			return false
		}
		seen |= 1 << k
		if !member(k) {
			return false
		}
		if r.Byte('}') {
			return true
		}
		if !r.Byte(',') {
			return false
		}
	}
}

// RawString reads a string without escapes or control characters and
// returns its bytes.
func (r *Reader) RawString() ([]byte, bool) {
	if !r.Byte('"') {
		return nil, false
	}
	start := r.I
	for r.I < len(r.B) {
		switch c := r.B[r.I]; {
		case c == '"':
			r.I++
			return r.B[start : r.I-1], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		r.I++
	}
	return nil, false
}

// String reads a string value. Unless Plain, one with escapes or bytes
// that are not UTF-8 is read by json.Unmarshal, which replaces what is not
// UTF-8.
func (r *Reader) String() (string, bool) {
	r.space()
	start := r.I
	raw, ok := r.RawString()
	if ok && utf8.Valid(raw) {
		return string(raw), true
	}
	if r.Plain {
		return "", false
	}
	if ok {
		return unmarshalString(r.B[start:r.I])
	}
	// Find the closing quote past the escapes, then let encoding/json
	// read the whole literal.
	r.I = start
	if !r.Byte('"') {
		return "", false
	}
	for r.I < len(r.B) {
		switch r.B[r.I] {
		case '\\':
			r.I += 2
			continue
		case '"':
			r.I++
			return unmarshalString(r.B[start:r.I])
		}
		r.I++
	}
	return "", false
}

func unmarshalString(lit []byte) (string, bool) {
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		return "", false
	}
	return s, true
}

// Number returns the bytes of an integer literal: an optional minus and
// digits without a leading zero, as JSON allows.
func (r *Reader) Number() ([]byte, bool) {
	r.space()
	start := r.I
	if r.I < len(r.B) && r.B[r.I] == '-' {
		r.I++
	}
	digits := r.I
	for r.I < len(r.B) && r.B[r.I] >= '0' && r.B[r.I] <= '9' {
		r.I++
	}
	n := r.I - digits
	if n == 0 || (n > 1 && r.B[digits] == '0') {
		return nil, false
	}
	if r.I < len(r.B) && (r.B[r.I] == '.' || r.B[r.I] == 'e' || r.B[r.I] == 'E') {
		return nil, false
	}
	return r.B[start:r.I], true
}

func (r *Reader) Int64() (int64, bool) {
	lit, ok := r.Number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(lit), 10, 64)
	return v, err == nil
}

func (r *Reader) Int() (int, bool) {
	lit, ok := r.Number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(lit), 10, strconv.IntSize)
	return int(v), err == nil
}

func (r *Reader) Uint64() (uint64, bool) {
	lit, ok := r.Number()
	if !ok || lit[0] == '-' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(lit), 10, 64)
	return v, err == nil
}

// Decode hands the JSON text that read takes (Number or a quoted
// RawString) to v's own decoder, as encoding/json would.
func (r *Reader) Decode(read func() ([]byte, bool), v json.Unmarshaler) bool {
	r.space()
	start := r.I
	if _, ok := read(); !ok {
		return false
	}
	return v.UnmarshalJSON(r.B[start:r.I]) == nil
}

// Time reads a resource.Time from a string without escapes.
func (r *Reader) Time(t *resource.Time) bool { return r.Decode(r.RawString, t) }

var (
	payloadNames = []string{"rawContent", "visualContent"}
	visualNames  = []string{"title", "body"}
	policyNames  = []string{"platformTypes"}
)

// Payload reads a notification's payload.
func (r *Reader) Payload(p *resource.Payload) bool {
	return r.Object(payloadNames, func(k int) bool {
		if k == 0 {
			s, ok := r.String()
			p.RawContent = &s
			return ok
		}
		v := &resource.VisualContent{}
		p.VisualContent = v
		return r.Object(visualNames, func(k int) (ok bool) {
			if k == 0 {
				v.Title, ok = r.String()
			} else {
				v.Body, ok = r.String()
			}
			return ok
		})
	})
}

// TargetPolicy reads a notification's targetPolicy.
func (r *Reader) TargetPolicy(t *resource.TargetPolicy) bool {
	return r.Object(policyNames, func(int) bool { return r.StringList(&t.PlatformTypes) })
}

// StringList reads an array of strings; an empty one is an empty slice,
// not nil, as encoding/json makes it.
func (r *Reader) StringList(out *[]string) bool {
	if !r.Byte('[') {
		return false
	}
	list := []string{}
	if !r.Byte(']') {
		for {
			s, ok := r.String()
			if !ok {
				return false
			}
			list = append(list, s)
			if r.Byte(']') {
				break
			}
			if !r.Byte(',') {
				return false
			}
		}
	}
	*out = list
	return true
}
