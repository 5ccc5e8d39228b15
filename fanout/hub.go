// Package fanout delivers committed changes to where they must go: the live
// hub that feeds this node's SSE and WebSocket streams, and (see DESIGN.md)
// the owner-side senders for external channels.
package fanout

import (
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/herald-notify/herald/resource"
)

// Event is one change as streams send it. Its wire forms are encoded once,
// on first use, and shared by every receiver.
type Event struct {
	Change resource.Change

	sseOnce sync.Once
	sse     []byte
	wsOnce  sync.Once
	ws      []byte
}

// NewEvent wraps a change.
func NewEvent(c resource.Change) *Event { return &Event{Change: c} }

// Cursor is the event's opaque stream position.
func (e *Event) Cursor() string { return resource.FormatCursor(e.Change.Seq) }

// SSE is the Server-Sent Events message of the event.
func (e *Event) SSE() []byte {
	e.sseOnce.Do(func() {
		name, cursor := e.Change.StreamEvent(), e.Cursor()
		// Sized exactly: one allocation, and no spare capacity held for
		// as long as the event is queued on slow streams.
		b := make([]byte, 0, len("event: \nid: \ndata: \n\n")+len(name)+len(cursor)+len(e.Change.Data))
		b = append(b, "event: "...)
		b = append(b, name...)
		b = append(b, "\nid: "...)
		b = append(b, cursor...)
		b = append(b, "\ndata: "...)
		b = append(b, e.Change.Data...) // compact JSON: never holds a newline
		e.sse = append(b, "\n\n"...)
	})
	return e.sse
}

// WebSocket is the text frame of the event.
func (e *Event) WebSocket() []byte {
	e.wsOnce.Do(func() {
		e.ws, _ = json.Marshal(struct {
			Type         string          `json:"type"`
			Cursor       string          `json:"cursor"`
			Notification json.RawMessage `json:"notification"`
		}{e.Change.StreamEvent(), e.Cursor(), e.Change.Data})
	})
	return e.ws
}

// Listener receives one user's events. Its queue is a slice that grows
// with a burst and is handed to the reader whole, so an idle listener holds
// no buffer. When it falls more than max events behind it is cut off: it
// ends and Lagged is true, and the client resumes from its last cursor.
type Listener struct {
	userID string
	filter func(*resource.Change) bool
	max    int
	lagged atomic.Bool
	closed bool // guarded by Hub.mu

	mu    sync.Mutex
	queue []*Event
	ended bool
	// wake is told when the queue stops being empty or the listener
	// ends; it must not block (it runs under the hub's read lock).
	wake  func()
	ready chan struct{}
}

// Ready is signalled when there are events to Take or the listener has
// ended; it is nil for a listener made by ListenFunc.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// Take returns the queued events, oldest first, and whether the listener
// has ended (no event follows those returned). spare, if small, becomes the
// next queue, so a steady stream reuses two slices.
func (l *Listener) Take(spare []*Event) (evs []*Event, ended bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs = l.queue
	l.queue = nil
	if cap(spare) <= 16 {
		l.queue = spare[:0]
	}
	return evs, l.ended
}

// put queues ev and reports whether it fitted.
func (l *Listener) put(ev *Event) bool {
	l.mu.Lock()
	if l.ended || len(l.queue) >= l.max {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, ev)
	first := len(l.queue) == 1
	l.mu.Unlock()
	if first {
		l.signal()
	}
	return true
}

func (l *Listener) end() {
	l.mu.Lock()
	l.ended = true
	l.mu.Unlock()
	l.signal()
}

func (l *Listener) signal() {
	if l.wake != nil {
		l.wake()
		return
	}
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// Lagged reports whether the listener was cut off for falling behind.
func (l *Listener) Lagged() bool { return l.lagged.Load() }

// Hub routes committed changes to this node's listeners by user.
type Hub struct {
	mu    sync.RWMutex
	users map[string]map[*Listener]struct{}
	open  atomic.Int64
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{users: map[string]map[*Listener]struct{}{}} }

// Listen registers a listener for userID's changes that filter accepts (nil:
// all), cut off when more than max events wait; its reader waits on Ready.
func (h *Hub) Listen(userID string, max int, filter func(*resource.Change) bool) *Listener {
	return h.listen(&Listener{userID: userID, filter: filter, max: max, ready: make(chan struct{}, 1)})
}

// ListenFunc is Listen for a reader with no goroutine of its own waiting:
// wake is called, without blocking, when events arrive or the listener ends.
func (h *Hub) ListenFunc(userID string, max int, filter func(*resource.Change) bool, wake func()) *Listener {
	return h.listen(&Listener{userID: userID, filter: filter, max: max, wake: wake})
}

func (h *Hub) listen(l *Listener) *Listener {
	userID := l.userID
	h.mu.Lock()
	m := h.users[userID]
	if m == nil {
		m = map[*Listener]struct{}{}
		h.users[userID] = m
	}
	m[l] = struct{}{}
	h.mu.Unlock()
	h.open.Add(1)
	return l
}

// Remove unregisters l and closes its channel, if not done already.
func (h *Hub) Remove(l *Listener) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(l)
}

func (h *Hub) removeLocked(l *Listener) {
	if l.closed {
		return
	}
	l.closed = true
	l.end()
	h.open.Add(-1)
	if m := h.users[l.userID]; m != nil {
		delete(m, l)
		if len(m) == 0 {
			delete(h.users, l.userID)
		}
	}
}

// Open is the number of registered listeners.
func (h *Hub) Open() int { return int(h.open.Load()) }

// Publish hands committed changes to their users' listeners. It never
// blocks: a full listener is cut off instead.
func (h *Hub) Publish(changes []resource.Change) {
	var full []*Listener
	h.mu.RLock()
	for i := range changes {
		m := h.users[changes[i].UserID]
		if len(m) == 0 {
			continue
		}
		ev := NewEvent(changes[i])
		for l := range m {
			if l.lagged.Load() || (l.filter != nil && !l.filter(&ev.Change)) {
				continue
			}
			if !l.put(ev) && l.lagged.CompareAndSwap(false, true) {
				full = append(full, l)
			}
		}
	}
	h.mu.RUnlock()
	if len(full) > 0 {
		h.mu.Lock()
		for _, l := range full {
			h.removeLocked(l)
		}
		h.mu.Unlock()
	}
}

// CloseAll ends every listener, for shutdown.
func (h *Hub) CloseAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.users {
		for l := range m {
			h.removeLocked(l)
		}
	}
}
