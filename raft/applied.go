package raft

import (
	"sync"
	"sync/atomic"
)

// appliedIndex is the last Raft index whose effects are in Badger, and a
// way to wait for it without polling: a forwarded write's answer, a read
// index barrier and a read that must see what the live streams saw all
// wait for it, and a poll every millisecond added half a millisecond to
// each on average.
type appliedIndex struct {
	n     atomic.Uint64
	mu    sync.Mutex
	moved chan struct{} // closed when n next moves; nil while no one waits
}

func (a *appliedIndex) Load() uint64 { return a.n.Load() }

func (a *appliedIndex) Store(i uint64) {
	a.n.Store(i)
	a.mu.Lock()
	if a.moved != nil {
		close(a.moved)
		a.moved = nil
	}
	a.mu.Unlock()
}

// wait returns true once the index is at least i, or false when done or
// stop closes first.
func (a *appliedIndex) wait(i uint64, done, stop <-chan struct{}) bool {
	for {
		if a.n.Load() >= i {
			return true
		}
		a.mu.Lock()
		if a.n.Load() >= i {
			a.mu.Unlock()
			return true
		}
		if a.moved == nil {
			a.moved = make(chan struct{})
		}
		moved := a.moved
		a.mu.Unlock()
		select {
		case <-moved:
		case <-done:
			return false
		case <-stop:
			return false
		}
	}
}
