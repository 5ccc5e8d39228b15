package httpapi

import (
	"errors"
	"sync"
	"syscall"
)

// idleWatcher is one epoll instance and the goroutine that waits on it.
// Each armed connection is registered one-shot under an id of its own, not
// its descriptor: a descriptor's number is reused once it is closed, an
// id never.
type idleWatcher struct {
	epfd int

	mu     sync.Mutex
	next   uint64
	ready  map[uint64]func() // armed watches, by id
	broken bool              // epoll_wait failed: every wait starts its goroutine
}

func startIdleWatcher() *idleWatcher {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	w := &idleWatcher{epfd: fd, ready: map[uint64]func(){}}
	go w.run()
	return w
}

// The client's bytes, its end of the stream (RDHUP) and a reset (HUP and
// ERR, always reported) each wake the watch. Level-triggered: bytes
// already waiting when a watch is armed wake it at once.
const idleEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// arm registers iw's connection (or re-arms its registration) with ready,
// and reports false when it cannot: the caller then starts ready itself.
// iw.mu is held.
func (w *idleWatcher) arm(iw *idleWatch, ready func()) bool {
	w.mu.Lock()
	if w.broken {
		w.mu.Unlock()
		return false
	}
	if iw.id == 0 {
		w.next++
		iw.id = w.next
	}
	w.ready[iw.id] = ready
	w.mu.Unlock()
	op := syscall.EPOLL_CTL_ADD
	if iw.armed {
		op = syscall.EPOLL_CTL_MOD
	}
	ev := syscall.EpollEvent{Events: idleEvents, Fd: int32(uint32(iw.id)), Pad: int32(uint32(iw.id >> 32))}
	var ctlErr error
	// Control holds the descriptor open while it runs, so it cannot be
	// closed and its number given to another connection meanwhile.
	err := iw.rc.Control(func(fd uintptr) { ctlErr = syscall.EpollCtl(w.epfd, op, int(fd), &ev) })
	if err == nil && ctlErr == nil {
		iw.armed = true
		return true
	}
	// Closed already, or refused: nothing is registered that could fire,
	// and the caller's goroutine finds out by reading, unless a failing
	// watcher (fail) has started ready already.
	return w.take(iw.id) == nil
}

// disarm forgets iw (iw.mu is held). Closing the descriptor would drop
// the registration too; deleting it first keeps the kernel's set exact.
func (w *idleWatcher) disarm(iw *idleWatch) {
	if iw.id == 0 {
		return
	}
	w.take(iw.id)
	if iw.armed {
		iw.rc.Control(func(fd uintptr) { syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil) })
		iw.armed = false
	}
}

func (w *idleWatcher) take(id uint64) func() {
	w.mu.Lock()
	defer w.mu.Unlock()
	fn := w.ready[id]
	delete(w.ready, id)
	return fn
}

func (w *idleWatcher) run() {
	evs := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(w.epfd, evs, -1)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			w.fail()
			return
		}
		for _, ev := range evs[:n] {
			if fn := w.take(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32); fn != nil {
				go fn()
			}
		}
	}
}

// fail hands every armed watch to a goroutine of its own, and every later
// one: the connections are then watched as they were before the watcher.
func (w *idleWatcher) fail() {
	w.mu.Lock()
	w.broken = true
	ready := w.ready
	w.ready = map[uint64]func(){}
	w.mu.Unlock()
	for _, fn := range ready {
		go fn()
	}
}
