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

// Listener receives one user's events. When it falls more than its buffer
// behind it is cut off: C is closed and Lagged is true, and the client
// resumes from its last cursor.
type Listener struct {
	userID string
	filter func(*resource.Change) bool
	ch     chan *Event
	lagged atomic.Bool
	closed bool // guarded by Hub.mu
}

// C yields the events; it is closed when the listener is cut off or removed.
func (l *Listener) C() <-chan *Event { return l.ch }

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
// all), with room for buf events.
func (h *Hub) Listen(userID string, buf int, filter func(*resource.Change) bool) *Listener {
	l := &Listener{userID: userID, filter: filter, ch: make(chan *Event, buf)}
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
	close(l.ch)
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
			select {
			case l.ch <- ev:
			default:
				if l.lagged.CompareAndSwap(false, true) {
					full = append(full, l)
				}
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
