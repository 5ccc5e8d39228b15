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
