package httpapi

import (
	"math/rand/v2"
	"testing"
	"time"
)

// testWheel is an empty wheel for heartbeat hb, its sweep interval and
// its start.
func testWheel(hb time.Duration) (*beatWheel, time.Duration, time.Time) {
	epoch := time.Unix(1_700_000_000, 0)
	w := newBeatWheel(hb, epoch)
	return w, w.every, epoch
}

// Streams beat at most a sweep early for their first beat and then every
// heartbeat exactly, each once per sweep, on a simulated clock.
func TestBeatWheelBeatsEachStreamOncePerHeartbeat(t *testing.T) {
	const hb = 25 * time.Second
	w, every, epoch := testWheel(hb)
	r := rand.New(rand.NewPCG(1, 2))
	first := map[*liveStream]time.Time{}
	beats := map[*liveStream][]time.Time{}
	for range 1000 {
		ls := &liveStream{}
		at := epoch.Add(hb/2 + time.Duration(r.Int64N(int64(hb/2)+1)))
		w.add(ls, at)
		first[ls] = at
	}
	var due []*liveStream
	for now := epoch; now.Before(epoch.Add(5 * hb)); now = now.Add(every) {
		due = w.due(now, due[:0])
		seen := map[*liveStream]bool{}
		for _, ls := range due {
			if seen[ls] {
				t.Fatalf("a stream is due twice in the sweep at %v", now.Sub(epoch))
			}
			seen[ls] = true
			beats[ls] = append(beats[ls], now)
		}
	}
	for ls, at := range first {
		b := beats[ls]
		if len(b) < 4 {
			t.Fatalf("a stream beat %d times in five heartbeats", len(b))
		}
		if early := at.Sub(b[0]); early < 0 || early >= every {
			t.Fatalf("first beat %v before its time, want within one sweep (%v)", early, every)
		}
		for i := 1; i < len(b); i++ {
			if d := b[i].Sub(b[i-1]); d != hb {
				t.Fatalf("beats %v apart, want %v", d, hb)
			}
		}
	}
}

// A sweep that comes a heartbeat late or more beats each stream once, and
// the next heartbeat beats each once again.
func TestBeatWheelLateSweepBeatsEachStreamOnce(t *testing.T) {
	const hb = time.Second
	w, every, epoch := testWheel(hb)
	const n = 500
	for i := range n {
		w.add(&liveStream{}, epoch.Add(hb/2+time.Duration(i)*hb/(2*n)))
	}
	w.due(epoch.Add(hb/2+3*every), nil) // some beat on time
	late := epoch.Add(7*hb + every/3)
	count := func(due []*liveStream) {
		t.Helper()
		seen := map[*liveStream]bool{}
		for _, ls := range due {
			if seen[ls] {
				t.Fatal("a stream beat twice")
			}
			seen[ls] = true
		}
		if len(seen) != n {
			t.Fatalf("%d of %d streams beat", len(seen), n)
		}
	}
	count(w.due(late, nil))
	var next []*liveStream
	for now := late.Add(every); !now.After(late.Add(hb)); now = now.Add(every) {
		next = w.due(now, next)
	}
	count(next)
}

// An ended stream leaves the wheel: it is not beaten and not held.
func TestBeatWheelForgetsRemovedStreams(t *testing.T) {
	const hb = time.Second
	w, every, epoch := testWheel(hb)
	var kept, gone []*liveStream
	for i := range 200 {
		ls := &liveStream{}
		w.add(ls, epoch.Add(hb/2+time.Duration(i)*time.Millisecond))
		if i%2 == 0 {
			gone = append(gone, ls)
		} else {
			kept = append(kept, ls)
		}
	}
	// Half of them beat once before they end.
	w.due(epoch.Add(hb/2+50*time.Millisecond), nil)
	for _, ls := range gone {
		w.remove(ls)
	}
	removed := map[*liveStream]bool{}
	for _, ls := range gone {
		removed[ls] = true
	}
	beat := 0
	for now := epoch; now.Before(epoch.Add(3 * hb)); now = now.Add(every) {
		for _, ls := range w.due(now, nil) {
			if removed[ls] {
				t.Fatal("a removed stream is still beaten")
			}
			beat++
		}
	}
	if beat < 2*len(kept) {
		t.Fatalf("%d beats of %d streams over three heartbeats", beat, len(kept))
	}
	for _, ls := range kept {
		w.remove(ls)
	}
	for i, slot := range w.slots {
		if len(slot) != 0 {
			t.Fatalf("slot %d holds %d streams after every stream ended", i, len(slot))
		}
	}
	var never liveStream
	(*beatWheel)(nil).remove(&never) // a stream that ended before any went live
}

// BenchmarkBeatSweep is one sweep of a node with 10,000 streams and the
// default heartbeat (25 s, a sweep every 100 ms); before the wheel a sweep
// looked at every stream.
func BenchmarkBeatSweep(b *testing.B) {
	const hb = 25 * time.Second
	w, every, epoch := testWheel(hb)
	r := rand.New(rand.NewPCG(3, 4))
	for range 10_000 {
		// Streams opened over time: their beats spread over the whole
		// heartbeat, and each sweep takes a 250th of them.
		w.add(&liveStream{}, epoch.Add(time.Duration(r.Int64N(int64(hb)))))
	}
	var due []*liveStream
	now := epoch
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(every)
		due = w.due(now, due[:0])
	}
}
