//go:build linux

package chaos

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
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

// From rules level 4 a deleted notification reads without its content;
// a tombstone read with another notification's content is still stale.
func TestLinearizabilityCheckerReadsATombstoneWithoutContent(t *testing.T) {
	w1 := putOp(0, 0, "v1", 0, 10, 201, "n1")
	w2 := putOp(1, 0, "v2", 20, 30, 200, "n1")
	del := &op{ID: 2, Client: 0, Kind: opDelete, Key: "k", NID: "n1", Start: at(40), End: at(50), Status: 204}
	tomb := func(content string) *op {
		o := getOp(3, 1, content, 60, 70, "n1")
		o.Result.Status = "deleted"
		return o
	}
	check := func(ops []*op) porcupine.CheckResult {
		res, _, _ := checkLinearizable(ops, primaries(facts(ops)), 10*time.Second)
		return res
	}
	for _, c := range []string{"", "v2"} {
		if got := check([]*op{w1, w2, del, tomb(c)}); got != porcupine.Ok {
			t.Errorf("a tombstone read with content %q: %s, want Ok", c, got)
		}
	}
	if got := check([]*op{w1, w2, del, tomb("v1")}); got != porcupine.Illegal {
		t.Errorf("a tombstone read with the content v2 replaced: %s, want Illegal", got)
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

func TestChangeLogCheckerCatchesDivergenceAndLoss(t *testing.T) {
	u := []*user{{idx: 0, upn: "u0"}}
	put := putOp(0, 0, "v1", 0, 10, 201, "n1")
	patch := &op{ID: 1, Client: 0, Kind: opPatch, Key: "k", NID: "n1", Read: "read", Action: "dismissed",
		Start: at(20), End: at(30), Status: 200}
	del := &op{ID: 2, Client: 0, Kind: opDelete, Key: "k", NID: "n1", Start: at(40), End: at(50), Status: 204}
	ops := []*op{put, patch, del}
	ev := func(seq uint64, typ, data string) event {
		return event{Seq: seq, Cursor: fmt.Sprintf("c%d", seq), Type: typ, NID: "n1", Data: json.RawMessage(data)}
	}
	created := ev(1, "created", `{"id":"n1","readState":"unread","userActionState":"noInteraction"}`)
	patched := ev(2, "updated", `{"id":"n1","readState":"read","userActionState":"dismissed"}`)
	deleted := ev(3, "deleted", `{"id":"n1"}`)
	run := func(logs ...[]event) *verdict {
		v := &verdict{}
		var all [][][]event
		for _, l := range logs {
			all = append(all, [][]event{l})
		}
		checkLogs(v, u, all, facts(ops))
		return v
	}
	good := []event{created, patched, deleted}
	if v := run(good, good, good); len(v.failures) != 0 {
		t.Errorf("identical logs with every write: %v", v.failures)
	}
	if v := run(good, good, []event{created, deleted}); len(v.failures) == 0 {
		t.Error("a node's log without a change passed")
	}
	other := patched
	other.Data = json.RawMessage(`{"id":"n1","readState":"read","userActionState":"activated"}`)
	if v := run(good, []event{created, other, deleted}, good); len(v.failures) == 0 {
		t.Error("a change with other data on one node passed")
	}
	if v := run(good, []event{created, deleted, patched}, good); len(v.failures) == 0 {
		t.Error("changes in another order on one node passed")
	}
	swapped := []event{patched, created, deleted}
	if v := run(swapped, swapped, swapped); len(v.failures) == 0 {
		t.Error("a log out of cursor order passed")
	}
	if v := run([]event{created, deleted}, []event{created, deleted}); v.lost != 1 {
		t.Errorf("an acknowledged PATCH missing from every log: lost %d, %v", v.lost, v.failures)
	}
	if v := run([]event{created, patched}, []event{created, patched}); v.lost != 1 {
		t.Errorf("an acknowledged DELETE missing from every log: lost %d, %v", v.lost, v.failures)
	}
	if v := run([]event{}, []event{}); v.lost < 1 {
		t.Errorf("an acknowledged create missing from every log: lost %d, %v", v.lost, v.failures)
	}
}

func TestWebhookCheckerCatchesMissingAndMixedDeliveries(t *testing.T) {
	u := []*user{{idx: 0, upn: "u0", hookSub: "h0"}}
	final := notif{ID: "n1", AppNotificationID: "k", ReadState: "read", UserActionState: "dismissed", Status: "active"}
	final.Payload.RawContent = "v2"
	older := final
	older.Payload.RawContent, older.ReadState, older.UserActionState = "v1", "unread", "noInteraction"
	feeds := [][]notif{{final}}
	d := func(id string, n notif, answered int, sigOK bool) delivery {
		return delivery{WebhookID: id, Body: n.state(), Type: "notification.updated", User: 0, N: n, SigOK: sigOK, Answered: answered}
	}
	run := func(ds ...delivery) *verdict {
		v := &verdict{}
		checkWebhooks(v, u, feeds, ds)
		return v
	}
	if v := run(d("m1", older, 200, true), d("m2", final, 503, true), d("m2", final, 200, true)); len(v.failures) != 0 {
		t.Errorf("the final state delivered after a retry: %v", v.failures)
	}
	if v := run(d("m1", older, 200, true)); len(v.failures) == 0 {
		t.Error("only an older state delivered passed")
	}
	if v := run(d("m1", older, 200, true), d("m2", final, 503, true)); len(v.failures) == 0 {
		t.Error("the final state only in a failed delivery passed")
	}
	if v := run(d("m2", final, 200, false)); len(v.failures) == 0 {
		t.Error("a badly signed delivery passed")
	}
	if v := run(d("m1", older, 503, true), d("m1", final, 200, true)); len(v.failures) == 0 {
		t.Error("one webhook-id carrying two messages passed")
	}
	gone := final
	gone.Status = "deleted"
	feeds = [][]notif{{gone}}
	if v := run(d("m2", final, 200, true)); len(v.failures) == 0 {
		t.Error("a deleted notification without a delivered notification.deleted passed")
	}
}

func TestBypassCheckerSeesADirectConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	all, err := procSockets()
	if err != nil {
		t.Fatal(err)
	}
	found, err := directPeers(os.Getpid(), all, map[string]string{ln.Addr().String(): "a node's port"})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || !strings.Contains(found[0], conn.LocalAddr().String()) {
		t.Errorf("a connection to a direct address: found %v, want the one from %s", found, conn.LocalAddr())
	}
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if found, err := directPeers(os.Getpid(), all, map[string]string{other.Addr().String(): "a node's port"}); err != nil || len(found) != 0 {
		t.Errorf("no connection to the direct address: found %v, %v", found, err)
	}
}
