package raft

import (
	"fmt"
	"strings"
	"time"
)

// Idempotent commands. A follower forwards a write to the leader; when the
// leader stops answering (paused, killed, partitioned) the follower cannot
// know whether the entry was committed. It resends the same command, with
// the same RequestID, to the next leader, and the FSM makes the resend
// harmless: the first application of an id stores its result under
// rq/<id>, and a later command with that id returns the stored result and
// writes nothing. Raft applies entries in order on every node, so every
// replica makes the same choice.
//
// Records expire RequestWindow after the command's Now, judged by the Now
// of later commands (never the wall clock, which differs between replicas
// and in a replay): rqe/<expiry ms>/<id> orders them, each entry that
// stores records now and then removes more expired ones than entries can
// add in between, and the leader's purge sweeps the rest.

// RequestWindow is how long a command's result is remembered. A follower
// resends for at most its hold time (seconds); the rest covers clocks of
// different proposers that disagree, by up to a minute (inter-node
// requests older than that are refused anyway).
const RequestWindow = 2 * time.Minute

// requestRecord is a remembered result.
type requestRecord struct {
	Exp    int64      `json:"exp"` // Unix ms
	Result WireResult `json:"result"`
}

func requestKey(id string) []byte { return []byte("rq/" + id) }
func requestExpiryKey(ms int64, id string) []byte {
	return fmt.Appendf(nil, "rqe/%016x/%s", uint64(ms), id)
}

// applyOnce applies c, or answers the result of an earlier command with
// its RequestID.
func (t *tx) applyOnce(c *Command) Result {
	if c.RequestID == "" {
		return t.apply(c)
	}
	var rec requestRecord
	if t.getJSON(requestKey(c.RequestID), &rec) {
		v, err := rec.Result.Decode()
		return Result{Value: v, Err: err}
	}
	r := t.apply(c)
	w, err := EncodeResult(r.Value, r.Err, 0)
	if err != nil {
		// Every op's result has a wire type (wire.go); a new one without
		// fails here alike on every replica, and only loses the dedup.
		return r
	}
	exp := (c.Now + int64(RequestWindow)) / int64(time.Millisecond)
	rec = requestRecord{Exp: exp, Result: *w}
	if b, ok := encodeRequestRecord(&rec); ok {
		t.set(requestKey(c.RequestID), b)
	} else {
		t.setJSON(requestKey(c.RequestID), rec)
	}
	t.set(requestExpiryKey(exp, c.RequestID), nil)
	return r
}

// forgetRequests drops expired request records after an entry that may
// have added some. A scan costs a Badger iterator, so only every fourth
// such entry (by index, the same on every replica) looks, taking more than
// the entries in between can have added: records cannot pile up under a
// steady load of forwarded writes.
func (t *tx) forgetRequests(index uint64, cmds []*Command) {
	if index%4 != 0 {
		return
	}
	var now int64
	for _, c := range cmds {
		if c.RequestID != "" {
			now = max(now, c.Now)
		}
	}
	if now > 0 {
		t.purgeRequests(now/int64(time.Millisecond), 4*maxBatch)
	}
}

// purgeRequests deletes up to limit request records that expired by nowMs
// and reports how many.
func (t *tx) purgeRequests(nowMs int64, limit int) int {
	n := 0
	for _, k := range t.due([]byte("rqe/"), nowMs, limit) {
		parts := strings.SplitN(string(k), "/", 3) // rqe, ms, id
		if len(parts) != 3 {
			break
		}
		t.del(requestKey(parts[2]))
		t.del(k)
		n++
	}
	return n
}
