package raft

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/herald-notify/herald/resource"
)

// The audit log and the session records.
//
// An audit record rides in the command whose action it describes
// (Command.Audit) and is written by the same Apply, in the same Badger
// transaction: a change is never in the state without its record, nor a
// record without its change. A command that fails still writes its record,
// as a failure with the reason, and nothing else. Records are keyed by id,
// which starts with the time, so the log newest first is a reverse scan and
// the retention purge reads only what is due. Aggregated records (failed
// sign-ins, counted on each node and flushed now and then) share an id per
// kind, name, address and minute, and their counts add up.

// auditKey holds one audit record.
func auditKey(id string) []byte { return []byte("al/" + id) }

// sessionKey holds a user's session record; sessionExpiryKey orders them by
// expiry for the purge.
func sessionKey(uid, sid string) []byte { return []byte("ss/" + uid + "/" + sid) }
func sessionPrefix(uid string) []byte   { return []byte("ss/" + uid + "/") }
func sessionExpiryKey(ms int64, uid, sid string) []byte {
	return fmt.Appendf(nil, "sx/%016x/%s/%s", uint64(ms), uid, sid)
}

// writeAudit stores a command's audit records; failed tells the result.
func (t *tx) writeAudit(recs []resource.AuditRecord, failed error) {
	for _, rec := range recs {
		if _, ok := resource.AuditIDTime(rec.ID); !ok {
			continue // not an id this server makes; every replica skips it alike
		}
		if failed != nil {
			rec.Result = resource.AuditFailure
			reason := failed.Error()
			var re *resource.Error
			if errors.As(failed, &re) {
				reason = re.Message
			}
			if rec.Detail == "" {
				rec.Detail = reason
			} else {
				rec.Detail += "; " + reason
			}
		}
		if rec.Count > 0 {
			var old resource.AuditRecord
			if t.getJSON(auditKey(rec.ID), &old) {
				old.Count += rec.Count
				old.Detail = rec.Detail
				rec = old
			}
			rec.Detail = aggregateDetail(rec)
		}
		t.setJSON(auditKey(rec.ID), rec)
	}
}

// aggregateDetail words an aggregated record's count.
func aggregateDetail(r resource.AuditRecord) string {
	what := "sign-in"
	if r.Result == resource.AuditFailure {
		what = "failed sign-in"
	}
	if r.Count != 1 {
		what += "s"
	}
	return fmt.Sprintf("%d %s in the minute from %s", r.Count, what, r.DateTime.UTC().Format("15:04Z"))
}

// putSession creates or renews the session of a sign-in or refresh.
func (t *tx) putSession(c *Command, g TokenGrant) {
	r := g.Record
	sid := resource.SessionID(r.Session)
	now := resource.At(time.Unix(0, c.Now))
	var s resource.SessionRecord
	if t.getJSON(sessionKey(r.PrincipalID, sid), &s) {
		t.del(sessionExpiryKey(s.ExpiresAt.UnixMilli(), s.UserID, sid))
	} else {
		if t.rules() >= 1 {
			t.makeRoomForSession(r.PrincipalID)
		}
		s = resource.SessionRecord{Session: resource.Session{ID: sid, CreatedDateTime: now},
			UserID: r.PrincipalID, Key: r.Session}
	}
	s.LastUsedDateTime = now
	if c.Client != nil {
		s.ClientAddress, s.UserAgent = c.Client.Address, c.Client.UserAgent
	}
	if r.ExpiresAt.After(s.ExpiresAt.Time) {
		s.ExpiresAt = r.ExpiresAt
	}
	t.setJSON(sessionKey(s.UserID, sid), s)
	t.set(sessionExpiryKey(s.ExpiresAt.UnixMilli(), s.UserID, sid), nil)
}

// MaxSessionsPerUser bounds a user's sign-in sessions: each holds tokens
// and a record, and sign-ins that never sign out (a script, a device
// that lost its refresh token) would add them for good. A new one past
// the bound ends the least recently used, as a browser signed in long ago
// on a machine no longer used.
const MaxSessionsPerUser = 100

// makeRoomForSession ends uid's least recently used session while uid has
// MaxSessionsPerUser or more.
func (t *tx) makeRoomForSession(uid string) {
	keys := t.keys(sessionPrefix(uid), 0)
	for n := len(keys); n >= MaxSessionsPerUser; n-- {
		var oldest *resource.SessionRecord
		for _, k := range keys {
			var s resource.SessionRecord
			if t.getJSON(k, &s) && (oldest == nil || s.LastUsedDateTime.Before(oldest.LastUsedDateTime.Time) ||
				s.LastUsedDateTime.Equal(oldest.LastUsedDateTime.Time) && s.ID < oldest.ID) {
				oldest = &s
			}
		}
		if oldest == nil {
			return
		}
		t.endSession(oldest)
		keys = slices.DeleteFunc(keys, func(k []byte) bool { return string(k) == string(sessionKey(uid, oldest.ID)) })
	}
}

// touchSession moves a session's lastUsedDateTime forward.
func (t *tx) touchSession(c *Command) Result {
	var s resource.SessionRecord
	if !t.getJSON(sessionKey(c.UserID, c.ID), &s) {
		return ok(nil) // revoked meanwhile: nothing to note
	}
	if now := resource.At(time.Unix(0, c.Now)); now.After(s.LastUsedDateTime.Time) {
		s.LastUsedDateTime = now
		if c.Client != nil {
			s.ClientAddress, s.UserAgent = c.Client.Address, c.Client.UserAgent
		}
		t.setJSON(sessionKey(s.UserID, s.ID), s)
	}
	return ok(nil)
}

// delSession forgets a session record (its tokens are the caller's).
func (t *tx) delSession(s *resource.SessionRecord) {
	t.del(sessionKey(s.UserID, s.ID))
	t.del(sessionExpiryKey(s.ExpiresAt.UnixMilli(), s.UserID, s.ID))
}

// deleteSessionsOf forgets every session record of a user.
func (t *tx) deleteSessionsOf(uid string) {
	for _, k := range t.keys(sessionPrefix(uid), 0) {
		t.stepDone() // a session at a time; those gone are passed over
		var s resource.SessionRecord
		if t.getJSON(k, &s) {
			t.delSession(&s)
		} else {
			t.del(k)
		}
	}
}

// purgeAudit deletes up to the phase's limit of audit records older than
// the cutoff.
func (t *tx) purgeAudit(p *purgePhase, cutoffMs int64) int {
	n := p.count
	old := func(k []byte) bool {
		ms, ok := resource.AuditIDTime(string(k[len("al/"):]))
		return !ok || ms < cutoffMs
	}
	for _, k := range p.keys(t.keysWhile([]byte("al/"), p.limit, old)) {
		p.step(n)
		t.del(k)
		n++
		p.done++
	}
	return n
}

// purgeSessions forgets up to limit sessions whose refresh tokens expired
// by nowMs (the tokens themselves go by their own index).
func (t *tx) purgeSessions(p *purgePhase, nowMs int64) int {
	n := p.count
	for _, k := range p.keys(t.due([]byte("sx/"), nowMs, p.limit)) {
		p.step(n)
		parts := strings.SplitN(string(k), "/", 4) // sx, ms, uid, sid
		if len(parts) != 4 {
			break
		}
		t.del(sessionKey(parts[2], parts[3]))
		t.del(k)
		n++
		p.done++
	}
	return n
}

// Sessions returns a user's session records.
func (s *Store) Sessions(uid string) ([]resource.SessionRecord, error) {
	p, err := list[resource.SessionRecord](s, sessionPrefix(uid), "", false, 1<<20, nil)
	return p.Items, err
}

// AuditQuery selects audit records: newest first, after the id After,
// none older than Since, those Keep accepts (nil: all).
type AuditQuery struct {
	After string
	Limit int
	Since time.Time
	Keep  func(*resource.AuditRecord) bool
}

// AuditScanBound is how many records one page of the audit log reads at
// most. A filter that few records match read the whole log for every page
// (over a second for 60,000 records on the development machine, and the
// log of a large tenant holds millions within its retention), so a page
// that reaches the bound ends there, shorter or empty, with a Next after
// the last record it read.
var AuditScanBound = 5000

// AuditLog pages through the audit log newest first.
func (s *Store) AuditLog(q AuditQuery) (Page[resource.AuditRecord], error) {
	var p Page[resource.AuditRecord]
	var last string
	read := 0
	sinceMs := int64(-1)
	if !q.Since.IsZero() {
		sinceMs = q.Since.UnixMilli()
	}
	prefix := []byte("al/")
	err := s.scan(prefix, q.After, true, func(k, v []byte) (bool, error) {
		id := string(k[len(prefix):])
		if ms, ok := resource.AuditIDTime(id); ok && ms < sinceMs {
			return false, nil // ids sort by time: nothing older qualifies
		}
		if read == AuditScanBound {
			p.Next = last // the last returned, or read if the page is not full
			return false, nil
		}
		read++
		var r resource.AuditRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return false, fmt.Errorf("decode %q: %w", k, err)
		}
		if r.DateTime.UnixMilli() < sinceMs || q.Keep != nil && !q.Keep(&r) {
			if len(p.Items) < q.Limit {
				last = id
			}
			return true, nil
		}
		if len(p.Items) == q.Limit {
			p.Next = last
			return false, nil
		}
		p.Items = append(p.Items, r)
		last = id
		return true, nil
	})
	return p, err
}
