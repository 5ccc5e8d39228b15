package cluster

import (
	"testing"
	"time"
)

// After a VM was suspended for an hour the monotonic clock has not run and
// the wall clock has: a reading of the cluster's clock taken before would
// be an hour behind, and it would have refused every write for being an
// hour ahead. It no longer holds once the two clocks part.
func TestAClockReadingEndsWhenTheWallClockPartsFromTheMonotonic(t *testing.T) {
	own := time.Now().Round(0)
	r := &clockReading{cluster: own.Add(-time.Minute), at: time.Now(), own: own}
	if !r.current(own.Add(10 * time.Millisecond)) {
		t.Fatal("a fresh reading does not hold")
	}
	if r.current(own.Add(time.Hour)) {
		t.Fatal("the reading holds after the wall clock went an hour further than the monotonic one")
	}
	if got := r.now().Sub(own.Add(-time.Minute)); got < 0 || got > time.Minute {
		t.Fatalf("the reading's clock went on by %v", got)
	}
}
