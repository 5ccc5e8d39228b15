// Package resource holds Herald's resource types (users, applications,
// subscriptions, notifications), their validation and the ids they carry.
// It does no I/O so that every other package can share it.
package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

// TimeLayout is the wire format of every time: RFC 3339, UTC, milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// Time is a time.Time that encodes as TimeLayout and accepts any RFC 3339
// time on input.
type Time struct{ time.Time }

// At wraps t, truncated to milliseconds so that a stored value compares equal
// to what a client read back.
func At(t time.Time) Time { return Time{t.UTC().Truncate(time.Millisecond)} }

func (t Time) String() string { return t.UTC().Format(TimeLayout) }

// MarshalJSON encodes the zero time as null.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	b := make([]byte, 0, len(TimeLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeLayout)
	return append(b, '"'), nil
}

func (t *Time) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*t = Time{}
		return nil
	}
	// A type error lets encoding/json name the property that holds the bad
	// time, so the API's 400 can carry it as its target.
	s, ok := plainString(b)
	if !ok {
		if err := json.Unmarshal(b, &s); err != nil {
			return &json.UnmarshalTypeError{Value: string(b), Type: reflect.TypeFor[Time]()}
		}
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("%q", s), Type: reflect.TypeFor[Time]()}
	}
	*t = At(v)
	return nil
}

// plainString returns the string the JSON b holds when it is quoted
// printable ASCII without escapes, as every time Herald writes is; ok is
// false for anything else, which json.Unmarshal then reads. A Raft entry
// holds three times for each notification it sends, and a json.Unmarshal
// of its own for each (which validates and allocates a decoder) was a
// fifth of decoding the entry.
func plainString(b []byte) (string, bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return "", false
	}
	for _, c := range b[1 : len(b)-1] {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return "", false
		}
	}
	return string(b[1 : len(b)-1]), true
}
