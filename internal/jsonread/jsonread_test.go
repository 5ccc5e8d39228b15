package jsonread

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/herald-notify/herald/resource"
)

// checkPrimitives holds each reader of a value to encoding/json: what one
// reads from the start of b is what json.Unmarshal reads from the bytes it
// consumed, and those bytes are one JSON value.
func checkPrimitives(t *testing.T, b []byte) {
	t.Helper()
	type reading struct {
		name string
		read func(r *Reader) (any, bool)
		into func() any
	}
	for _, plain := range []bool{false, true} {
		for _, rd := range []reading{
			{"String", func(r *Reader) (any, bool) { return r.String() }, func() any { return new(string) }},
			{"Int64", func(r *Reader) (any, bool) { return r.Int64() }, func() any { return new(int64) }},
			{"Int", func(r *Reader) (any, bool) { return r.Int() }, func() any { return new(int) }},
			{"Uint64", func(r *Reader) (any, bool) { return r.Uint64() }, func() any { return new(uint64) }},
			{"StringList", func(r *Reader) (any, bool) {
				var l []string
				ok := r.StringList(&l)
				return l, ok
			}, func() any { return new([]string) }},
			{"Payload", func(r *Reader) (any, bool) {
				var p resource.Payload
				ok := r.Payload(&p)
				return p, ok
			}, func() any { return new(resource.Payload) }},
			{"TargetPolicy", func(r *Reader) (any, bool) {
				var p resource.TargetPolicy
				ok := r.TargetPolicy(&p)
				return p, ok
			}, func() any { return new(resource.TargetPolicy) }},
			{"Time", func(r *Reader) (any, bool) {
				var tm resource.Time
				ok := r.Time(&tm)
				return tm, ok
			}, func() any { return new(resource.Time) }},
		} {
			r := &Reader{B: b, Plain: plain}
			got, ok := rd.read(r)
			if !ok {
				continue
			}
			if r.I > len(b) {
				t.Fatalf("%s %q: read past the end, to %d", rd.name, b, r.I)
			}
			want := rd.into()
			if err := json.Unmarshal(b[:r.I], want); err != nil {
				t.Fatalf("%s (plain %v) read %q from %q, which encoding/json refuses: %v", rd.name, plain, b[:r.I], b, err)
			}
			if w := reflect.ValueOf(want).Elem().Interface(); !reflect.DeepEqual(got, w) {
				t.Fatalf("%s (plain %v) %q:\n got %#v\nwant %#v", rd.name, plain, b[:r.I], got, w)
			}
			if plain && bytes.IndexByte(b[:r.I], '\\') >= 0 && rd.name != "Time" {
				t.Fatalf("%s: the plain reader read an escape in %q", rd.name, b[:r.I])
			}
		}
	}
}

func TestPrimitivesReadAsEncodingJSON(t *testing.T) {
	for _, s := range []string{
		`"a"`, `"a\"b"`, `"\ud800"`, `"\ud83d\ude00"`, "\"\xff\"", "\"a\x01\"", `"a\`, `"a\\"`, `"\u2028"`, ` "x" `,
		`0`, `-0`, `00`, `-`, `1e3`, `1.0`, `9223372036854775807`, `9223372036854775808`, `-9223372036854775808`,
		`18446744073709551615`, `18446744073709551616`, `1x`, `[]`, `["a", "b"]`, `["a",]`, `[null]`, `null`,
		`{"rawContent":"x","visualContent":{"title":"t","body":""}}`, `{"rawContent":"x","rawContent":"y"}`, `{}`,
		`{"platformTypes":[]}`, `{"platformTypes":null}`, `"2026-11-27T09:30:00.000Z"`, `"9999-12-31T23:59:59-23:59"`,
	} {
		checkPrimitives(t, []byte(s))
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{`"a\"b"`, `-0`, `["a", "b"]`, `{"rawContent":"x","visualContent":{"title":"t"}}`,
		`{"platformTypes":["ios"]}`, `"2026-11-27T09:30:00.000+01:00"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(checkPrimitives)
}
