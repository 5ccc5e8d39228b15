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

func (t Time) String() string { return string(AppendTime(nil, t.Time)) }

// MarshalJSON encodes the zero time as null.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	b := make([]byte, 0, len(TimeLayout)+2)
	b = append(b, '"')
	b = AppendTime(b, t.Time)
	return append(b, '"'), nil
}

// AppendTime appends t as TimeLayout. Every stored notification and every
// answer to a send carries three times; time.AppendFormat interprets its
// layout on each call, which was about 1 % of a node's CPU under ingest
// (BENCHMARKS.md, 6 December 2026). Years outside 0–9999, which the layout
// does not fit either, go to AppendFormat.
func AppendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, TimeLayout)
	}
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / int(time.Millisecond)
	return append(b,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
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
	// An offset can carry a time that RFC 3339 allows past the years it
	// can write: "9999-12-31T23:59:59-01:00" is in the year 10000 in UTC,
	// which MarshalJSON writes in five digits and no reader (this one
	// included) parses back. A Raft entry holding one could not be read,
	// and would take the other commands of its entry with it.
	if err != nil || v.Before(minTime) || !v.Before(maxTime) {
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("%q", s), Type: reflect.TypeFor[Time]()}
	}
	*t = At(v)
	return nil
}

// minTime and maxTime bound the times that TimeLayout writes and reads:
// the years 0000 to 9999, in UTC.
var (
	minTime = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

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
