package fanout

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// change builds a created change of user uid for host, with a notification
// body that names its seq.
func change(seq uint64, uid, host string, platforms ...string) resource.Change {
	return resource.Change{Seq: seq, UserID: uid, Type: resource.ChangeCreated,
		NotificationID: fmt.Sprintf("n%d", seq), TargetHostName: host, PlatformTypes: platforms,
		Data: json.RawMessage(fmt.Sprintf(`{"id":"n%d","payload":{"rawContent":"line\nbreak"}}`, seq))}
}

// drain returns the events queued on l without waiting for more.
func drain(l *Listener) (evs []*Event, closed bool) {
	return l.Take(nil)
}

func seqs(evs []*Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Change.Seq
	}
	return out
}

// publishWithin fails the test if Publish blocks.
func publishWithin(t *testing.T, h *Hub, changes []resource.Change) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Publish(changes)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked")
	}
}

func TestHubDeliversOnlyToTheChangesUser(t *testing.T) {
	h := NewHub()
	a1 := h.Listen("alice", 8, nil)
	a2 := h.Listen("alice", 8, nil)
	b := h.Listen("bob", 8, nil)
	publishWithin(t, h, []resource.Change{change(1, "alice", "x"), change(2, "bob", "x"), change(3, "alice", "x"), change(4, "carol", "x")})

	for name, tc := range map[string]struct {
		l    *Listener
		want string
	}{"alice1": {a1, "[1 3]"}, "alice2": {a2, "[1 3]"}, "bob": {b, "[2]"}} {
		evs, closed := drain(tc.l)
		if closed {
			t.Errorf("%s: channel closed", name)
		}
		if got := fmt.Sprint(seqs(evs)); got != tc.want {
			t.Errorf("%s got seqs %s, want %s", name, got, tc.want)
		}
	}
	if h.Open() != 3 {
		t.Errorf("Open = %d, want 3", h.Open())
	}
}

func TestHubFilterSelectsChanges(t *testing.T) {
	h := NewHub()
	web := h.Listen("alice", 8, func(c *resource.Change) bool { return c.Targets("tasks.contoso.com", resource.PlatformWeb) })
	all := h.Listen("alice", 8, nil)
	publishWithin(t, h, []resource.Change{
		change(1, "alice", "tasks.contoso.com"),
		change(2, "alice", "tasks.contoso.com", resource.PlatformIOS),
		change(3, "alice", "other.example"),
		change(4, "alice", "tasks.contoso.com", resource.PlatformIOS, resource.PlatformWeb),
	})
	if evs, _ := drain(web); fmt.Sprint(seqs(evs)) != "[1 4]" {
		t.Errorf("filtered listener got %v, want [1 4]", seqs(evs))
	}
	if evs, _ := drain(all); fmt.Sprint(seqs(evs)) != "[1 2 3 4]" {
		t.Errorf("unfiltered listener got %v, want [1 2 3 4]", seqs(evs))
	}
}

func TestHubEncodesOnceAndSharesTheBytes(t *testing.T) {
	h := NewHub()
	l1 := h.Listen("alice", 1, nil)
	l2 := h.Listen("alice", 1, nil)
	publishWithin(t, h, []resource.Change{change(42, "alice", "x")})
	q1, _ := drain(l1)
	q2, _ := drain(l2)
	if len(q1) != 1 || len(q2) != 1 {
		t.Fatalf("queued %d and %d events, want 1 each", len(q1), len(q2))
	}
	e1, e2 := q1[0], q2[0]
	if e1 != e2 {
		t.Fatal("listeners got different *Event values for one change")
	}
	// Both receivers encode concurrently; the race detector checks the
	// once-guards and both get the same backing array.
	var wg sync.WaitGroup
	var s1, s2, w1, w2 []byte
	wg.Add(2)
	go func() { defer wg.Done(); s1, w1 = e1.SSE(), e1.WebSocket() }()
	go func() { defer wg.Done(); s2, w2 = e2.SSE(), e2.WebSocket() }()
	wg.Wait()
	if &s1[0] != &s2[0] || len(s1) != len(s2) {
		t.Error("SSE bytes are not one shared slice")
	}
	if &w1[0] != &w2[0] || len(w1) != len(w2) {
		t.Error("WebSocket bytes are not one shared slice")
	}

	cur := resource.FormatCursor(42)
	wantSSE := "event: created\nid: " + cur + "\ndata: " + string(change(42, "alice", "x").Data) + "\n\n"
	if string(s1) != wantSSE {
		t.Errorf("SSE = %q, want %q", s1, wantSSE)
	}
	// The JSON \n escape keeps the data on one line.
	if strings.Count(string(s1), "\n") != 4 {
		t.Errorf("SSE message has stray line breaks: %q", s1)
	}
	var frame struct {
		Type         string          `json:"type"`
		Cursor       string          `json:"cursor"`
		Notification json.RawMessage `json:"notification"`
	}
	if err := json.Unmarshal(w1, &frame); err != nil {
		t.Fatal(err)
	}
	if frame.Type != "created" || frame.Cursor != cur || string(frame.Notification) != string(change(42, "alice", "x").Data) {
		t.Errorf("WebSocket frame = %s", w1)
	}
}

func TestEventNamesAnExpiryAsDeleted(t *testing.T) {
	for typ, want := range map[string]string{resource.ChangeCreated: "created", resource.ChangeUpdated: "updated",
		resource.ChangeDeleted: "deleted", resource.ChangeExpired: "deleted"} {
		c := change(7, "alice", "x")
		c.Type = typ
		ev := NewEvent(c)
		if !strings.HasPrefix(string(ev.SSE()), "event: "+want+"\n") {
			t.Errorf("%s: SSE %q", typ, ev.SSE())
		}
		if !strings.Contains(string(ev.WebSocket()), `"type":"`+want+`"`) {
			t.Errorf("%s: WebSocket %s", typ, ev.WebSocket())
		}
	}
}

func TestHubCutsOffAFullListenerWithoutBlocking(t *testing.T) {
	h := NewHub()
	slow := h.Listen("alice", 2, nil)
	fast := h.Listen("alice", 16, nil)
	other := h.Listen("bob", 16, nil)
	var batch []resource.Change
	for i := uint64(1); i <= 5; i++ {
		batch = append(batch, change(i, "alice", "x"), change(100+i, "bob", "x"))
	}
	publishWithin(t, h, batch)

	evs, closed := drain(slow)
	if !closed {
		t.Fatal("full listener's channel is still open")
	}
	if !slow.Lagged() {
		t.Error("full listener is not marked Lagged")
	}
	if fmt.Sprint(seqs(evs)) != "[1 2]" {
		t.Errorf("full listener kept %v before the cut, want [1 2]", seqs(evs))
	}
	if evs, closed := drain(fast); closed || fmt.Sprint(seqs(evs)) != "[1 2 3 4 5]" || fast.Lagged() {
		t.Errorf("fast listener: %v closed=%v lagged=%v", seqs(evs), closed, fast.Lagged())
	}
	if evs, closed := drain(other); closed || len(evs) != 5 {
		t.Errorf("bob's listener: %v closed=%v", seqs(evs), closed)
	}
	if h.Open() != 2 {
		t.Errorf("Open = %d after the cut, want 2", h.Open())
	}

	// Later events neither reach nor block on the cut-off listener.
	publishWithin(t, h, []resource.Change{change(6, "alice", "x")})
	if evs, _ := drain(fast); fmt.Sprint(seqs(evs)) != "[6]" {
		t.Errorf("fast listener after the cut: %v", seqs(evs))
	}
	h.Remove(slow) // what the stream does on its way out
	if h.Open() != 2 {
		t.Errorf("Open = %d after removing a cut-off listener, want 2", h.Open())
	}
}

func TestHubCutOffUnderConcurrentPublishers(t *testing.T) {
	h := NewHub()
	slow := h.Listen("alice", 1, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				h.Publish([]resource.Change{change(uint64(g*1000+i), "alice", "x")})
			}
		}()
	}
	wg.Wait()
	if _, closed := drain(slow); !closed || !slow.Lagged() {
		t.Fatalf("closed=%v lagged=%v", closed, slow.Lagged())
	}
	if h.Open() != 0 {
		t.Errorf("Open = %d, want 0", h.Open())
	}
}

func TestHubRemoveAndCloseAllAreIdempotent(t *testing.T) {
	h := NewHub()
	a := h.Listen("alice", 4, nil)
	b := h.Listen("alice", 4, nil)
	c := h.Listen("bob", 4, nil)
	h.Remove(a)
	h.Remove(a)
	if _, closed := drain(a); !closed {
		t.Error("removed listener's channel is open")
	}
	if a.Lagged() {
		t.Error("a removed listener is not lagged")
	}
	if h.Open() != 2 {
		t.Fatalf("Open = %d, want 2", h.Open())
	}
	publishWithin(t, h, []resource.Change{change(1, "alice", "x")})
	if evs, _ := drain(b); len(evs) != 1 {
		t.Errorf("remaining listener got %d events", len(evs))
	}

	h.CloseAll()
	h.CloseAll()
	h.Remove(b)
	for _, l := range []*Listener{a, b, c} {
		if _, closed := drain(l); !closed {
			t.Error("listener open after CloseAll")
		}
	}
	if h.Open() != 0 {
		t.Errorf("Open = %d after CloseAll, want 0", h.Open())
	}
	publishWithin(t, h, []resource.Change{change(2, "alice", "x")}) // nobody left: no panic
}

// BenchmarkHubPublish publishes one change to n listeners of one user. The
// listeners are drained off the clock every buf events.
func BenchmarkHubPublish(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("listeners=%d", n), func(b *testing.B) {
			const buf = 256
			h := NewHub()
			ls := make([]*Listener, n)
			for i := range ls {
				ls[i] = h.Listen("alice", buf, nil)
			}
			batches := make([][]resource.Change, buf)
			for i := range batches {
				batches[i] = []resource.Change{change(uint64(i+1), "alice", "tasks.contoso.com")}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%buf == 0 && i > 0 {
					b.StopTimer()
					for _, l := range ls {
						drain(l)
					}
					b.StartTimer()
				}
				h.Publish(batches[i%buf])
			}
			b.StopTimer()
			if h.Open() != n {
				b.Fatalf("%d listeners were cut off", n-h.Open())
			}
		})
	}
}
