package raft

import (
	"encoding/json"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/skl"
)

// An entry's writes can outgrow one Badger transaction (15 % of a
// memtable: 128 sends of the largest payload with the smallest --memory,
// or deleting a user with many notifications at any), so the FSM commits
// a long entry in parts. The applied index moves only at an entry's end:
// after a crash between two parts the entry is applied again at start, on
// top of its first parts. Applying those commands again would count their
// notifications twice and record each twice in the change log, the first
// change left pointing at nothing (TestAnEntryCommittedInPartsIsReplayedExactly).
//
// So each part records, in the same commit, where a replay resumes
// (keyResume): the entry, the command that comes next or is under way, and
// the entry's index groups as they stand (txn.go), which the skipped
// commands filled; and it stores as applied the entries before it, whole in
// that part. A replay of the entry restores the groups and skips the
// commands before the mark. The groups are not written early, so where a
// part ends changes nothing that stays stored: replicas may cut an entry
// at different places (the transaction also holds the entries before it,
// as Raft happened to batch them) and still hold the same state.
//
// A part ends before a command once the transaction holds 40 % of what
// Badger takes in one. Within a command it ends only between whole steps
// of a command that a replay may apply again from its start and come to
// the same state (stepDone): deleting a user's keys by prefix, one key or
// subscription at a time, and deleting a group of notifications, one
// notification at a time (one deleted already is passed over); and the
// purge between index keys and between the notifications of an expiry
// group, whose phase and counts so far the mark keeps, since a purge begun
// again would take a whole run more (purgePhase).
// There at 60 %, leaving room for the step under way and the mark with its
// groups. Between the two bounds lies a fifth of the limit, 120 KiB even
// for the smallest memtable (4 MiB), more than a send (about 5 KiB) or
// most other commands write; a batch of delivery outcomes (up to 512, a
// record of up to about 1 KiB each) gets a transaction of its own instead
// (bulky).

// txnLimits are Badger's bounds on one transaction, as Open derives them.
type txnLimits struct{ bytes, keys int }

func limitsOf(db *badger.DB) txnLimits {
	size := db.Opts().MemTableSize * 15 / 100
	return txnLimits{bytes: int(size), keys: int(size / int64(skl.MaxNodeSize))}
}

// perKey is what Badger adds to a write's size when it checks a
// transaction against its limit.
const perKey = 12

// savedGroup is an index group as a part's mark keeps it.
type savedGroup struct {
	Refs []byte `json:"r,omitempty"`
	N    int    `json:"n,omitempty"`
	Ms   int64  `json:"m,omitempty"`
}

func saveGroup(g indexGroup) savedGroup {
	return savedGroup{Refs: g.refs, N: g.n, Ms: g.ms}
}

func (s savedGroup) group() indexGroup {
	return indexGroup{refs: s.Refs, n: s.N, ms: s.Ms}
}

// partMark is where the replay of a partly committed entry resumes.
type partMark struct {
	Entry uint64 `json:"e"`
	Cmd   int    `json:"c"` // the first command not wholly applied

	Change      savedGroup `json:"cg"`
	ChangeFirst uint64     `json:"cf,omitempty"`

	Expiry         savedGroup `json:"xg"`
	ExpiryFirstMs  int64      `json:"xm,omitempty"`
	ExpiryFirstSeq uint64     `json:"xs,omitempty"`
	ExpiryUID      string     `json:"xu,omitempty"`
	ExpiryNID      string     `json:"xn,omitempty"`

	Requests      savedGroup `json:"rg"`
	RequestsFirst string     `json:"rf,omitempty"`
	RequestsK     int        `json:"rk,omitempty"`

	Purge purgeProgress `json:"p"` // of command Cmd, a purge cut within
}

// purgeProgress is how far a purge cut within itself had come: its phase
// (1 to 7, in the order purge runs them; 0: not a purge), the index keys
// that phase had taken and what it had counted.
type purgeProgress struct {
	Phase int `json:"ph,omitempty"`
	Done  int `json:"d,omitempty"`
	Count int `json:"c,omitempty"`
	// Within counts the notifications of the expiry group under way that
	// were expired before a cut within it (Count is the count before the
	// group): the replay takes the group again, and those are gone.
	Within int `json:"w,omitempty"`
}

// purgePhase is one phase of a purge: it takes at most limit index keys
// (0: any number) and counts what it removes from count. A replay that
// resumes the purge begins the phase of the cut where it was and passes
// over the phases before it; each phase's keys, once taken, are gone, so
// the next ones are those the first application would have taken.
type purgePhase struct {
	t      *tx // nil: not within a purge, never cut
	n      int
	limit  int
	done   int // keys taken, in this application and before the cut
	count  int
	within int  // Within of the cut, for the first group taken again
	skip   bool // done before the cut
}

// phaseFrom begins phase n of a purge of at most max keys a phase.
func (t *tx) phaseFrom(n, max int) *purgePhase {
	p := &purgePhase{t: t, n: n, limit: max}
	switch r := t.purgeFrom; {
	case r.Phase == 0:
	case n < r.Phase:
		p.skip = true
	case n == r.Phase:
		p.done, p.count, p.within = r.Done, r.Count, r.Within
		if max > 0 {
			p.limit = max - r.Done
			p.skip = p.limit <= 0
		}
	}
	return p
}

// keys is ks, or none when the phase was done before the cut.
func (p *purgePhase) keys(ks [][]byte) [][]byte {
	if p.skip {
		return nil
	}
	return ks
}

// step ends a part, if one is due, before the phase's next key.
func (p *purgePhase) step(count int) { p.stepWithin(count, 0) }

// stepWithin ends a part, if one is due, within an expiry group: count
// before the group, within since it began.
func (p *purgePhase) stepWithin(count, within int) {
	if p.t == nil {
		return
	}
	p.t.purgeAt = purgeProgress{Phase: p.n, Done: p.done, Count: count, Within: within}
	p.t.stepDone()
	p.t.purgeAt = purgeProgress{}
}

// takeWithin returns, once, what the group a replay resumed in had
// expired before the cut.
func (p *purgePhase) takeWithin() int {
	w := p.within
	p.within = 0
	return w
}

const keyResume = "m/resume"

func (t *tx) mark() partMark {
	return partMark{Entry: t.entry, Cmd: t.cmd,
		Change: saveGroup(t.group.indexGroup), ChangeFirst: t.group.firstSeq,
		Expiry: saveGroup(t.expiry.indexGroup), ExpiryFirstMs: t.expiry.firstMs, ExpiryFirstSeq: t.expiry.firstSeq,
		ExpiryUID: t.expiry.uid, ExpiryNID: t.expiry.nid,
		Requests: saveGroup(t.requests.indexGroup), RequestsFirst: t.requests.first, RequestsK: t.requests.k,
		Purge: t.purgeAt}
}

// resumeAt restores the groups of m's entry, whose replay skips the
// commands before m.Cmd.
func (t *tx) resumeAt(m partMark) {
	t.group = changeGroup{indexGroup: m.Change.group(), firstSeq: m.ChangeFirst}
	t.expiry = expiryGroup{indexGroup: m.Expiry.group(), firstMs: m.ExpiryFirstMs, firstSeq: m.ExpiryFirstSeq,
		uid: m.ExpiryUID, nid: m.ExpiryNID}
	t.requests = requestGroup{indexGroup: m.Requests.group(), first: m.RequestsFirst, k: m.RequestsK}
}

func readMark(b []byte) (partMark, error) {
	var m partMark
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", keyResume, err)
	}
	return m, nil
}

// partDue reports whether the transaction holds more than the share
// (in percent) of Badger's limits.
func (t *tx) partDue(share int) bool {
	return (t.written+perKey*t.keysWritten)*100 > t.limits.bytes*share || t.keysWritten*100 > t.limits.keys*share
}

// bulky reports whether c may write more than the room a part leaves, and
// so starts a transaction of its own: a batch of delivery outcomes, each
// rewriting a delivery record, which cannot be cut within (an outcome
// applied twice would add an attempt twice).
func bulky(c *Command) bool {
	return c.Op == OpDeliveryOutcomes && len(c.Outcomes) > 64
}

// stepDone ends a part, if one is due, between two steps of a command that
// a replay may apply again from its start (see above).
func (t *tx) stepDone() {
	if t.entry != 0 && t.partDue(60) {
		t.endPart()
	}
}

// endPart commits the writes so far as a part of the entry under way that
// a replay resumes from: before command t.cmd, or within it.
func (t *tx) endPart() {
	b, err := json.Marshal(t.mark())
	t.must(err)
	t.set([]byte(keySeq), putUint64(t.seq))
	if t.done != 0 {
		// The entries before this one are whole in this part.
		t.set([]byte(keyApplied), putUint64(t.done))
	}
	t.set([]byte(keyResume), b)
	t.marked = true
	t.commitTxn()
	if testAfterPart != nil {
		testAfterPart()
	}
}

// testAfterPart, when set, runs after each part's commit (tests: a crash
// there).
var testAfterPart func()
