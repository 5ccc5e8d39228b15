package resource

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestAppendTimeWritesWhatTheLayoutWrites(t *testing.T) {
	times := []time.Time{
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 6, 15, 12, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 6, 8, 5, 9, 7_000_000, time.FixedZone("east", 5*3600+1800)),
		time.Date(2026, 2, 28, 23, 59, 59, 999_500_000, time.UTC),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(253402300800), r.Int64N(1e9)).In(time.FixedZone("", int(r.Int64N(50400))-25200)))
	}
	for _, tm := range times {
		want := tm.UTC().Format(TimeLayout)
		if got := string(AppendTime([]byte("x"), tm)); got != "x"+want {
			t.Fatalf("AppendTime(%v) = %q, want %q", tm, got, "x"+want)
		}
	}
}

func BenchmarkAppendTime(b *testing.B) {
	tm := time.Date(2026, 12, 6, 8, 5, 9, 7_000_000, time.UTC)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendTime(buf[:0], tm)
	}
}

func BenchmarkAppendFormat(b *testing.B) {
	tm := time.Date(2026, 12, 6, 8, 5, 9, 7_000_000, time.UTC)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = tm.AppendFormat(buf[:0], TimeLayout)
	}
}

// A time that RFC 3339 writes with an offset can fall outside the years
// 0000-9999 in UTC, which MarshalJSON cannot write back as RFC 3339: it is
// refused on input, as any time that does not round-trip must be.
func TestTimeOutsideTheLayoutsYearsIsRefused(t *testing.T) {
	for _, s := range []string{
		`"9999-12-31T23:59:59-23:59"`,
		`"9999-12-31T23:59:59.999-00:01"`,
		`"9999-12-31T23:59:59-24:00"`,
		`"0000-01-01T00:00:00+00:01"`,
		`"0000-01-01T00:00:00.5+01:00"`,
	} {
		var tm Time
		if err := tm.UnmarshalJSON([]byte(s)); err == nil {
			b, _ := tm.MarshalJSON()
			t.Errorf("%s accepted as %s", s, b)
		}
	}
	for _, s := range []string{
		`"9999-12-31T23:59:59.999Z"`,
		`"9999-12-31T23:59:59.999+01:00"`,
		`"0000-01-01T00:00:00Z"`,
		`"0000-01-01T00:59:59-01:00"`,
	} {
		checkTimeRoundTrip(t, []byte(s))
	}
}

// checkTimeRoundTrip: a time UnmarshalJSON accepts is written in
// TimeLayout, and read back as the same time.
func checkTimeRoundTrip(t *testing.T, in []byte) {
	t.Helper()
	var tm Time
	if tm.UnmarshalJSON(in) != nil {
		return
	}
	b, err := tm.MarshalJSON()
	if err != nil {
		t.Fatalf("%s: marshal: %v", in, err)
	}
	if !tm.IsZero() && (len(b) != len(TimeLayout)+2 || tm.UTC().Format(`"`+TimeLayout+`"`) != string(b)) {
		t.Fatalf("%s written as %s", in, b)
	}
	var back Time
	if err := back.UnmarshalJSON(b); err != nil || !back.Equal(tm.Time) {
		t.Fatalf("%s written as %s, read back as %v (%v)", in, b, back, err)
	}
}

func FuzzTimeRoundTrip(f *testing.F) {
	for _, s := range []string{`"2026-11-27T09:30:00.000Z"`, `"9999-12-31T23:59:59-23:59"`, `"2026-11-27T09:30:00,5+14:00"`,
		`"0000-01-01T00:00:00Z"`, `null`, `"\u0032026-11-27T09:30:00Z"`, `"2026-11-27T23:59:60Z"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(checkTimeRoundTrip)
}
