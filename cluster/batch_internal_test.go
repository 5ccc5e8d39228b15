package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// A forwarded write whose first send may have been committed (its answer
// lost) and whose resend met a full disk must not be answered with the
// guard's 507, which tells the client that nothing was stored.
func TestResendRefusedForAFullDiskHasAnUnknownOutcome(t *testing.T) {
	full := resource.Errorf(resource.CodeQuotaReached,
		"The server's disk is full (3.0 MiB free, below the reserve of 48.0 MiB); nothing was stored. Deleting notifications or freeing space on the server lets writes resume by themselves.")
	if !raft.IsDiskFull(full) {
		t.Fatal("the guard's refusal is not recognised")
	}
	if err := resentOutcome(&pendingWrite{sent: true}, full); !errors.Is(err, raft.ErrUnknownOutcome) || raft.IsDiskFull(err) {
		t.Errorf("a refused resend of a write that may have committed: %v, want ErrUnknownOutcome", err)
	}
	if err := resentOutcome(&pendingWrite{}, full); err != full {
		t.Errorf("a refused write never sent before: %v, want the 507 itself", err)
	}
	quota := resource.Errorf(resource.CodeQuotaReached, "The user has the most active subscriptions allowed (10).")
	if err := resentOutcome(&pendingWrite{sent: true}, quota); err != quota {
		t.Errorf("the FSM's own quota answer to a resend: %v, want it unchanged", err)
	}
}

// The leader reads a batch of forwarded commands, sends or not, as it read
// them one by one with encoding/json, and refuses a malformed one naming
// it.
func TestForwardedBatchesReadAsEncodingJSONReadsThem(t *testing.T) {
	now := time.Now()
	ttl := 30
	send := func(id, text string) *raft.Command {
		return &raft.Command{Op: raft.OpSend, Now: now.UnixNano(), MaxItems: 10, Notif: &resource.NotificationRecord{
			Notification: resource.Notification{ID: id, TargetHostName: "a.example", Priority: "High",
				Payload:            resource.Payload{VisualContent: &resource.VisualContent{Title: text}},
				TargetPolicy:       resource.TargetPolicy{PlatformTypes: []string{}},
				DisplayTimeToLive:  &ttl,
				ExpirationDateTime: resource.At(now.Add(time.Hour)), CreatedDateTime: resource.At(now),
				LastModifiedDateTime: resource.At(now), ReadState: "unread", UserActionState: "noInteraction", Status: "active"},
			UserID: "u1", AppID: "a1"}}
	}
	batches := [][]*raft.Command{
		{send("n1", "hello")},
		{send("n1", "héllo <b>"), send("n2", "x\"y"), send("n3", "")},
		{send("n1", "a"), {Op: raft.OpDeleteNotif, Now: now.UnixNano(), UserID: "u1", ID: "n1"}},
	}
	for _, cmds := range batches {
		pending := make([]*pendingWrite, len(cmds))
		for i, c := range cmds {
			c.RequestID = "p." + strconv.Itoa(i)
			body, err := raft.EncodeCommand(c)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := json.Marshal(c); !bytes.Equal(body, want) {
				t.Fatalf("encoded\n got %s\nwant %s", body, want)
			}
			pending[i] = &pendingWrite{body: body}
		}
		got, err := decodeForward(encodeBatch(pending))
		if err != nil {
			t.Fatal(err)
		}
		want := make([]*raft.Command, len(pending))
		for i, p := range pending {
			json.Unmarshal(p.body, &want[i])
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("read %+v, want %+v", got, want)
		}
	}
	_, err := decodeForward([]byte(`{"commands":[{"op":"send","now":1},{"op":7}]}`))
	var re *resource.Error
	if !errors.As(err, &re) || re.Code != resource.CodeInvalidRequest || !strings.Contains(re.Message, "command 1") {
		t.Errorf("a malformed command: %v, want invalidRequest naming command 1", err)
	}
}

// The leader's answer to a forwarded batch is written by hand when every
// result can be, byte for byte as encoding/json writes it, and a follower
// reads it back; a result with the command's own error leaves the whole
// answer to encoding/json.
func TestForwardResponseEncodedAsEncodingJSONWouldBe(t *testing.T) {
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	n := resource.Notification{ID: "n1", TargetHostName: "a.example", AppNotificationID: "build <42> & co",
		Payload:         resource.Payload{VisualContent: &resource.VisualContent{Title: "Build finished", Body: "line\u2028two"}},
		CreatedDateTime: resource.At(now), ExpirationDateTime: resource.At(now.Add(time.Hour))}
	encoded, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	wire := func(v any, err error) *raft.WireResult {
		t.Helper()
		w, werr := raft.EncodeResult(v, err, 0)
		if werr != nil {
			t.Fatal(werr)
		}
		return w
	}
	r := forwardResponse{Applied: 42, Results: []*raft.WireResult{
		wire(raft.SendResult{Notification: n, Created: true, Encoded: encoded}, nil),
		wire(nil, raft.ErrTimeout),
		wire(resource.User{ID: "u1", UserPrincipalName: "u1"}, nil),
		wire(nil, nil),
	}}
	got, ok := r.encode()
	if !ok {
		t.Fatal("a batch of sends, a store error, a user and nothing was left to encoding/json")
	}
	want, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded by hand\n got %s\nwant %s", got, want)
	}
	var back forwardResponse
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if v, err := back.Results[0].Decode(); err != nil || v.(raft.SendResult).Notification.ID != "n1" {
		t.Fatalf("the send's result read back as %#v, %v", v, err)
	}
	if _, err := back.Results[1].Decode(); !errors.Is(err, raft.ErrTimeout) {
		t.Fatalf("the store error read back as %v", err)
	}

	r.Results = append(r.Results, wire(nil, resource.NotFound("user")))
	if b, ok := r.encode(); ok {
		t.Fatalf("a command's own error was written by hand: %s", b)
	}
}

// The leader's record is kept only for the leader it was read for, until
// the next leader change and for leaderCacheFor at most.
func TestLeaderCacheEndsWithTheLeader(t *testing.T) {
	var w leaderWatch
	var c leaderCache
	rec := raft.NodeRecord{ID: "n1", HTTPAddr: "10.0.0.1:8080", RaftAddr: "10.0.0.1:8300"}
	t0 := time.Now()
	term := w.changed()
	if _, ok := c.get("n1", term, t0); ok {
		t.Fatal("an empty cache answered")
	}
	c.put("n1", rec, term, t0)
	if got, ok := c.get("n1", w.changed(), t0.Add(time.Second)); !ok || got != rec {
		t.Fatalf("within the term: %+v, %v", got, ok)
	}
	if _, ok := c.get("n2", w.changed(), t0); ok {
		t.Fatal("another leader's record was answered")
	}
	if _, ok := c.get("n1", w.changed(), t0.Add(leaderCacheFor)); ok {
		t.Fatal("a record older than leaderCacheFor was answered")
	}
	w.fire()
	if _, ok := c.get("n1", w.changed(), t0); ok {
		t.Fatal("the record outlived a leader change, to the same leader")
	}
}

// Once a stopping node's drain grace is over (Cluster.Drain), a forwarded
// write is given up only after a try found no leader to take it: a write
// that a request still in flight queues during a rolling restart, whose
// leader is fine, is sent and answered as usual, not refused 503.
func TestDrainedNodeGivesUpOnlyWritesWithoutALeader(t *testing.T) {
	c := &Cluster{stop: make(chan struct{}), drainOver: make(chan struct{})}
	close(c.drainOver)
	b := &batcher{c: c}
	fresh := func() *pendingWrite {
		return &pendingWrite{ctx: context.Background(), deadline: time.Now().Add(forwardHold), done: make(chan writeResult, 1)}
	}
	p := fresh()
	if kept := b.expire([]*pendingWrite{p}, nil); len(kept) != 1 {
		select {
		case r := <-p.done:
			t.Fatalf("a write not yet tried was answered %v after the drain grace; want it sent to the leader", r.err)
		default:
			t.Fatal("a write not yet tried was dropped after the drain grace")
		}
	}
	p = fresh()
	if kept := b.expire([]*pendingWrite{p}, raft.ErrNotLeader); len(kept) != 0 {
		t.Fatal("a write that found no leader was kept after the drain grace")
	}
	if r := <-p.done; !errors.Is(r.err, raft.ErrClosed) {
		t.Fatalf("a write that found no leader was answered %v; want ErrClosed (shutting down)", r.err)
	}
}
