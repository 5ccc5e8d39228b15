package httpapi

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
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

// admission is taken and released by every request, from as many
// goroutines as there are requests in flight, so its hot path is atomic:
// a mutex here was the largest lock wait under load. Only a cut of the
// bound, at most once per writeTarget, takes the lock.
type admission struct {
	ceiling, floor float64
	inFlight       atomic.Int64
	limit          atomic.Uint64 // math.Float64bits of the bound
	mu             sync.Mutex    // serialises cuts, guards lastCut
	lastCut        time.Time
}

func newAdmission(ceiling int) *admission {
	c := float64(ceiling)
	a := &admission{ceiling: c, floor: min(c, admitFloor)}
	a.limit.Store(math.Float64bits(c))
	return a
}

func (a *admission) bound() float64 { return math.Float64frombits(a.limit.Load()) }

// acquire takes a place for a request, or says there is none. Requests
// racing for the last places may each see the others' increments and be
// refused together: the bound is never exceeded, only approached.
func (a *admission) acquire() bool {
	if n := a.inFlight.Add(1); float64(n-1) >= a.bound() {
		a.inFlight.Add(-1)
		return false
	}
	return true
}

func (a *admission) release() { a.inFlight.Add(-1) }

// update moves the bound with f, retrying when another goroutine moved it
// first.
func (a *admission) update(f func(float64) float64) {
	for {
		old := a.limit.Load()
		if a.limit.CompareAndSwap(old, math.Float64bits(f(math.Float64frombits(old)))) {
			return
		}
	}
}

// observe adapts the bound to how long one replicated write took.
func (a *admission) observe(took time.Duration, now time.Time) {
	if took > writeTarget {
		a.mu.Lock()
		defer a.mu.Unlock()
		if now.Sub(a.lastCut) >= writeTarget {
			a.update(func(l float64) float64 { return max(a.floor, l*admitCutRatio) })
			a.lastCut = now
		}
		return
	}
	if l := a.bound(); l < a.ceiling && float64(a.inFlight.Load()) >= l/2 {
		a.update(func(l float64) float64 { return min(a.ceiling, l+1) })
	}
}

func (a *admission) state() (inFlight int, limit float64) {
	return int(a.inFlight.Load()), a.bound()
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
