package fanout

import (
	"bufio"
	"io"
	"testing"

	"github.com/herald-notify/herald/resource"
)

// BenchmarkEventEncode encodes one change in both stream forms, as the
// first SSE and the first WebSocket receiver of an event do; later
// receivers reuse the bytes.
func BenchmarkEventEncode(b *testing.B) {
	c := change(42, "alice", "tasks.contoso.com")
	b.ReportAllocs()
	for b.Loop() {
		ev := NewEvent(c)
		ev.SSE()
		ev.WebSocket()
	}
}

// BenchmarkStreamWrite is a live SSE stream's share of one event: the hub
// hands it over, the stream writes the shared bytes into its buffered
// connection and flushes.
func BenchmarkStreamWrite(b *testing.B) {
	h := NewHub()
	l := h.Listen("alice", 256, nil)
	batch := []resource.Change{change(1, "alice", "tasks.contoso.com")}
	w := bufio.NewWriter(io.Discard)
	var spare []*Event
	b.ReportAllocs()
	for b.Loop() {
		h.Publish(batch)
		<-l.Ready()
		evs, _ := l.Take(spare)
		w.Write(evs[0].SSE())
		w.Flush()
		spare = evs
	}
}

// Allocation budgets of the live path, counts rather than times: one event
// allocated per change however many listeners, its SSE form in one more
// buffer (growth included), and nothing per listener.
func TestStreamPathAllocs(t *testing.T) {
	c := change(42, "alice", "tasks.contoso.com")
	if got := testing.AllocsPerRun(200, func() { NewEvent(c).SSE() }); got > 3*allocSlack {
		t.Errorf("event with its SSE form: %.0f allocations, budget %d", got, 3*allocSlack)
	}
	h := NewHub()
	ls := make([]*Listener, 100)
	for i := range ls {
		ls[i] = h.Listen("alice", 4, nil)
	}
	batch := []resource.Change{c}
	spares := make([][]*Event, len(ls))
	deliver := func() {
		h.Publish(batch)
		for i, l := range ls {
			evs, _ := l.Take(spares[i])
			evs[0].SSE()
			spares[i] = evs
		}
	}
	// A listener's queue and its spare are made by the first two rounds
	// (AllocsPerRun warms up with one): the budget is the steady state's.
	deliver()
	deliver()
	got := testing.AllocsPerRun(50, deliver)
	if got > 3*allocSlack {
		t.Errorf("one change to 100 listeners: %.0f allocations, budget %d", got, 3*allocSlack)
	}
	t.Logf("one change to 100 listeners, encoded once: %.0f allocations", got)
}
