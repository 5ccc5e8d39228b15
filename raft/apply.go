package raft

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/herald-notify/herald/resource"
)

// Result is what one command returns to the proposer: a value or a client
// error (a *resource.Error).
type Result struct {
	Value any
	Err   error
}

func ok(v any) Result                 { return Result{Value: v} }
func fail(err *resource.Error) Result { return Result{Err: err} }

// counters are per-user totals kept for quotas.
type counters struct {
	Notifications int `json:"n"`
}

func (t *tx) counters(uid string) counters {
	if c, ok := t.ac.counters[uid]; ok {
		return c
	}
	var c counters
	t.getJSON(countersKey(uid), &c)
	bounded(t.ac.counters)[uid] = c
	return c
}

func (t *tx) addNotifications(uid string, dn int) {
	c := t.counters(uid)
	c.Notifications += dn
	t.setJSON(countersKey(uid), c) // drops the cached counters
	bounded(t.ac.counters)[uid] = c
}

// apply applies c and writes its audit records, which say whether it
// failed.
func (t *tx) apply(c *Command) Result {
	r := t.applyOp(c)
	if len(c.Audit) > 0 {
		t.writeAudit(c.Audit, r.Err)
	}
	return r
}

func (t *tx) applyOp(c *Command) Result {
	if err := c.check(); err != nil {
		return fail(err)
	}
	switch c.Op {
	case OpBootstrapAdmin:
		if len(t.keys([]byte("u/"), 1)) > 0 {
			return fail(resource.Errorf(resource.CodeNameExists, "Users exist already."))
		}
		return t.createUser(c.User)
	case OpCreateUser:
		return t.createUser(c.User)
	case OpUpdateUser:
		return t.updateUser(c)
	case OpDeleteUser:
		return t.deleteUser(c.UserID)
	case OpCreateApp:
		return t.createApp(c.App)
	case OpUpdateApp:
		return t.updateApp(c)
	case OpDeleteApp:
		return t.deleteApp(c.AppID)
	case OpAddPassword:
		return t.addPassword(c)
	case OpRemovePassword:
		return t.removePassword(c)
	case OpIssueTokens:
		return t.issueTokens(c)
	case OpRevokeSession:
		return t.revokeSession(c)
	case OpTouchSession:
		return t.touchSession(c)
	case OpAudit:
		return ok(nil) // the records are written by apply
	case OpCreateSub:
		return t.createSub(c)
	case OpUpdateSub:
		return t.updateSub(c)
	case OpDeleteSub:
		return t.deleteSub(c.UserID, c.ID)
	case OpSend:
		return t.send(c)
	case OpPatchNotif:
		return t.patchNotif(c)
	case OpDeleteNotif:
		return t.deleteNotif(c)
	case OpDeleteNotifsBy:
		return t.deleteNotifsBy(c)
	case OpPurge:
		return t.purge(c)
	case OpDeliveryOutcomes:
		return t.deliveryOutcomes(c)
	case OpSetNode:
		t.setJSON(nodeKey(c.Node.ID), c.Node)
		return ok(nil)
	case OpRemoveNode:
		if !t.exists(nodeKey(c.ID)) {
			return fail(resource.NotFound("node"))
		}
		t.del(nodeKey(c.ID))
		return ok(nil)
	case OpSetSlots:
		t.setJSON([]byte(keySlots), c.Slots)
		return ok(nil)
	case OpSetRules:
		return t.setRules(c)
	case OpSetVAPID:
		if !t.exists([]byte(keyVAPID)) {
			t.set([]byte(keyVAPID), c.VAPID)
		}
		v, _ := t.get([]byte(keyVAPID))
		return ok(v)
	}
	return fail(resource.Errorf(resource.CodeInvalidRequest, "unknown command %q", c.Op))
}

// ---- users

func (t *tx) createUser(u *resource.UserRecord) Result {
	if t.exists(upnKey(u.UserPrincipalName)) {
		return fail(&resource.Error{Code: resource.CodeNameExists, Target: "userPrincipalName",
			Message: "Another user has the userPrincipalName " + u.UserPrincipalName + "."})
	}
	t.setJSON(userKey(u.ID), u)
	t.set(upnKey(u.UserPrincipalName), []byte(u.ID))
	return ok(u.User)
}

func (t *tx) updateUser(c *Command) Result {
	var u resource.UserRecord
	if !t.getJSON(userKey(c.UserID), &u) {
		return fail(resource.NotFound("user"))
	}
	p := c.UserPatch
	if p.DisplayName != nil {
		u.DisplayName = *p.DisplayName
	}
	if p.Roles != nil {
		u.Roles = p.Roles
	}
	if p.AccountEnabled != nil {
		u.AccountEnabled = *p.AccountEnabled
	}
	if p.PasswordHash != nil {
		u.PasswordHash = *p.PasswordHash
		// A new password ends every session the old one opened.
		t.deleteTokensOf(u.ID)
	}
	if !u.AccountEnabled {
		t.deleteTokensOf(u.ID)
	}
	t.setJSON(userKey(u.ID), u)
	return ok(u.User)
}

func (t *tx) deleteUser(uid string) Result {
	var u resource.UserRecord
	if !t.getJSON(userKey(uid), &u) {
		return fail(resource.NotFound("user"))
	}
	t.deleteTokensOf(uid)
	t.eachKey([]byte("us/"+uid+"/"), func(k []byte) {
		t.deleteSub(uid, string(k[len("us/"+uid+"/"):]))
	})
	// Notifications and their appNotificationId index go by the user's
	// prefix, without reading them; their expiry index, ordered by time,
	// is left to the purge, which passes over what is gone.
	t.eachKey(notifPrefix(uid), t.del)
	t.eachKey(appNotifPrefix(uid), t.del)
	// The delivery records and their pending index go by the user's
	// prefix, not notification by notification: each prefix scan in a
	// write transaction sorts its pending writes, and one per notification
	// made deleting a user with 50,000 notifications take over a minute.
	t.eachKey(userDeliveryPrefix(uid), t.del)
	t.eachKey(userPendingPrefix(uid), t.del)
	t.eachKey(changePrefix(uid), t.del)
	t.del(changeTrimKey(uid))
	t.del(countersKey(uid))
	t.del(upnKey(u.UserPrincipalName))
	if t.indexesSessions() {
		// deleteTokensOf took the index with the tokens; this takes what
		// else is left.
		t.eachKey(principalSessionTokenPrefix(uid), t.del)
		t.del(sessionIndexedKey(uid))
	}
	t.del(userKey(uid))
	return ok(nil)
}

func (t *tx) deleteTokensOf(principal string) {
	t.deleteSessionsOf(principal) // none for an application
	prefix := "pt/" + principal + "/"
	for _, k := range t.keys([]byte(prefix), 0) {
		t.stepDone() // a token at a time; those gone are passed over
		h := string(k[len(prefix):])
		var r resource.TokenRecord
		if t.getJSON(tokenKey(h), &r) {
			t.delToken(h, &r)
		} else {
			t.del(k)
		}
	}
}

// ---- applications

func (t *tx) createApp(a *resource.ApplicationRecord) Result {
	if t.exists(hostKey(a.TargetHostName)) {
		return fail(&resource.Error{Code: resource.CodeNameExists, Target: "targetHostName",
			Message: "Another application has the targetHostName " + a.TargetHostName + "."})
	}
	t.setJSON(appKey(a.ID), a)
	t.set(appIDKey(a.AppID), []byte(a.ID))
	t.set(hostKey(a.TargetHostName), []byte(a.ID))
	return ok(*a)
}

func (t *tx) updateApp(c *Command) Result {
	var a resource.ApplicationRecord
	if !t.getJSON(appKey(c.AppID), &a) {
		return fail(resource.NotFound("application"))
	}
	if c.App.DisplayName != "" {
		a.DisplayName = c.App.DisplayName
	}
	t.setJSON(appKey(a.ID), a)
	return ok(a)
}

func (t *tx) deleteApp(aid string) Result {
	var a resource.ApplicationRecord
	if !t.getJSON(appKey(aid), &a) {
		return fail(resource.NotFound("application"))
	}
	t.deleteTokensOf(aid)
	prefix := "as/" + aid + "/"
	for _, k := range t.keys([]byte(prefix), 0) {
		t.stepDone() // a subscription at a time; those gone are passed over
		var s resource.SubscriptionRecord
		if t.getJSON(subKey(string(k[len(prefix):])), &s) {
			t.deleteSub(s.UserID, s.ID)
		}
		t.del(k)
	}
	t.del(appIDKey(a.AppID))
	t.del(hostKey(a.TargetHostName))
	t.del(appKey(aid))
	return ok(nil)
}

func (t *tx) addPassword(c *Command) Result {
	var a resource.ApplicationRecord
	if !t.getJSON(appKey(c.AppID), &a) {
		return fail(resource.NotFound("application"))
	}
	if len(a.Credentials) >= 20 {
		return fail(resource.Errorf(resource.CodeQuotaReached, "An application may hold at most 20 secrets."))
	}
	a.Credentials = append(a.Credentials, *c.Credential)
	t.setJSON(appKey(a.ID), a)
	return ok(c.Credential.PasswordCredential)
}

func (t *tx) removePassword(c *Command) Result {
	var a resource.ApplicationRecord
	if !t.getJSON(appKey(c.AppID), &a) {
		return fail(resource.NotFound("application"))
	}
	for i, cr := range a.Credentials {
		if cr.KeyID == c.ID {
			a.Credentials = append(a.Credentials[:i], a.Credentials[i+1:]...)
			t.setJSON(appKey(a.ID), a)
			return ok(nil)
		}
	}
	return fail(resource.NotFound("password credential"))
}

// ---- tokens

// RefreshReuseGrace is how long a rotated refresh token still works (from
// rules level 2): a client whose refresh answer was lost (a mobile network,
// a tab closed mid-request) retries with the token it has, and gets new
// tokens again instead of losing its sign-in. The grace ends early once a
// token the rotation made is used: the client has its answer. A copy used
// within it gets tokens too, as any grace allows; kept longer, to tell
// later copies from unknown tokens, used tokens would pile up for their
// fourteen days at every refresh, and ending a session scans them all.
const RefreshReuseGrace = time.Minute

func (t *tx) issueTokens(c *Command) Result {
	var old resource.TokenRecord
	now := time.Unix(0, c.Now)
	if c.ConsumeHash != "" {
		if !t.getJSON(tokenKey(c.ConsumeHash), &old) || old.Kind != resource.TokenRefresh ||
			!now.Before(old.ExpiresAt.Time) {
			return fail(resource.Errorf("invalid_grant", "The refresh token is invalid, expired or already used."))
		}
	}
	for _, g := range c.Tokens {
		switch g.Record.PrincipalType {
		case resource.PrincipalUser:
			var u resource.UserRecord
			if !t.getJSON(userKey(g.Record.PrincipalID), &u) || !u.AccountEnabled {
				return fail(resource.Errorf("invalid_grant", "The user does not exist or is disabled."))
			}
		case resource.PrincipalApp:
			if !t.exists(appKey(g.Record.PrincipalID)) {
				return fail(resource.Errorf("invalid_client", "The application does not exist."))
			}
		}
	}
	// Every check is done: only now consume the refresh token (used up,
	// not revoked: no stream holds a refresh token). From level 2 it stays
	// for its grace, and the token it was rotated from goes at its first
	// use, if still there.
	level := t.rules()
	rotatedWithGrace := c.ConsumeHash != "" && level >= 2
	indexed := level >= TokenSessionIndexLevel
	switch {
	case c.ConsumeHash == "":
	case !rotatedWithGrace:
		t.dropToken(c.ConsumeHash, &old)
	case old.UsedAt.IsZero():
		var parent resource.TokenRecord
		if old.Parent != "" && t.getJSON(tokenKey(old.Parent), &parent) {
			t.dropToken(old.Parent, &parent)
		}
		t.del(tokenExpiryKey(old.ExpiresAt.UnixMilli(), c.ConsumeHash))
		old.UsedAt = resource.At(now)
		if end := resource.At(now.Add(RefreshReuseGrace)); end.Before(old.ExpiresAt.Time) {
			old.ExpiresAt = end
		}
		t.setJSON(tokenKey(c.ConsumeHash), old)
		t.set(tokenExpiryKey(old.ExpiresAt.UnixMilli(), c.ConsumeHash), tokenExpiryValue(&old, indexed))
	}
	// Tokens carry no Badger TTL: Badger would hide them by this node's
	// clock, and Apply must not depend on a clock. The purge removes them
	// by the command's time instead.
	for _, g := range c.Tokens {
		if g.Record.Session != "" && g.Record.PrincipalType == resource.PrincipalUser && g.Record.Kind == resource.TokenRefresh {
			t.putSession(c, g)
		}
		rec := g.Record
		if rotatedWithGrace && rec.Kind == resource.TokenRefresh {
			rec.Parent = c.ConsumeHash
		}
		t.setJSON(tokenKey(g.Hash), rec)
		t.set(ownerTokenKey(g.Record.PrincipalID, g.Hash), nil)
		t.set(tokenExpiryKey(g.Record.ExpiresAt.UnixMilli(), g.Hash), tokenExpiryValue(&rec, indexed))
		if indexed && rec.Session != "" {
			t.set(sessionTokenKey(rec.PrincipalID, resource.SessionID(rec.Session), g.Hash), nil)
		}
	}
	return ok(nil)
}

// delToken removes a token and its indexes, and has its principal's live
// streams look their tokens up again (FSM.onRevoked).
func (t *tx) delToken(hash string, r *resource.TokenRecord) {
	if n := len(t.revoked); n == 0 || t.revoked[n-1] != r.PrincipalID {
		t.revoked = append(t.revoked, r.PrincipalID)
	}
	t.dropToken(hash, r)
}

// dropToken removes a token and its indexes without telling the streams.
func (t *tx) dropToken(hash string, r *resource.TokenRecord) {
	t.del(tokenKey(hash))
	t.del(ownerTokenKey(r.PrincipalID, hash))
	t.del(tokenExpiryKey(r.ExpiresAt.UnixMilli(), hash))
	if r.Session != "" && t.indexesSessions() {
		t.del(sessionTokenKey(r.PrincipalID, resource.SessionID(r.Session), hash))
	}
}

// revokeSession deletes the tokens of one sign-in session of a user, named
// by its key (Session: the web UI's sign-out) or by its public id (ID: the
// sessions API, which answers 404 for a session it does not know).
func (t *tx) revokeSession(c *Command) Result {
	key := c.Session
	if key == "" {
		var s resource.SessionRecord
		if c.ID == "" || !t.getJSON(sessionKey(c.UserID, c.ID), &s) {
			return fail(resource.NotFound("session"))
		}
		key = s.Key
	}
	if t.indexesSessions() {
		// The tokens first: their deletion may be cut in parts, and a
		// replay, which begins the command again, finds the session by
		// its record.
		t.delIndexedSessionTokens(c.UserID, key)
		var s resource.SessionRecord
		if t.getJSON(sessionKey(c.UserID, resource.SessionID(key)), &s) {
			t.delSession(&s)
		}
		return ok(nil)
	}
	var s resource.SessionRecord
	if t.getJSON(sessionKey(c.UserID, resource.SessionID(key)), &s) {
		t.delSession(&s)
	}
	t.delSessionTokens(c.UserID, key)
	return ok(nil)
}

// endSession deletes a session's record and its tokens.
func (t *tx) endSession(s *resource.SessionRecord) {
	if t.indexesSessions() {
		t.delIndexedSessionTokens(s.UserID, s.Key) // before the record, as in revokeSession
		t.delSession(s)
		return
	}
	t.delSession(s)
	t.delSessionTokens(s.UserID, s.Key)
}

// delSessionTokens deletes uid's tokens of the session whose key is key,
// reading every token of uid (below TokenSessionIndexLevel).
func (t *tx) delSessionTokens(uid, key string) {
	prefix := "pt/" + uid + "/"
	for _, k := range t.keys([]byte(prefix), 0) {
		h := string(k[len(prefix):])
		var r resource.TokenRecord
		if testReadToken != nil {
			testReadToken()
		}
		if t.getJSON(tokenKey(h), &r) && r.Session == key {
			t.delToken(h, &r)
		}
	}
}

// ---- subscriptions

func (t *tx) createSub(c *Command) Result {
	s := c.Sub
	if !t.exists(userKey(s.UserID)) {
		return fail(resource.NotFound("user"))
	}
	if !t.exists(appKey(s.AppID)) {
		return fail(resource.Invalid("targetHostName", "No application is registered for %s.", s.TargetHostName))
	}
	if c.MaxItems > 0 {
		// Only active subscriptions count: a browser that re-subscribes
		// after its old one expired or was disabled must not hit the quota.
		// But the others are kept until the purge, thirty days after they
		// expire, and each is read here and by every send to the user: from
		// level 3 they are bounded too, else one that expires a second after
		// its creation makes room for the next, without end.
		subs := t.userSubs(s.UserID)
		if held := HeldSubsFactor * c.MaxItems; t.rules() >= 3 && len(subs) >= held {
			return fail(resource.Errorf(resource.CodeQuotaReached,
				"The user holds the most subscriptions allowed (%d), expired and disabled ones included until they are purged; delete some.", held))
		}
		if activeSubs(subs, time.Unix(0, c.Now)) >= c.MaxItems {
			return fail(resource.Errorf(resource.CodeQuotaReached, "The user has the most active subscriptions allowed (%d).", c.MaxItems))
		}
	}
	if s.Channel.Type == resource.ChannelWebPush {
		// A push endpoint belongs to one browser profile. Registered again
		// (by another user of a shared browser, or after a lost record),
		// the newest registration wins, so no one else's notifications
		// keep arriving there.
		if old, found := t.get(endpointKey(s.Channel.Endpoint)); found {
			var o resource.SubscriptionRecord
			if t.getJSON(subKey(string(old)), &o) {
				t.deleteSub(o.UserID, o.ID)
			}
		}
		t.set(endpointKey(s.Channel.Endpoint), []byte(s.ID))
	}
	t.putSub(s)
	t.set(subExpiryKey(s.ExpirationDateTime.UnixMilli(), s.ID), nil)
	t.set(userSubKey(s.UserID, s.ID), nil)
	t.set(appSubKey(s.AppID, s.ID), nil)
	return ok(*s)
}

func (t *tx) updateSub(c *Command) Result {
	var s resource.SubscriptionRecord
	if !t.getJSON(subKey(c.ID), &s) || s.UserID != c.UserID {
		return fail(resource.NotFound("subscription"))
	}
	if c.SubPatch.DeviceName != nil {
		s.DeviceName = *c.SubPatch.DeviceName
	}
	if c.SubPatch.ExpirationDateTime != nil {
		// A renewal brings an expired subscription back, so it counts
		// toward the quota as a creation does (level 3): else subscriptions
		// created to expire at once could all be renewed, past any quota.
		if now := time.Unix(0, c.Now); c.MaxItems > 0 && t.rules() >= 3 && s.Status != resource.SubDisabled &&
			!s.ActiveAt(now) && activeSubs(t.userSubs(s.UserID), now) >= c.MaxItems {
			return fail(resource.Errorf(resource.CodeQuotaReached, "The user has the most active subscriptions allowed (%d).", c.MaxItems))
		}
		t.del(subExpiryKey(s.ExpirationDateTime.UnixMilli(), s.ID))
		s.ExpirationDateTime = *c.SubPatch.ExpirationDateTime
		t.set(subExpiryKey(s.ExpirationDateTime.UnixMilli(), s.ID), nil)
		if s.Status == resource.SubExpired {
			s.Status = resource.SubActive
			s.StatusReason = nil
		}
	}
	t.putSub(&s)
	return ok(s)
}

// HeldSubsFactor times the active quota is how many subscriptions a user may
// hold in all (rules level 3).
const HeldSubsFactor = 10

func activeSubs(subs []resource.SubscriptionRecord, now time.Time) int {
	n := 0
	for _, x := range subs {
		if x.ActiveAt(now) {
			n++
		}
	}
	return n
}

func (t *tx) deleteSub(uid, sid string) Result {
	var s resource.SubscriptionRecord
	if !t.getJSON(subKey(sid), &s) || s.UserID != uid {
		return fail(resource.NotFound("subscription"))
	}
	if s.Channel.Type == resource.ChannelWebPush {
		if cur, found := t.get(endpointKey(s.Channel.Endpoint)); found && string(cur) == sid {
			t.del(endpointKey(s.Channel.Endpoint))
		}
	}
	t.del(subKey(sid))
	t.del(subExpiryKey(s.ExpirationDateTime.UnixMilli(), sid))
	t.del(userSubKey(uid, sid))
	t.del(appSubKey(s.AppID, sid))
	return ok(nil)
}

// ---- notifications

// record appends a change to the user's log and queues it for the live hub.
// It stores n (unless it expired) with the change's seq, so a device that
// fetches n can say which change it saw.
func (t *tx) record(now int64, typ string, n *resource.NotificationRecord) (data []byte) {
	if typ != resource.ChangeCreated {
		t.keepChangeData(n.UserID, n.ID)
	}
	t.seq++
	n.Seq = t.seq
	ch := resource.Change{Seq: t.seq, UserID: n.UserID, Type: typ, NotificationID: n.ID,
		TargetHostName: n.TargetHostName, PlatformTypes: n.TargetPolicy.PlatformTypes}
	var err error
	if typ == resource.ChangeCreated || typ == resource.ChangeUpdated {
		ch.Data = appendNotification(make([]byte, 0, notificationSize(&n.Notification)), &n.Notification)
	} else {
		reason := resource.ChangeDeleted
		if typ == resource.ChangeExpired {
			reason = resource.ChangeExpired
		}
		ch.Data, err = json.Marshal(resource.Removed{ID: n.ID, Removed: resource.RemovedReason{Reason: reason}})
	}
	t.must(err)
	key := changeKey(n.UserID, t.seq)
	if typ == resource.ChangeCreated || typ == resource.ChangeUpdated {
		// Stored without its data while the notification's record holds
		// it (Store.Changes reads it there, keepChangeData writes it in
		// when the record changes): a second copy of every notification
		// was two fifths of what compactions rewrote. Its key holds the
		// user and the seq.
		t.set(key, encodeStoredChange(&storedChange{Type: ch.Type, NotificationID: ch.NotificationID,
			TargetHostName: ch.TargetHostName, PlatformTypes: ch.PlatformTypes}))
	} else {
		t.set(key, encodeChange(&ch))
	}
	t.groupChange(now/int64(time.Millisecond), n.UserID, t.seq)
	t.changes = append(t.changes, ch)
	if typ != resource.ChangeExpired {
		t.fanout(now, n, typ) // before n is stored: it records live deliveries in n
	}
	switch typ {
	case resource.ChangeCreated, resource.ChangeUpdated:
		t.set(notifKey(n.UserID, n.ID), encodeRecord(ch.Data, n))
	case resource.ChangeDeleted:
		t.putNotif(n)
	}
	return ch.Data
}

// keepChangeData writes the notification into the change its record
// stands for, before the record changes or goes: a created or updated
// change is stored without it while the record holds it, and a replay
// shows every change as it was.
func (t *tx) keepChangeData(uid, nid string) {
	b, found := t.get(notifKey(uid, nid))
	if !found {
		return
	}
	// The view is what Store.Changes answers for the change meanwhile.
	old, err := newNotificationView(b)
	if err != nil {
		panic(storageFailure{fmt.Errorf("decode notification %s/%s: %w", uid, nid, err)})
	}
	if old.Seq == 0 {
		return // a record older than the change log
	}
	key := changeKey(uid, old.Seq)
	v, found := t.get(key)
	if !found {
		return // trimmed
	}
	var ch resource.Change
	if err := json.Unmarshal(v, &ch); err != nil {
		panic(storageFailure{fmt.Errorf("decode change %q: %w", key, err)})
	}
	if len(ch.Data) != 0 {
		return // stored whole
	}
	ch.Seq, ch.UserID, ch.Data = old.Seq, uid, old.JSON
	t.set(key, encodeChange(&ch))
}

// storedChange is a created or updated change as the log stores it
// (Store.Changes reads it back as a resource.Change).
type storedChange struct {
	Type           string   `json:"type"`
	NotificationID string   `json:"notificationId"`
	TargetHostName string   `json:"targetHostName"`
	PlatformTypes  []string `json:"platformTypes,omitempty"`
}

func (t *tx) putNotif(n *resource.NotificationRecord) {
	t.setJSON(notifKey(n.UserID, n.ID), n)
}

func (t *tx) send(c *Command) Result {
	n := c.Notif
	if !t.userExists(n.UserID) {
		return fail(resource.NotFound("user"))
	}
	if n.AppNotificationID != "" {
		if id, found := t.get(appNotifKey(n.UserID, n.AppID, n.AppNotificationID)); found {
			var old resource.NotificationRecord
			if t.getJSON(notifKey(n.UserID, string(id)), &old) {
				if t.rules() < 1 || !expiredBy(&old, c.Now) {
					return t.replace(c, &old)
				}
				// Past its expiry but not purged yet: it goes as the
				// purge would take it, and this send is a new one,
				// not its revival under the same id.
				t.expire(c.Now, c.Now/int64(time.Millisecond), n.UserID, string(id))
			}
		}
	}
	if c.MaxItems > 0 && t.counters(n.UserID).Notifications >= c.MaxItems {
		return fail(resource.Errorf(resource.CodeQuotaReached,
			"The user has the most active notifications allowed (%d); delete some or let them expire.", c.MaxItems))
	}
	t.groupExpiry(n.ExpirationDateTime.UnixMilli(), n.UserID, n.ID)
	if n.AppNotificationID != "" {
		t.set(appNotifKey(n.UserID, n.AppID, n.AppNotificationID), []byte(n.ID))
	}
	t.addNotifications(n.UserID, 1)
	n.LiveTargets = nil // the FSM's alone to write
	data := t.record(c.Now, resource.ChangeCreated, n)
	return ok(SendResult{Notification: n.Notification, Created: true, Encoded: data})
}

// replace gives an earlier notification new content and keeps its id and
// creation time; the new content is unread again.
func (t *tx) replace(c *Command, old *resource.NotificationRecord) Result {
	n := c.Notif
	n.ID = old.ID
	n.CreatedDateTime = old.CreatedDateTime
	n.LiveTargets = old.LiveTargets // the new content goes to the same deliveries
	// Indexed again by its new expiry: the purge passes over the old
	// index, which may be a group's, once it finds the notification not
	// due then.
	t.groupExpiry(n.ExpirationDateTime.UnixMilli(), n.UserID, n.ID)
	data := t.record(c.Now, resource.ChangeUpdated, n)
	return ok(SendResult{Notification: n.Notification, Encoded: data})
}

// expiredBy reports whether n's expirationDateTime has come by now (Unix
// nanoseconds, the command's time): the purge's rule (expire).
func expiredBy(n *resource.NotificationRecord, now int64) bool {
	return n.ExpirationDateTime.UnixMilli() <= now/int64(time.Millisecond)
}

func (t *tx) patchNotif(c *Command) Result {
	var n resource.NotificationRecord
	// One past its expiry is gone, whether or not the purge took it yet:
	// a change to it would go out to the devices again.
	if !t.getJSON(notifKey(c.UserID, c.ID), &n) || n.Status != resource.StatusActive || t.rules() >= 1 && expiredBy(&n, c.Now) {
		return fail(resource.NotFound("notification"))
	}
	p := c.NotifPatch
	changed := false
	if p.ReadState != nil && *p.ReadState != n.ReadState {
		n.ReadState, changed = *p.ReadState, true
	}
	if p.UserActionState != nil && *p.UserActionState != n.UserActionState {
		n.UserActionState, changed = *p.UserActionState, true
	}
	if changed {
		n.LastModifiedDateTime = resource.At(time.Unix(0, c.Now))
		t.record(c.Now, resource.ChangeUpdated, &n)
	}
	return ok(n.Notification)
}

// markDeleted turns a notification into a tombstone that stays until it
// expires. Deleting a tombstone again changes nothing.
func (t *tx) markDeleted(now int64, n *resource.NotificationRecord) {
	if n.Status == resource.StatusDeleted {
		return
	}
	n.Status = resource.StatusDeleted
	n.LastModifiedDateTime = resource.At(time.Unix(0, now))
	if t.rules() >= ContentlessTombstoneLevel {
		// The tombstone keeps what a feed of deleted notifications, a
		// delta and the purge need, not what the notification said: it
		// stays until the notification expires, up to 30 days, and
		// tombstones count toward no quota, so a sender that deletes what
		// it sends would otherwise fill the disk at its rate limit. The
		// change log keeps its copy (record, keepChangeData) for the
		// log's retention, so that a replay shows each change as it was.
		n.Payload, n.FallbackPolicy = resource.Payload{}, nil
	}
	if n.AppNotificationID != "" {
		t.del(appNotifKey(n.UserID, n.AppID, n.AppNotificationID))
	}
	t.addNotifications(n.UserID, -1)
	t.record(now, resource.ChangeDeleted, n)
}

func (t *tx) deleteNotif(c *Command) Result {
	var n resource.NotificationRecord
	if !t.getJSON(notifKey(c.UserID, c.ID), &n) || (c.AppID != "" && n.AppID != c.AppID) {
		return fail(resource.NotFound("notification"))
	}
	t.markDeleted(c.Now, &n)
	return ok(nil)
}

func (t *tx) deleteNotifsBy(c *Command) Result {
	if c.AppNotifID != "" {
		if id, found := t.get(appNotifKey(c.UserID, c.AppID, c.AppNotifID)); found {
			var n resource.NotificationRecord
			if t.getJSON(notifKey(c.UserID, string(id)), &n) {
				t.markDeleted(c.Now, &n)
			}
		}
		return ok(nil)
	}
	for _, k := range t.keys(notifPrefix(c.UserID), 0) {
		var n resource.NotificationRecord
		if t.getJSON(k, &n) && n.AppID == c.AppID && n.GroupName == c.GroupName {
			t.stepDone() // one deleted already is passed over (markDeleted)
			t.markDeleted(c.Now, &n)
		}
	}
	return ok(nil)
}

// expire removes a notification that an expiry index due by nowMs names,
// and returns 1, or 0 when it is gone already (its user was deleted, or it
// expired by another index) or is not due: a replace indexed it again by a
// later expiry.
func (t *tx) expire(now, nowMs int64, uid, nid string) int {
	var n resource.NotificationRecord
	if !t.getJSON(notifKey(uid, nid), &n) || n.ExpirationDateTime.UnixMilli() > nowMs {
		return 0
	}
	if n.Status == resource.StatusActive {
		t.addNotifications(n.UserID, -1)
		t.record(now, resource.ChangeExpired, &n)
	}
	if n.AppNotificationID != "" {
		t.del(appNotifKey(n.UserID, n.AppID, n.AppNotificationID))
	}
	t.deleteDeliveries(n.UserID, n.ID)
	t.del(notifKey(n.UserID, n.ID))
	return 1
}

// trimChange drops a change from the log and raises its user's trim floor
// to it; it returns 1 when the user still exists, 0 when only the change
// was left of a deleted user.
func (t *tx) trimChange(uid string, seq uint64) int {
	t.del(changeKey(uid, seq))
	if !t.exists(userKey(uid)) {
		return 0
	}
	if prev, found := t.get(changeTrimKey(uid)); !found || getUint64(prev) < seq {
		t.set(changeTrimKey(uid), putUint64(seq))
	}
	return 1
}

// purge removes notifications whose expirationDateTime has passed and trims
// change-log entries older than the retention, at most MaxItems of each.
// It reads only the time-ordered indexes, so its cost follows what is due.
//
// A long purge is cut in parts between index keys (parts.go); a replay
// resumes it at the phase and count where the cut was (t.phaseFrom).
func (t *tx) purge(c *Command) Result {
	nowMs := c.Now / int64(time.Millisecond)
	p := t.phaseFrom(1, c.MaxItems)
	purged := p.count
	for _, k := range p.keys(t.due([]byte("ne/"), nowMs, p.limit)) {
		if c.MaxItems > 0 && purged >= c.MaxItems {
			break
		}
		p.step(purged)
		// ne, ms, uid, nid: one notification (expiryKey); ne, ms, first
		// seq: a group (expiryGroupKey).
		parts := strings.SplitN(string(k), "/", 4)
		if len(parts) == 4 {
			t.del(k)
			purged += t.expire(c.Now, nowMs, parts[2], parts[3])
			p.done++
			continue
		}
		if len(parts) != 3 {
			break
		}
		// A group names up to 512 notifications, a part's worth: a cut
		// may fall between them, so its key goes last, and a replay takes
		// the group again, passing over those gone (expire).
		refs, _ := t.get(k)
		ref := make([]string, 2) // user, notification
		start, first := purged, true
		for rest, ok := nextRef(refs, ref); ok; rest, ok = nextRef(rest, ref) {
			if !first {
				p.stepWithin(start, purged-start)
			}
			first = false
			purged += t.expire(c.Now, nowMs, ref[0], ref[1])
		}
		// Those expired before a cut within the group count as they did.
		purged += p.takeWithin()
		t.del(k)
		p.done++
	}
	cutoff := nowMs - c.Retention/int64(time.Millisecond)
	p = t.phaseFrom(2, c.MaxItems)
	trimmed := p.count
	for _, k := range p.keys(t.due([]byte("ce/"), cutoff, p.limit)) {
		if c.MaxItems > 0 && trimmed >= c.MaxItems {
			break
		}
		p.step(trimmed)
		// ce, ms, first seq: a group (changeGroupKey); ce, ms, uid, seq:
		// one change, as earlier versions indexed them.
		parts := strings.SplitN(string(k), "/", 4)
		if len(parts) == 4 {
			t.del(k)
			trimmed += t.trimChange(parts[2], uint64(hexMs(parts[3])))
			p.done++
			continue
		}
		if len(parts) != 3 {
			break
		}
		refs, _ := t.get(k)
		t.del(k)
		for uid, seq, rest, ok := nextChangeRef(refs); ok; uid, seq, rest, ok = nextChangeRef(rest) {
			trimmed += t.trimChange(uid, seq)
		}
		p.done++
	}
	p = t.phaseFrom(3, c.MaxItems)
	tokens := p.count
	for _, k := range p.keys(t.due([]byte("te/"), nowMs, p.limit)) {
		p.step(tokens)
		parts := strings.SplitN(string(k), "/", 3) // te, ms, hash
		if len(parts) != 3 {
			break
		}
		// The value is the owner, and from TokenSessionIndexLevel the
		// session's id after a '/' (tokenExpiryValue).
		v, _ := t.get(k)
		owner, sid, indexed := strings.Cut(string(v), "/")
		t.del(tokenKey(parts[2]))
		t.del(ownerTokenKey(owner, parts[2]))
		if indexed {
			t.del(sessionTokenKey(owner, sid, parts[2]))
		}
		t.del(k)
		tokens++
		p.done++
	}
	t.endTokenIndexLegacy()
	// Subscriptions are kept a while past their expiry, so a device that
	// was offline can still renew; then they go, disabled ones too.
	subCutoff := nowMs - SubscriptionRetention.Milliseconds()
	p = t.phaseFrom(4, c.MaxItems)
	subs := p.count
	for _, k := range p.keys(t.due([]byte("se/"), subCutoff, p.limit)) {
		p.step(subs)
		parts := strings.SplitN(string(k), "/", 3) // se, ms, sid
		if len(parts) != 3 {
			break
		}
		var s resource.SubscriptionRecord
		if t.getJSON(subKey(parts[2]), &s) {
			t.deleteSub(s.UserID, s.ID)
		}
		t.del(k)
		subs++
		p.done++
	}
	// Forwarded commands' remembered results (dedup.go); what one
	// purge leaves, the next takes.
	t.purgeRequestsFrom(t.phaseFrom(5, c.MaxItems), nowMs, c.MaxItems)
	sessions := t.purgeSessions(t.phaseFrom(6, c.MaxItems), nowMs)
	audit := 0
	if c.AuditRetention > 0 {
		audit = t.purgeAudit(t.phaseFrom(7, c.MaxItems), nowMs-c.AuditRetention/int64(time.Millisecond))
	}
	return ok(PurgeResult{Notifications: purged, Changes: trimmed, Tokens: tokens, Subscriptions: subs,
		Sessions: sessions, Audit: audit})
}

// PurgeResult says how much a purge removed; a full batch means run again.
type PurgeResult struct{ Notifications, Changes, Tokens, Subscriptions, Sessions, Audit int }

// SubscriptionRetention is how long a subscription stays after its
// expirationDateTime before the purge deletes it.
const SubscriptionRetention = 30 * 24 * time.Hour

func hexMs[T string | []byte](s T) int64 {
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0
		}
	}
	return int64(v)
}
