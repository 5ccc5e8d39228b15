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
// and in a replay): rqe/<expiry ms>/… orders them, one key for the records
// an entry stored (requestGroupKey, by the latest expiry; earlier versions
// wrote one a record), each entry that stores records now and then removes
// more expired ones than entries can add in between, and the leader's
// purge sweeps the rest.

// RequestWindow is how long a command's result is remembered. A follower
// resends for at most its hold time (seconds); the rest covers clocks of
// different proposers that disagree: the leader refuses a command whose
// time lies more than cluster.MaxClockOffset (30 s) from the cluster's
// clock, without which one node's clock far ahead made the FSM forget
// every other node's results at once.
const RequestWindow = 2 * time.Minute

// requestRecord is a remembered result.
type requestRecord struct {
	Exp    int64      `json:"exp"` // Unix ms
	Result WireResult `json:"result"`
}

func requestKey(id string) []byte { return []byte("rq/" + id) }

// requestExpiryKey orders records by expiry: the one request it names, with
// no value, or a group's (requestGroupKey), whose value lists them.
func requestExpiryKey(ms int64, id string) []byte {
	return fmt.Appendf(nil, "rqe/%016x/%s", uint64(ms), id)
}

// requestGroupKey names the k-th group of the requests entry index
// remembered. A follower's request ids always hold a '.' (cluster/batch.go),
// which a group's name never does.
func requestGroupKey(ms int64, index uint64, k int) []byte {
	return fmt.Appendf(nil, "rqe/%016x/%016x-%d", uint64(ms), index, k)
}

// requestGroup is the expiry index of the requests an entry remembered, as
// it fills, each referred to by its id (appendRef): one key an entry rather
// than one a request, which was a key written and later deleted for every
// forwarded write on every replica.
type requestGroup struct {
	indexGroup
	first string
	k     int // groups written for the entry so far
}

func (t *tx) groupRequest(ms int64, id string) {
	g := &t.requests
	if g.n == 0 {
		g.first = id
	}
	if g.add(ms, appendRef(g.refs, id)) {
		t.endRequestGroup()
	}
}

// endRequestGroup writes the expiry index of the requests grouped so far: a
// lone one's key as before groups, with no value.
func (t *tx) endRequestGroup() {
	g := &t.requests
	switch g.n {
	case 0:
		return
	case 1:
		t.set(requestExpiryKey(g.ms, g.first), nil)
	default:
		t.set(requestGroupKey(g.ms, t.entry, g.k), g.refs) // kept by the transaction: not reused
	}
	*g = requestGroup{k: g.k + 1}
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
	t.groupRequest(exp, c.RequestID)
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
	return t.purgeRequestsFrom(&purgePhase{limit: limit}, nowMs, limit)
}

// purgeRequestsFrom is purgeRequests as a phase of the purge, which a
// replay may resume.
func (t *tx) purgeRequestsFrom(p *purgePhase, nowMs int64, limit int) int {
	n := p.count
	for _, k := range p.keys(t.due([]byte("rqe/"), nowMs, p.limit)) {
		parts := strings.SplitN(string(k), "/", 3) // rqe, ms, id or group
		if len(parts) != 3 || (limit > 0 && n >= limit) {
			break
		}
		p.step(n)
		refs, _ := t.get(k)
		t.del(k)
		p.done++
		if len(refs) == 0 {
			t.del(requestKey(parts[2]))
			n++
			continue
		}
		id := make([]string, 1)
		for rest, ok := nextRef(refs, id); ok; rest, ok = nextRef(rest, id) {
			t.del(requestKey(id[0]))
			n++
		}
	}
	return n
}
