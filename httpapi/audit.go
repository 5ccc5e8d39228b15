package httpapi

// The audit log (API.md §8, docs/API-NOTES.md "Sessions and the audit
// log"). A handler that changes something an admin must be able to account
// for puts a record in the command that makes the change (Command.Audit),
// so the FSM writes both in one transaction on every replica. Failed
// sign-ins change nothing and can come in floods, and applications may take
// a token every few minutes, so each node counts those per (actor, address,
// minute) and proposes the counts once a second at most; the FSM adds the
// counts of every node into one record.

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// Audit actions. Each names what was done; target names to what.
const (
	actSignIn          = "signIn"
	actSignInFailure   = "signInFailure"
	actRefreshFailure  = "refreshFailure"
	actSignOut         = "signOut"
	actSessionRevoke   = "session.revoke"
	actUserCreate      = "user.create"
	actUserUpdate      = "user.update"
	actUserRoles       = "user.rolesChange"
	actUserPassword    = "user.passwordReset"
	actUserEnable      = "user.enable"
	actUserDisable     = "user.disable"
	actUserDelete      = "user.delete"
	actAppCreate       = "application.create"
	actAppUpdate       = "application.update"
	actAppDelete       = "application.delete"
	actAppAddSecret    = "application.addPassword"
	actAppRemoveSecret = "application.removePassword"
	actNodeAdd         = "cluster.addNode"
	actNodeRemove      = "cluster.removeNode"
	actBackup          = "backup.download"
)

const (
	// countFlushDelay is how long a node gathers failed sign-ins before
	// it proposes their counts: one Raft write per second at most, however
	// many guesses arrive.
	countFlushDelay = time.Second
	// maxFailureKeys bounds the (name, address) pairs a node records per
	// minute, and so what a spray of guesses from many addresses can add
	// to the log. Beyond it, new names from an address count under the
	// name "*", and beyond twice it, under address "*" too.
	maxFailureKeys = 1024
	// maxNamesPerAddress bounds the names one address gets records of per
	// minute for failed sign-ins; further names from it count under "*".
	// Without it one address alone, spraying client_ids (which no hash
	// slows), filled maxFailureKeys records a minute: about a gigabyte a
	// day kept for the audit retention, 90 days by default.
	maxNamesPerAddress = 16
	// sessionTouchEvery is how often a session's use is written through
	// Raft: lastUsedDateTime is exact for sign-ins and refreshes, and
	// within this for plain use of an access token.
	sessionTouchEvery = 5 * time.Minute
	// maxAuditText bounds what a record keeps of text a client chose (a
	// user name typed at sign-in, a User-Agent).
	maxAuditText = 256
)

// securityLog is a node's share of the audit log and session upkeep.
type securityLog struct {
	mu     sync.Mutex
	counts map[countKey]int
	armed  bool
	// minute and seen are the minute being counted and its keys; names
	// counts the failed sign-in names of each address among them.
	minute int64
	seen   map[countKey]bool
	names  map[string]int
	// touched is when this node last wrote each session's use; entries
	// older than sessionTouchEvery say nothing (the next use writes
	// anyway) and go at the next sweep, at most one per sessionTouchEvery.
	touched    map[string]time.Time
	touchSweep time.Time
	touchSlots chan struct{} // bounds the touches in flight
}

// countKey is what an aggregated record counts: one action of one actor
// from one address within one minute.
type countKey struct {
	action, actorType, actorID, name, address string
	minute                                    int64 // Unix ms
}

func newSecurityLog() *securityLog {
	return &securityLog{counts: map[countKey]int{}, seen: map[countKey]bool{}, names: map[string]int{}, touched: map[string]time.Time{},
		touchSlots: make(chan struct{}, 4)}
}

// auditNow dates audit records.
func (s *Server) auditNow() time.Time {
	if s.opts.AuditClock != nil {
		return s.opts.AuditClock()
	}
	return time.Now()
}

// remoteIP is the client's address as the audit log and the session list
// show it: the peer's IP, IPv4-mapped addresses as IPv4.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().WithZone("").String()
	}
	return clip(host)
}

// clip bounds client-chosen text and keeps it valid UTF-8.
func clip(s string) string {
	if len(s) > maxAuditText {
		s = s[:maxAuditText]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func clientInfo(r *http.Request) *raft.ClientInfo {
	return &raft.ClientInfo{Address: remoteIP(r), UserAgent: clip(r.UserAgent())}
}

func actorOf(p *principal) resource.AuditActor {
	switch {
	case p.user != nil:
		return resource.AuditActor{Type: resource.ActorUser, ID: p.user.ID, Name: p.user.UserPrincipalName}
	case p.app != nil:
		return resource.AuditActor{Type: resource.ActorApplication, ID: p.app.ID, Name: p.app.DisplayName}
	}
	return resource.AuditActor{Type: resource.ActorSystem}
}

// record is a successful action's audit record (the FSM turns it into a
// failure if the command fails).
func (s *Server) record(r *http.Request, actor resource.AuditActor, action, target, detail string) resource.AuditRecord {
	now := s.auditNow()
	return resource.AuditRecord{ID: resource.AuditID(now), DateTime: resource.At(now), Actor: actor,
		Action: action, Target: target, ClientAddress: remoteIP(r), Result: resource.AuditSuccess, Detail: detail}
}

// audit is the one record of an admin's or user's action.
func (s *Server) audit(r *http.Request, p *principal, action, target, detail string) []resource.AuditRecord {
	return []resource.AuditRecord{s.record(r, actorOf(p), action, target, detail)}
}

// auditAlone writes a record for an action that has no command of its own
// (a backup, a membership change made by the cluster). It is best effort:
// the action is done, and a failure to record it is logged.
func (s *Server) auditAlone(r *http.Request, rec resource.AuditRecord, failed error) {
	if failed != nil {
		rec.Result = resource.AuditFailure
		rec.Detail = strings.TrimPrefix(rec.Detail+"; "+failed.Error(), "; ")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	_, err := s.state.Propose(ctx, &raft.Command{Op: raft.OpAudit, Now: time.Now().UnixNano(),
		Audit: []resource.AuditRecord{rec}})
	switch {
	case resource.CommittedNotApplied(err):
		// The record is written; only this node lags, as a node just
		// removed through its own API does. Not a lost record.
		s.log.Debug("audit record committed; this node has not applied it yet", "action", rec.Action)
	case err != nil:
		s.log.Warn("could not write an audit record", "action", rec.Action, "error", err)
	}
}

// signInAudit is the record of a user's successful sign-in.
func (s *Server) signInAudit(r *http.Request, pid string) []resource.AuditRecord {
	actor := resource.AuditActor{Type: resource.ActorUser, ID: pid}
	detail := "password"
	if u, ok, _ := s.state.User(pid); ok {
		actor.Name = u.UserPrincipalName
	}
	if ua := r.UserAgent(); ua != "" {
		detail += "; " + clip(ua)
	}
	return []resource.AuditRecord{s.record(r, actor, actSignIn, actor.Name, detail)}
}

// signInFailure counts one failed sign-in of name (a user name, or an
// application's client_id) from the request's address.
func (s *Server) signInFailure(r *http.Request, actorType, name string) {
	s.countEvent(r, countKey{action: actSignInFailure, actorType: actorType, name: name})
}

// unknownRefreshToken is the name of a refused refresh token that names
// no one on record: a token never issued, or one gone with its session,
// its user, or its expiry.
const unknownRefreshToken = "(unknown refresh token)"

// refreshRefused counts a refused refresh (rec: the token's record, nil or
// naming no principal when there is none) under its own action, aggregated as failed sign-ins
// are: a refresh token replayed after its rotation's minute, or used after
// its session ended, shows in the audit log with its address. The name is
// the userPrincipalName of the user the token was issued to while the user
// is on record (an application's client id for an application's token),
// so a name tried at a password sign-in cannot pass for one. It does not
// count against the password-guess limits: a refresh token is not guessed.
func (s *Server) refreshRefused(r *http.Request, rec *resource.TokenRecord) {
	actorType, id, name := resource.ActorUser, "", unknownRefreshToken
	switch {
	case rec == nil || rec.PrincipalID == "":
	case rec.PrincipalType == resource.PrincipalApp:
		if a, ok, err := s.state.App(rec.PrincipalID); err == nil && ok {
			actorType, id, name = resource.ActorApplication, a.ID, a.AppID
		}
	default:
		if u, ok, err := s.state.User(rec.PrincipalID); err == nil && ok {
			id, name = u.ID, u.UserPrincipalName
		}
	}
	s.countEvent(r, countKey{action: actRefreshFailure, actorType: actorType, actorID: id, name: name})
}

// appSignIn counts one client-credentials sign-in: services may take a
// token for every few requests, so these are aggregated too.
func (s *Server) appSignIn(r *http.Request, pid string) {
	k := countKey{action: actSignIn, actorType: resource.ActorApplication, actorID: pid}
	if a, ok, _ := s.state.App(pid); ok {
		k.name = a.DisplayName
	}
	s.countEvent(r, k)
}

// countEvent counts one event of an aggregated record.
func (s *Server) countEvent(r *http.Request, k countKey) {
	now := s.auditNow()
	k.name, k.address, k.minute = clip(k.name), remoteIP(r), now.Truncate(time.Minute).UnixMilli()
	l := s.sec
	l.mu.Lock()
	defer l.mu.Unlock()
	if k.minute != l.minute {
		l.minute = k.minute
		clear(l.seen)
		clear(l.names)
	}
	failure := k.action == actSignInFailure
	if !l.seen[k] && (len(l.seen) >= maxFailureKeys || failure && l.names[k.address] >= maxNamesPerAddress) {
		k.name, k.actorID = "*", ""
		if !l.seen[k] && len(l.seen) >= 2*maxFailureKeys {
			k.address = "*"
		}
	}
	if failure && !l.seen[k] && k.name != "*" {
		l.names[k.address]++
	}
	l.seen[k] = true
	l.counts[k]++
	if !l.armed {
		l.armed = true
		time.AfterFunc(countFlushDelay, func() { s.flushCounts(10 * time.Second) })
	}
}

// flushCounts proposes the sign-ins counted since the last flush, giving
// up after wait.
func (s *Server) flushCounts(wait time.Duration) {
	l := s.sec
	l.mu.Lock()
	counts := l.counts
	l.counts, l.armed = map[countKey]int{}, false
	l.mu.Unlock()
	if len(counts) == 0 {
		return
	}
	recs := make([]resource.AuditRecord, 0, len(counts))
	for k, n := range counts {
		minute := time.UnixMilli(k.minute)
		result := resource.AuditFailure
		if k.action == actSignIn {
			result = resource.AuditSuccess
		}
		recs = append(recs, resource.AuditRecord{
			ID:       resource.AggregateAuditID(minute, k.action, k.actorType+"\x00"+k.actorID+"\x00"+k.name, k.address),
			DateTime: resource.At(minute), Actor: resource.AuditActor{Type: k.actorType, ID: k.actorID, Name: k.name},
			Action: k.action, Target: k.name, ClientAddress: k.address, Result: result, Count: n})
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for len(recs) > 0 {
		batch := recs[:min(len(recs), 256)]
		recs = recs[len(batch):]
		if _, err := s.state.Propose(ctx, &raft.Command{Op: raft.OpAudit, Now: time.Now().UnixNano(), Audit: batch}); err != nil {
			s.log.Warn("could not record counted sign-ins in the audit log", "records", len(batch)+len(recs), "error", err)
			return
		}
	}
}

// touchSession writes that a session was used, at most once per
// sessionTouchEvery per node, off the request's path.
func (s *Server) touchSession(r *http.Request, uid, key string) {
	now := s.tokenNow()
	l := s.sec
	l.mu.Lock()
	if last, ok := l.touched[key]; ok && now.Sub(last) < sessionTouchEvery {
		l.mu.Unlock()
		return
	}
	l.noteTouch(key, now)
	l.mu.Unlock()
	select {
	case l.touchSlots <- struct{}{}:
	default:
		return // busy: the next use tries again
	}
	cmd := &raft.Command{Op: raft.OpTouchSession, Now: now.UnixNano(), UserID: uid, ID: resource.SessionID(key),
		Client: clientInfo(r)}
	go func() {
		defer func() { <-l.touchSlots }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.state.Propose(ctx, cmd); err != nil {
			s.log.Debug("could not note a session's use", "error", err)
		}
	}()
}

// sessionStarted notes a sign-in or refresh, which wrote the session's use
// already.
func (s *Server) sessionStarted(key string) {
	s.sec.mu.Lock()
	s.sec.noteTouch(key, s.tokenNow())
	s.sec.mu.Unlock()
}

// maxTouched bounds the sessions touched holds between sweeps.
const maxTouched = 100_000

// noteTouch records that key's use was written at now (l.mu is held).
// Every sessionTouchEvery it drops the entries that have aged past it:
// without that, each session a node ever saw stayed in the map (a
// sign-in or refresh adds one, and the bound below was checked only
// when a use found no fresh entry), so it grew with the node's history
// of sign-ins rather than with the sessions in use.
func (l *securityLog) noteTouch(key string, now time.Time) {
	if now.Sub(l.touchSweep) >= sessionTouchEvery {
		l.touchSweep = now
		for k, t := range l.touched {
			if now.Sub(t) >= sessionTouchEvery {
				delete(l.touched, k)
			}
		}
	}
	if len(l.touched) >= maxTouched {
		clear(l.touched)
	}
	l.touched[key] = now
}

// auditLog is GET /v1.0/admin/auditLog: newest first, paged, filtered by
// actor (id or name), action and since.
func (s *Server) auditLog(w http.ResponseWriter, r *http.Request, p *principal) error {
	n, err := top(r, 100)
	if err != nil {
		return err
	}
	after, err := skipToken(r)
	if err != nil {
		return err
	}
	if _, ok := resource.AuditIDTime(after); after != "" && !ok {
		return resource.Invalid("$skiptoken", "$skiptoken is not one this server made.")
	}
	q := r.URL.Query()
	aq := raft.AuditQuery{After: after, Limit: n}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return resource.Invalid("since", "since must be an RFC 3339 time, such as 2026-11-27T09:30:00.000Z.")
		}
		aq.Since = t
	}
	actor, action := q.Get("actor"), q.Get("action")
	for name, v := range map[string]string{"actor": actor, "action": action} {
		if len(v) > maxAuditText || !utf8.ValidString(v) {
			return resource.Invalid(name, "%s must be at most %d bytes of UTF-8.", name, maxAuditText)
		}
	}
	if actor != "" || action != "" {
		aq.Keep = func(rec *resource.AuditRecord) bool {
			return (actor == "" || rec.Actor.ID == actor || strings.EqualFold(rec.Actor.Name, actor)) &&
				(action == "" || rec.Action == action)
		}
	}
	page, err := s.state.AuditLog(aq)
	if err != nil {
		return err
	}
	out := collection{Value: views(page.Items, func(r *resource.AuditRecord) resource.AuditRecord { return *r })}
	if page.Next != "" {
		out.NextLink = s.link(r, "$skiptoken", encodeToken(page.Next))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
