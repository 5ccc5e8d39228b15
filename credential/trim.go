package credential

import (
	"runtime/debug"
	"sync"
	"time"
)

// After a burst of sign-ins the heap has grown by a 19 MiB argon2id buffer
// per concurrent hash. The collector frees them, but Go's scavenger gives
// the pages back to the OS only slowly, so the node's resident memory stays
// at the burst's peak for minutes. Once hashing has paused for trimQuiet,
// the trimmer returns them at once (debug.FreeOSMemory); since that forces
// a full collection, it runs at most once per trimGap, however the sign-ins
// come.
const (
	trimQuiet = time.Second
	trimGap   = 10 * time.Second
)

// hashing is the process's trimmer, fed by deriveKey.
var hashing = newTrimmer(time.Now, func(d time.Duration, f func()) { time.AfterFunc(d, f) }, debug.FreeOSMemory)

// trimmer decides when to free memory after hashing. Its clock, its timer
// and its free are given, so that its rules can be tested without waiting.
type trimmer struct {
	now   func() time.Time
	after func(time.Duration, func()) // runs f once d has passed
	free  func()

	mu      sync.Mutex
	active  int       // hashes running now
	last    time.Time // when the last hash ended
	freed   time.Time // when free last ran
	pending bool      // a timer is set to call fire
}

func newTrimmer(now func() time.Time, after func(time.Duration, func()), free func()) *trimmer {
	return &trimmer{now: now, after: after, free: free}
}

func (t *trimmer) begin() {
	t.mu.Lock()
	t.active++
	t.mu.Unlock()
}

// end notes that a hash finished and sets the timer if none is set: one
// timer per burst, not one per hash.
func (t *trimmer) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active--
	t.last = t.now()
	if !t.pending {
		t.pending = true
		t.after(trimQuiet, t.fire)
	}
}

// fire frees memory if hashing has been quiet for trimQuiet and the last
// free was trimGap ago; otherwise it sets the timer for when both may hold.
func (t *trimmer) fire() {
	t.mu.Lock()
	now := t.now()
	wait := trimQuiet
	if t.active == 0 {
		wait = t.last.Add(trimQuiet).Sub(now)
		if !t.freed.IsZero() {
			wait = max(wait, t.freed.Add(trimGap).Sub(now))
		}
	}
	if wait > 0 {
		t.after(wait, t.fire)
		t.mu.Unlock()
		return
	}
	t.pending = false
	t.freed = now
	t.mu.Unlock()
	t.free()
}
