package httpapi

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// feedFilter is the query of GET /me/notifications.
type feedFilter struct {
	readState, actionState, status, host, group, appID string
}

func parseFeedFilter(r *http.Request) (*feedFilter, error) {
	q := r.URL.Query()
	f := &feedFilter{readState: q.Get("readState"), actionState: q.Get("userActionState"),
		status: q.Get("status"), host: strings.ToLower(q.Get("targetHostName")), group: q.Get("groupName")}
	if f.readState != "" {
		p := resource.NotificationPatch{ReadState: &f.readState}
		if err := p.Validate(); err != nil {
			return nil, err
		}
	}
	if f.actionState != "" {
		p := resource.NotificationPatch{UserActionState: &f.actionState}
		if err := p.Validate(); err != nil {
			return nil, err
		}
	}
	switch strings.ToLower(f.status) {
	case "", "active":
		f.status = resource.StatusActive
	case "deleted":
		f.status = resource.StatusDeleted
	case "any":
		f.status = ""
	default:
		return nil, resource.Invalid("status", "status must be active, deleted or any.")
	}
	return f, nil
}

func (f *feedFilter) keep(n *raft.NotificationView) bool {
	return (f.readState == "" || n.ReadState == f.readState) &&
		(f.actionState == "" || n.UserActionState == f.actionState) &&
		(f.status == "" || n.Status == f.status) &&
		(f.host == "" || n.TargetHostName == f.host) &&
		(f.group == "" || n.GroupName == f.group) &&
		(f.appID == "" || n.AppID == f.appID)
}

// name tells filters apart for the store's cache of pages.
func (f *feedFilter) name() string {
	b := []byte("feed")
	for _, v := range []string{f.readState, f.actionState, f.status, f.host, f.group, f.appID} {
		b = strconv.AppendQuote(append(b, ' '), v)
	}
	return string(b)
}

func activeOnly(n *raft.NotificationView) bool { return n.Status == resource.StatusActive }

// unexpired returns the views whose expiry is after nowMs; items is shared
// with the store's cache, so a copy is made only when one goes.
func unexpired(items []*raft.NotificationView, nowMs int64) []*raft.NotificationView {
	for i, v := range items {
		if v.ExpiresMs > nowMs {
			continue
		}
		out := slices.Clone(items[:i])
		for _, v := range items[i+1:] {
			if v.ExpiresMs > nowMs {
				out = append(out, v)
			}
		}
		return out
	}
	return items
}

// listNotifications is the user's feed, newest first, or for an
// application what it sent to the X-UNS-ID's user.
func (s *Server) listNotifications(w http.ResponseWriter, r *http.Request, p *principal) error {
	uid, appID, err := s.target(r, p)
	if err != nil {
		return err
	}
	f, err := parseFeedFilter(r)
	if err != nil {
		return err
	}
	f.appID = appID
	return s.writeFeed(w, r, uid, f)
}

// feedExamined bounds the notifications one page of the feed or of the
// delta's first round reads. A filter that matches few of a large feed
// (?readState=unread over a mostly read one, or the default status=active
// over many tombstones) otherwise walked the whole feed for every page,
// and any user could poll one. A page that reaches it ends short, even
// empty, with a nextLink that goes on after the last notification read
// (docs/API-NOTES.md). Twice the largest $top, so that a page of
// $top=1000 that keeps half of what it reads still fills. Reading 2,000
// cached views took 2.7-5.8 ms here, a full page of $top=1000 1.0-3.7 ms,
// and a whole feed of 10,000 19-103 ms (BENCHMARKS.md, 6 December 2026).
const feedExamined = 2000

// writeFeed answers a page of uid's notifications that f keeps, as
// writePage would, from the notifications' cached encodings.
func (s *Server) writeFeed(w http.ResponseWriter, r *http.Request, uid string, f *feedFilter) error {
	n, err := top(r, 100)
	if err != nil {
		return err
	}
	after, err := skipToken(r)
	if err != nil {
		return err
	}
	if after != "" && !resource.IsNotificationID(after) {
		// The feed continues after a notification's id: the last one a
		// page returned, or the last it read (feedExamined).
		return resource.Invalid("$skiptoken", "$skiptoken is not one this server made.")
	}
	page, err := s.state.NotificationViews(uid, after, n, feedExamined, f.name(), f.keep)
	if err != nil {
		return err
	}
	// Those past their expiry are gone, whether or not the purge took
	// them yet, and so are deleted ones then. Dropped here, not by keep:
	// the store caches pages until a write, and time passes without one.
	page.Items = unexpired(page.Items, time.Now().UnixMilli())
	var next string
	if page.Next != "" {
		next = s.link(r, "$skiptoken", encodeToken(page.Next))
	}
	writeViews(w, page.Items, next, "")
	return nil
}

// Delta tokens. A deltaLink carries "d.<seq>": everything after change seq.
// A nextLink of the first, full enumeration carries "i.<seq>.<lastId>": the
// seq its deltaLink will carry and the id to continue after. A nextLink of
// a delta round carries "d.<seq>" too, the last change it consumed.
//
// They are not signed, and the server made every one of these forms:
// checkSeq holds one written by hand to what the state knows, and an
// enumeration's id must be a notification id (docs/API-NOTES.md, "Delta and the live stream", says why
// there is no key).
type deltaToken struct {
	initial bool
	seq     uint64
	after   string
}

func (t deltaToken) String() string {
	if t.initial {
		return encodeToken("i." + strconv.FormatUint(t.seq, 10) + "." + t.after)
	}
	return encodeToken("d." + strconv.FormatUint(t.seq, 10))
}

func parseDeltaToken(s string) (deltaToken, bool) {
	b, err := decodeToken(s)
	if err != nil {
		return deltaToken{}, false
	}
	parts := strings.SplitN(b, ".", 3)
	seq, err := strconv.ParseUint(safeIndex(parts, 1), 10, 64)
	if err != nil {
		return deltaToken{}, false
	}
	switch {
	case parts[0] == "d" && len(parts) == 2:
		return deltaToken{seq: seq}, true
	case parts[0] == "i" && len(parts) == 3 && resource.IsNotificationID(parts[2]):
		// The enumeration continues after a notification's id, and every
		// id has this one shape: another key would end it early, or start
		// it again, with nothing to tell the client.
		return deltaToken{initial: true, seq: seq, after: parts[2]}, true
	}
	return deltaToken{}, false
}

func safeIndex(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

func resync(msg string) error { return resource.Errorf(resource.CodeResyncRequired, "%s", msg) }

// checkSeq refuses a cursor whose changes were trimmed, or that no node
// handed out. One beyond this replica's last change may come from a node
// further ahead: it is refused only if it is still beyond after a barrier.
func (s *Server) checkSeq(r *http.Request, uid string, seq uint64) error {
	floor, err := s.state.ChangeFloor(uid)
	if err != nil {
		return err
	}
	last, err := s.state.LastSeq()
	if err == nil && seq > last && s.lookAgain(r) {
		last, err = s.state.LastSeq()
	}
	if err != nil {
		return err
	}
	if seq > last && !caughtUp(r) {
		// A cursor beyond this replica, and no word from the leader: it is
		// most likely one another node handed out while this one was cut
		// off or restarting. Telling the client to resync would throw
		// away a valid cursor; it can retry, here or on another node.
		return unavailable("This node is behind the cluster and cannot reach its leader to catch up; "+
			"retry shortly, or on another node.", time.Second)
	}
	if seq < floor || seq > last {
		return resync("The token is too old or unknown; start again without one.")
	}
	lost, err := s.state.LostSeq(seq)
	if err != nil {
		return err
	}
	if lost {
		return resync("The token has seen changes that a restore from a backup took back; start again without one.")
	}
	return nil
}

// delta is GET /me/notifications/delta.
func (s *Server) delta(w http.ResponseWriter, r *http.Request, p *principal) error {
	uid := p.user.ID
	n, err := top(r, 100)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	param := "$deltatoken"
	raw := q.Get(param)
	if raw == "" {
		param = "$skiptoken"
		raw = q.Get(param)
	}
	if raw == "" {
		seq, err := s.state.LastSeq()
		if err != nil {
			return err
		}
		return s.deltaInitial(w, r, uid, deltaToken{initial: true, seq: seq}, n)
	}
	tok, ok := parseDeltaToken(raw)
	if !ok {
		// Not a token of any server: a client error, unlike a well-formed
		// token that is too old or unknown here, which calls for a resync.
		return resource.Invalid(param, "%s is not one this server made; use the link of the last answer, or start again without one.", param)
	}
	if err := s.checkSeq(r, uid, tok.seq); err != nil {
		return err
	}
	if tok.initial {
		// The id is a position in the user's feed, not a reference to
		// a notification that must still be there: the one a real
		// nextLink continues after may have expired and been purged
		// between two pages, or be another application's or a
		// tombstone (a bounded page ends after the last one it read).
		// A token made up by hand can only move the caller within its
		// own feed (docs/API-NOTES.md, "Delta tokens").
		return s.deltaInitial(w, r, uid, tok, n)
	}
	return s.deltaChanges(w, r, uid, tok.seq, n)
}

// deltaInitial pages through every active notification. Whatever changes
// meanwhile has a seq above tok.seq, so the deltaLink round reports it.
func (s *Server) deltaInitial(w http.ResponseWriter, r *http.Request, uid string, tok deltaToken, n int) error {
	page, err := s.state.NotificationViews(uid, tok.after, n, feedExamined, "active", activeOnly)
	if err != nil {
		return err
	}
	page.Items = unexpired(page.Items, time.Now().UnixMilli()) // as the feed (writeFeed)
	if page.Next != "" {
		writeViews(w, page.Items, s.link(r, "$skiptoken", deltaToken{initial: true, seq: tok.seq, after: page.Next}.String()), "")
	} else {
		writeViews(w, page.Items, "", s.link(r, "$deltatoken", deltaToken{seq: tok.seq}.String()))
	}
	return nil
}

// deltaChanges reports what changed after seq: each changed notification
// once, as it is now, or as removed.
func (s *Server) deltaChanges(w http.ResponseWriter, r *http.Request, uid string, seq uint64, n int) error {
	var items [][]byte
	seen := map[string]bool{}
	cursor := seq
	more := false
	for !more {
		changes, err := s.state.ChangeHeads(uid, cursor, 500)
		if err != nil {
			return err
		}
		for _, c := range changes {
			if !seen[c.NotificationID] {
				if len(items) == n {
					more = true
					break
				}
				seen[c.NotificationID] = true
				item, err := s.deltaItem(uid, &c)
				if err != nil {
					return err
				}
				items = append(items, item)
			}
			cursor = c.Seq
		}
		if len(changes) < 500 {
			break
		}
	}
	if more {
		writeRaw(w, items, s.link(r, "$skiptoken", deltaToken{seq: cursor}.String()), "")
	} else {
		writeRaw(w, items, "", s.link(r, "$deltatoken", deltaToken{seq: cursor}.String()))
	}
	return nil
}

// deltaItem is a changed notification's current state, or its removal,
// encoded.
func (s *Server) deltaItem(uid string, c *resource.Change) ([]byte, error) {
	n, ok, err := s.state.NotificationView(uid, c.NotificationID)
	if err != nil {
		return nil, err
	}
	reason := "expired"
	switch {
	case ok && n.Status == resource.StatusActive:
		// One past its expiry is gone, whether or not the purge took it
		// yet, as in the feed (unexpired) and a get by id.
		if n.ExpiresMs > time.Now().UnixMilli() {
			return n.JSON, nil
		}
	case ok || c.Type == resource.ChangeDeleted:
		reason = "deleted"
	}
	return json.Marshal(resource.Removed{ID: c.NotificationID, Removed: resource.RemovedReason{Reason: reason}})
}
