package cluster

import (
	"testing"
	"time"

	"github.com/herald-notify/herald/raft"
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

// With two of three voters answering, a leader an hour behind and a
// follower whose clock is right, nothing tells which clock is off: the
// follower's writes, whose time is right, must not be refused as an hour
// ahead (nor the leader's let through as right). With three answering the
// middle clock decides, and the one off is refused.
func TestTwoClocksThatDisagreeJudgeNoWrite(t *testing.T) {
	base := clockBase{wall: time.Now().Round(0), mono: time.Now()} // the leader's clock, an hour behind
	right := base.wall.Add(time.Hour)
	send := &raft.Command{Op: raft.OpSend, Now: right.UnixNano()}

	c := &Cluster{}
	c.readingClocks.Store(true) // no reading taken in the background
	c.clockRef.Store(newClockReading(base, []time.Duration{0, time.Hour}))
	if err := c.checkClock(send); err != nil {
		t.Fatalf("two voters an hour apart: a write at the right time was refused: %v", err)
	}
	if got := c.clockRef.Load().now(); got.Sub(base.wall) > time.Minute {
		t.Fatalf("the purge's clock is the later of two that disagree (%v after the earlier)", got.Sub(base.wall))
	}

	c.clockRef.Store(newClockReading(base, []time.Duration{0, time.Hour, time.Hour + time.Second}))
	if err := c.checkClock(send); err != nil {
		t.Fatalf("three voters, two of them right: a write at the right time was refused: %v", err)
	}
	if err := c.checkClock(&raft.Command{Op: raft.OpSend, Now: base.wall.UnixNano()}); err == nil {
		t.Fatal("three voters, two of them right: a write by the clock an hour behind was let through")
	}

	c.clockRef.Store(newClockReading(base, []time.Duration{0, 2 * time.Second}))
	if err := c.checkClock(&raft.Command{Op: raft.OpSend, Now: right.UnixNano()}); err == nil {
		t.Fatal("two voters that agree: a write an hour off was let through")
	}
}
