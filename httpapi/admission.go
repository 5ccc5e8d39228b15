package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/herald-notify/herald/raft"
)

// Admission control: which requests a node starts working on.
//
// A fixed bound on requests in flight bounds memory, but not latency: at
// twice its capacity a node with the default bound of 1024 held that many
// requests, each waiting its turn for the CPU and the replicated write
// path, so an accepted write took 1.3 s at the median and 5 s at p99 while
// the heap grew to 7 × its idle size (BENCHMARKS.md, Overload). What a
// node can take at once depends on its CPUs and disk, so the bound adapts:
// it shrinks by a tenth when a replicated write takes longer than
// writeTarget, at most once per writeTarget (the writes of one slow Raft
// entry are one signal, not hundreds), and grows by one for each write
// that took less while the bound was at least half used. Anything beyond
// it gets 503 with Retry-After at once, which costs a node almost nothing.
//
// The signal is the time a write spends in State.Propose (the queue for
// the Raft log, the group commit, the fsync, the apply), not the whole
// request: a client that uploads slowly must not make the node refuse
// everyone else.
const (
	writeTarget = 250 * time.Millisecond
	// admitFloor is as low as the bound goes: low enough to cut the wait
	// behind a thousand requests by eight, high enough that a burst of
	// clients (a test under -race, a batch job) is not refused for a
	// moment of slow disk.
	admitFloor    = 128
	admitCutRatio = 0.9
)

type admission struct {
	ceiling, floor float64
	mu             sync.Mutex
	limit          float64
	inFlight       int
	lastCut        time.Time
}

func newAdmission(ceiling int) *admission {
	c := float64(ceiling)
	return &admission{ceiling: c, floor: min(c, admitFloor), limit: c}
}

// acquire takes a place for a request, or says there is none.
func (a *admission) acquire() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if float64(a.inFlight) >= a.limit {
		return false
	}
	a.inFlight++
	return true
}

func (a *admission) release() {
	a.mu.Lock()
	a.inFlight--
	a.mu.Unlock()
}

// observe adapts the bound to how long one replicated write took.
func (a *admission) observe(took time.Duration, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if took > writeTarget {
		if now.Sub(a.lastCut) >= writeTarget {
			a.limit = max(a.floor, a.limit*admitCutRatio)
			a.lastCut = now
		}
		return
	}
	if float64(a.inFlight) >= a.limit/2 {
		a.limit = min(a.ceiling, a.limit+1)
	}
}

func (a *admission) state() (inFlight int, limit float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inFlight, a.limit
}

// timedState tells admission how long each proposal took.
type timedState struct {
	State
	a *admission
}

func (s timedState) Propose(ctx context.Context, cmd *raft.Command) (any, error) {
	start := time.Now()
	v, err := s.State.Propose(ctx, cmd)
	now := time.Now()
	s.a.observe(now.Sub(start), now)
	return v, err
}
