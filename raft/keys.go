package raft

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// Badger key layout. Every key starts with a short prefix naming what it
// holds; ids never contain '/', so a prefix scan of "n/<user>/" reads exactly
// one user's notifications.
const (
	keyApplied = "m/applied" // last applied Raft index, written with the data
	keySeq     = "m/seq"     // last change-log sequence number
	keyVAPID   = "m/vapid"   // the server's VAPID key pair
	keySlots   = "m/slots"   // the slot table: SlotCount node ids
)

func userKey(id string) []byte     { return []byte("u/" + id) }
func upnKey(upn string) []byte     { return []byte("upn/" + strings.ToLower(upn)) }
func appKey(id string) []byte      { return []byte("a/" + id) }
func appIDKey(appID string) []byte { return []byte("appid/" + appID) }
func hostKey(host string) []byte   { return []byte("host/" + host) }
func tokenKey(hash string) []byte  { return []byte("t/" + hash) }
func ownerTokenKey(principal, hash string) []byte {
	return []byte("pt/" + principal + "/" + hash)
}
func subKey(id string) []byte           { return []byte("s/" + id) }
func userSubKey(uid, sid string) []byte { return []byte("us/" + uid + "/" + sid) }
func appSubKey(aid, sid string) []byte  { return []byte("as/" + aid + "/" + sid) }

// nodeKey holds a cluster member's NodeRecord.
func nodeKey(id string) []byte { return []byte("cn/" + id) }

func notifKey(uid, nid string) []byte { return []byte("n/" + uid + "/" + nid) }
func notifPrefix(uid string) []byte   { return []byte("n/" + uid + "/") }
func countersKey(uid string) []byte   { return []byte("cnt/" + uid) }
func changeTrimKey(uid string) []byte { return []byte("ct/" + uid) }
func changePrefix(uid string) []byte  { return []byte("c/" + uid + "/") }
func changeKey(uid string, seq uint64) []byte {
	return fmt.Appendf(nil, "c/%s/%016x", uid, seq)
}

// deliveryKey holds the delivery record of one notification to one
// subscription; pendingKey indexes those with a message still to send.
func deliveryKey(uid, nid, sid string) []byte { return []byte("d/" + uid + "/" + nid + "/" + sid) }
func deliveryPrefix(uid, nid string) []byte   { return []byte("d/" + uid + "/" + nid + "/") }
func pendingKey(uid, nid, sid string) []byte  { return []byte("dp/" + uid + "/" + nid + "/" + sid) }

// userDeliveryPrefix and userPendingPrefix hold all of a user's.
func userDeliveryPrefix(uid string) []byte { return []byte("d/" + uid + "/") }
func userPendingPrefix(uid string) []byte  { return []byte("dp/" + uid + "/") }

// appNotifKey maps (user, application, appNotificationId) to the id that a
// repeated POST replaces.
func appNotifKey(uid, aid, appNotifID string) []byte {
	return []byte("na/" + uid + "/" + aid + "/" + appNotifID)
}

func appNotifPrefix(uid string) []byte { return []byte("na/" + uid + "/") }

// expiryKey orders notifications by expiry so the purge reads only what is
// due: the one notification it names.
func expiryKey(ms int64, uid, nid string) []byte {
	return fmt.Appendf(nil, "ne/%016x/%s/%s", uint64(ms), uid, nid)
}

// expiryGroupKey is the expiry index of notifications one Raft entry made
// (groupExpiry), ordered by the latest expiry and named by the seq of the
// first's change; its value lists them (appendRef: user and id). Its two parts
// after the prefix tell it from an expiryKey's three.
func expiryGroupKey(ms int64, firstSeq uint64) []byte {
	return fmt.Appendf(nil, "ne/%016x/%016x", uint64(ms), firstSeq)
}

// appendRef appends one member of an index group (an expiry group's user
// and notification, a request group's id): each string after its length.
func appendRef(b []byte, parts ...string) []byte {
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

// nextRef reads len(parts) strings of the member at the start of b into
// parts and returns the rest; ok is false at the end of b or where it is not
// what appendRef wrote.
func nextRef(b []byte, parts []string) (rest []byte, ok bool) {
	for i := range parts {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		parts[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	return b, true
}

// endpointKey maps a Web Push endpoint to the one subscription that holds it.
func endpointKey(endpoint string) []byte {
	sum := sha256.Sum256([]byte(endpoint))
	return []byte("pe/" + hex.EncodeToString(sum[:]))
}

// subExpiryKey orders subscriptions by expiry, for the purge.
func subExpiryKey(ms int64, sid string) []byte {
	return fmt.Appendf(nil, "se/%016x/%s", uint64(ms), sid)
}

// tokenExpiryKey orders tokens by expiry for the purge; its value is the
// token's principal, to find the owner index.
func tokenExpiryKey(ms int64, hash string) []byte {
	return fmt.Appendf(nil, "te/%016x/%s", uint64(ms), hash)
}

// changeTimeKey orders change-log entries by time for trimming: one key
// per change, as earlier versions wrote them; see changeGroupKey.
func changeTimeKey(ms int64, uid string, seq uint64) []byte {
	return fmt.Appendf(nil, "ce/%016x/%s/%016x", uint64(ms), uid, seq)
}

// changeGroupKey is the time index of the changes one Raft entry made,
// ordered by the time of the latest and named by the first change's seq;
// its value lists them (appendChangeRef). A key per change was about a
// fifteenth of a send's CPU under ingest (BENCHMARKS.md, 5 December 2026).
// Its two parts after the prefix tell it from a changeTimeKey's three.
func changeGroupKey(ms int64, firstSeq uint64) []byte {
	return fmt.Appendf(nil, "ce/%016x/%016x", uint64(ms), firstSeq)
}

// appendChangeRef appends one change of a group: its user as appendRef
// writes it, then its seq.
func appendChangeRef(b []byte, uid string, seq uint64) []byte {
	return binary.AppendUvarint(appendRef(b, uid), seq)
}

// nextChangeRef reads the change at the start of b and returns the rest;
// ok is false at the end of b or where it is not what appendChangeRef wrote.
func nextChangeRef(b []byte) (uid string, seq uint64, rest []byte, ok bool) {
	var p [1]string
	if b, ok = nextRef(b, p[:]); !ok {
		return "", 0, nil, false
	}
	seq, k := binary.Uvarint(b)
	if k <= 0 {
		return "", 0, nil, false
	}
	return p[0], seq, b[k:], true
}

func putUint64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func getUint64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
