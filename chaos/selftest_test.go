package chaos

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The checkers must be able to fail: each is fed a small history with the
// defect it exists to catch, and the same history without it.

func at(ms int) time.Time { return time.Unix(0, 0).Add(time.Duration(ms) * time.Millisecond) }

func putOp(id, client int, content string, from, to int, status int, nid string) *op {
	o := &op{ID: id, Client: client, Kind: opPut, Key: "k", Content: content, Start: at(from), End: at(to), Status: status}
	if status/100 == 2 {
		o.Result = &notif{ID: nid, ReadState: "unread", UserActionState: "noInteraction", Status: "active"}
		o.Result.Payload.RawContent = content
	}
	return o
}

func getOp(id, client int, content string, from, to int, nid string) *op {
	o := &op{ID: id, Client: client, Kind: opGet, Key: "k", NID: nid, Start: at(from), End: at(to), Status: 200,
		Result: &notif{ID: nid, ReadState: "unread", UserActionState: "noInteraction", Status: "active"}}
	o.Result.Payload.RawContent = content
	return o
}

func TestLinearizabilityCheckerCatchesAStaleRead(t *testing.T) {
	w1 := putOp(0, 0, "v1", 0, 10, 201, "n1")
	w2 := putOp(1, 0, "v2", 20, 30, 200, "n1")
	stale := getOp(2, 1, "v1", 40, 50, "n1")
	fresh := getOp(2, 1, "v2", 40, 50, "n1")
	check := func(ops []*op) porcupine.CheckResult {
		res, _, _ := checkLinearizable(ops, primaries(facts(ops)), 10*time.Second)
		return res
	}
	if got := check([]*op{w1, w2, stale}); got != porcupine.Illegal {
		t.Errorf("a read of v1 after v2 was acknowledged: %s, want Illegal", got)
	}
	if got := check([]*op{w1, w2, fresh}); got != porcupine.Ok {
		t.Errorf("a read of v2: %s, want Ok", got)
	}
	// An unanswered write may land at any time after its call, so a read
	// of its value even much later is legal, and so is one without it.
	lost := putOp(1, 0, "v2", 20, 30, 0, "")
	if got := check([]*op{w1, lost, fresh}); got != porcupine.Ok {
		t.Errorf("a read of an unanswered write's value: %s, want Ok", got)
	}
	if got := check([]*op{w1, lost, stale}); got != porcupine.Ok {
		t.Errorf("a read without an unanswered write: %s, want Ok", got)
	}
	// A write the server said it did not make must leave no trace.
	notMade := putOp(1, 0, "v2", 20, 30, 503, "")
	notMade.NotApplied = true
	if got := check([]*op{w1, notMade, fresh}); got != porcupine.Illegal {
		t.Errorf("a read of a write answered \"not committed\": %s, want Illegal", got)
	}
}

func TestStoreCheckerCatchesLossAndDuplicates(t *testing.T) {
	u := []*user{{idx: 0, upn: "u0"}}
	ops := []*op{putOp(0, 0, "v1", 0, 10, 201, "n1")}
	stored := notif{ID: "n1", AppNotificationID: "k", ReadState: "unread", UserActionState: "noInteraction", Status: "active"}
	stored.Payload.RawContent = "v1"
	run := func(feeds [][][]notif) *verdict {
		v := &verdict{}
		checkStores(v, u, feeds, facts(ops))
		return v
	}
	if v := run([][][]notif{{{stored}}, {{stored}}}); len(v.failures) != 0 {
		t.Errorf("a good store: %v", v.failures)
	}
	if v := run([][][]notif{{{stored}}, {{}}}); v.lost != 1 {
		t.Errorf("a node without the acknowledged write: lost %d, %v", v.lost, v.failures)
	}
	dup := stored
	dup.ID = "n2"
	if v := run([][][]notif{{{stored, dup}}, {{stored}}}); v.dups != 1 {
		t.Errorf("a key stored twice: dups %d, %v", v.dups, v.failures)
	}
	old := stored
	old.Payload.RawContent = "v0"
	if v := run([][][]notif{{{old}}, {{old}}}); v.lost != 2 {
		t.Errorf("content no put wrote: lost %d, %v", v.lost, v.failures)
	}
}

func TestSubscriberCheckerCatchesGapsAndReorders(t *testing.T) {
	ev := func(seq uint64, cur, nid string) event {
		return event{Seq: seq, Cursor: cur, Type: "created", NID: nid, Data: json.RawMessage(`{"id":"` + nid + `"}`)}
	}
	log := [][][]event{{{ev(1, "c1", "a"), ev(2, "c2", "b"), ev(3, "c3", "c")}}}
	u := &user{idx: 0}
	run := func(evs ...event) int {
		v := &verdict{}
		checkSubscribers(v, []*subscriber{{name: "s", u: u, events: evs}}, log)
		return len(v.failures)
	}
	if n := run(ev(1, "c1", "a"), ev(2, "c2", "b"), ev(2, "c2", "b"), ev(3, "c3", "c")); n != 0 {
		t.Errorf("every change once after dropping a duplicate: %d failures", n)
	}
	if n := run(ev(1, "c1", "a"), ev(3, "c3", "c")); n == 0 {
		t.Error("a missed change passed")
	}
	if n := run(ev(2, "c2", "b"), ev(1, "c1", "a"), ev(3, "c3", "c")); n == 0 {
		t.Error("changes out of order passed")
	}
}
