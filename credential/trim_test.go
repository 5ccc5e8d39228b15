package credential

import (
	"testing"
	"time"
)

// fakeTime is a clock and a timer wheel that move only when the test says.
type fakeTime struct {
	now    time.Time
	timers []fakeTimer
	frees  []time.Time
}

type fakeTimer struct {
	at time.Time
	f  func()
}

func (c *fakeTime) after(d time.Duration, f func()) {
	c.timers = append(c.timers, fakeTimer{c.now.Add(d), f})
}

// advance moves the clock to now+d, running each timer that falls due on
// the way at its own time.
func (c *fakeTime) advance(d time.Duration) {
	end := c.now.Add(d)
	for {
		next := -1
		for i, t := range c.timers {
			if !t.at.After(end) && (next < 0 || t.at.Before(c.timers[next].at)) {
				next = i
			}
		}
		if next < 0 {
			break
		}
		t := c.timers[next]
		c.timers = append(c.timers[:next], c.timers[next+1:]...)
		c.now = t.at
		t.f()
	}
	c.now = end
}

func newFakeTrimmer() (*trimmer, *fakeTime) {
	c := &fakeTime{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	t := newTrimmer(func() time.Time { return c.now }, c.after, func() { c.frees = append(c.frees, c.now) })
	return t, c
}

func (c *fakeTime) hash(t *trimmer, took time.Duration) {
	t.begin()
	c.advance(took)
	t.end()
}

func TestTrimFreesOnceHashingPauses(t *testing.T) {
	tr, c := newFakeTrimmer()
	start := c.now
	// A burst: a hash every 300 ms for 3 s, each 30 ms long.
	for range 10 {
		c.hash(tr, 30*time.Millisecond)
		c.advance(270 * time.Millisecond)
	}
	if len(c.frees) != 0 {
		t.Fatalf("freed at %v while hashing went on", c.frees)
	}
	if len(c.timers) != 1 {
		t.Fatalf("%d timers set for one burst, want 1", len(c.timers))
	}
	c.advance(5 * time.Second)
	lastEnd := start.Add(9*300*time.Millisecond + 30*time.Millisecond)
	if len(c.frees) != 1 || !c.frees[0].Equal(lastEnd.Add(trimQuiet)) {
		t.Fatalf("frees at %v, want one at %v (a second after the last hash)", c.frees, lastEnd.Add(trimQuiet))
	}
	if len(c.timers) != 0 {
		t.Fatalf("%d timers left after the free", len(c.timers))
	}
}

func TestTrimFreesAtMostOncePerGap(t *testing.T) {
	tr, c := newFakeTrimmer()
	c.hash(tr, 30*time.Millisecond)
	c.advance(2 * time.Second)
	if len(c.frees) != 1 {
		t.Fatalf("%d frees after one hash and a pause, want 1", len(c.frees))
	}
	first := c.frees[0]
	// Short bursts, each followed by a pause, come faster than trimGap.
	for range 5 {
		c.hash(tr, 30*time.Millisecond)
		c.advance(1500 * time.Millisecond)
	}
	if len(c.frees) != 1 {
		t.Fatalf("frees at %v: more than one within %v", c.frees, trimGap)
	}
	c.advance(trimGap)
	if len(c.frees) != 2 || !c.frees[1].Equal(first.Add(trimGap)) {
		t.Fatalf("frees at %v, want the second at %v", c.frees, first.Add(trimGap))
	}
	// Nothing hashed since: no more frees, no timer left.
	c.advance(time.Minute)
	if len(c.frees) != 2 || len(c.timers) != 0 {
		t.Fatalf("frees %v and %d timers with no hashing", c.frees, len(c.timers))
	}
}

func TestTrimWaitsForARunningHash(t *testing.T) {
	tr, c := newFakeTrimmer()
	c.hash(tr, 30*time.Millisecond)
	tr.begin() // a slow hash still running when the timer fires
	c.advance(3 * time.Second)
	if len(c.frees) != 0 {
		t.Fatalf("freed at %v while a hash ran", c.frees)
	}
	tr.end()
	c.advance(trimQuiet + trimQuiet)
	if len(c.frees) != 1 {
		t.Fatalf("%d frees after the slow hash ended and a pause, want 1", len(c.frees))
	}
}

func TestDeriveKeyFeedsTheTrimmer(t *testing.T) {
	before := Derivations()
	h := HashPassword("x")
	if !CheckPassword(h, "x") {
		t.Fatal("the right password was refused")
	}
	if got := Derivations() - before; got != 2 {
		t.Fatalf("%d derivations counted for a hash and a check, want 2", got)
	}
	hashing.mu.Lock()
	pending, active, freed := hashing.pending, hashing.active, hashing.freed
	hashing.mu.Unlock()
	if active != 0 {
		t.Fatalf("%d hashes still counted as running", active)
	}
	// On a slow machine the free may have run already; if not, it is due.
	if !pending && freed.IsZero() {
		t.Fatal("the hashes set no timer to free their memory")
	}
}

func TestDecoyHashIsMadeOnceAndChecks(t *testing.T) {
	before := Derivations()
	d := DecoyHash()
	if DecoyHash() != d {
		t.Fatal("DecoyHash changed between calls")
	}
	if n := Derivations() - before; n > 1 {
		t.Fatalf("%d hashes made for two DecoyHash calls, want at most 1", n)
	}
	if CheckPassword(d, "") || CheckPassword(d, "guess") {
		t.Fatal("the decoy hash accepted a password")
	}
}
