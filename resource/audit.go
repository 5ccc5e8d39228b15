package resource

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sync"
	"time"
)

// Actor types of an audit record (API.md §8).
const (
	ActorUser        = "user"
	ActorApplication = "application"
	ActorSystem      = "system"
)

// Results of an audited action.
const (
	AuditSuccess = "success"
	AuditFailure = "failure"
)

// AuditActor is who did an audited action.
type AuditActor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Name string `json:"name"`
}

// AuditRecord is one entry of the audit log, stored and answered as is.
// It never holds a secret: no password, token, client secret or session
// key, only names and ids.
type AuditRecord struct {
	// ID sorts by time: AuditID or AggregateAuditID.
	ID            string     `json:"id"`
	DateTime      Time       `json:"dateTime"`
	Actor         AuditActor `json:"actor"`
	Action        string     `json:"action"`
	Target        string     `json:"target"`
	ClientAddress string     `json:"clientAddress"`
	Result        string     `json:"result"`
	Detail        string     `json:"detail"`
	// Count is how many events an aggregated record (failed sign-ins)
	// stands for; zero on the others.
	Count int `json:"count,omitempty"`
}

// AuditID is the id of a new audit record: its time in milliseconds (hex,
// so ids sort by time), a count of the ids this process made in that
// millisecond, and 64 random bits. The count keeps one node's records in
// the order they happened when several share a millisecond, which a fast
// log write makes common (records of different nodes in one millisecond
// may still sort either way).
func AuditID(at time.Time) string {
	ms := at.UnixMilli()
	auditSeq.Lock()
	if ms != auditSeq.ms {
		auditSeq.ms, auditSeq.n = ms, 0
	} else {
		auditSeq.n++
	}
	n := auditSeq.n
	auditSeq.Unlock()
	return fmt.Sprintf("%016x-%06d%s", uint64(ms), n%1000000, NewSecret(8))
}

var auditSeq struct {
	sync.Mutex
	ms int64
	n  int
}

// AggregateAuditID is the id shared by every event of one kind, actor name
// and address within one minute, so that events counted on different
// nodes merge into one record.
func AggregateAuditID(minute time.Time, action, name, address string) string {
	sum := sha256.Sum256([]byte(action + "\x00" + name + "\x00" + address))
	return fmt.Sprintf("%016x-a%s", uint64(minute.UnixMilli()), base64.RawURLEncoding.EncodeToString(sum[:12]))
}

// AuditIDTime is the time in milliseconds that an audit id starts with;
// false for an id that is not one.
func AuditIDTime(id string) (int64, bool) {
	if len(id) < 17 || id[16] != '-' {
		return 0, false
	}
	var ms uint64
	for i := 0; i < 16; i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9':
			ms = ms<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			ms = ms<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return int64(ms), true
}

// Session is one sign-in of a user as its owner sees it (API.md §2): the
// access and refresh tokens it holds are never shown.
type Session struct {
	ID               string `json:"id"`
	CreatedDateTime  Time   `json:"createdDateTime"`
	LastUsedDateTime Time   `json:"lastUsedDateTime"`
	ClientAddress    string `json:"clientAddress"`
	UserAgent        string `json:"userAgent"`
	// Current marks the session of the token that asked.
	Current bool `json:"current"`
}

// SessionRecord is a session as stored.
type SessionRecord struct {
	Session
	UserID string `json:"userId"`
	// Key is the value every token of the session carries
	// (TokenRecord.Session). The UI's CSRF token derives from it, so it
	// is never shown; ID is a one-way function of it.
	Key string `json:"key"`
	// ExpiresAt is when its newest refresh token expires; the purge
	// forgets the session then.
	ExpiresAt Time `json:"expiresAt"`
}

// SessionID is the public id of the session whose tokens carry key.
func SessionID(key string) string {
	sum := sha256.Sum256([]byte("herald-session-id\x00" + key))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}
