package raft

import (
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/herald-notify/herald/resource"
)

// The session index of tokens (from TokenSessionIndexLevel).
//
// Ending a session (a sign-out, the sessions API, an administrator, a
// sign-in past MaxSessionsPerUser) deletes the tokens of that session. Below
// the level the FSM found them by reading every token its user holds
// (pt/<user>/), and a client that refreshes often holds tens of thousands:
// each refresh leaves the access token it replaces valid for its hour. From
// the level each token of a session also has a key under
// st/<user>/<session id>/, so that ending a session reads only its own.
//
// Tokens issued before the raise have no key there. The raise records, in
// keyTokenIndexLegacy, the latest expiry of the tokens then stored; while it
// is there, the first session of a user ended under the level reads that
// user's tokens once, as before, indexes those that have a session, and
// marks the user (sessionIndexedKey). The purge drops the record once no
// token of expiry up to it is left: every token then has its key.

// keyTokenIndexLegacy holds, while tokens issued before the raise to
// TokenSessionIndexLevel may remain, the latest of their expiries (Unix
// milliseconds).
const keyTokenIndexLegacy = "m/tokidx"

// sessionTokenKey indexes a token by its principal and session.
func sessionTokenKey(principal, sid, hash string) []byte {
	return []byte("st/" + principal + "/" + sid + "/" + hash)
}

func sessionTokenPrefix(principal, sid string) []byte {
	return []byte("st/" + principal + "/" + sid + "/")
}

func principalSessionTokenPrefix(principal string) []byte {
	return []byte("st/" + principal + "/")
}

// sessionIndexedKey marks a user whose tokens issued before the raise have
// been indexed, while keyTokenIndexLegacy is there.
func sessionIndexedKey(uid string) []byte { return []byte("sti/" + uid) }

// testReadToken, when set, is called for each token record that ending a
// session reads (tests).
var testReadToken func()

// indexesSessions reports whether tokens are indexed by session.
func (t *tx) indexesSessions() bool { return t.rules() >= TokenSessionIndexLevel }

// tokenExpiryValue is the value of a token's expiry index key: its
// principal, and from TokenSessionIndexLevel its session's id after a '/',
// so that the purge finds the session index key without reading the token.
func tokenExpiryValue(r *resource.TokenRecord, indexed bool) []byte {
	if indexed && r.Session != "" {
		return []byte(r.PrincipalID + "/" + resource.SessionID(r.Session))
	}
	return []byte(r.PrincipalID)
}

// startTokenIndex is the raise to TokenSessionIndexLevel: it records how
// long tokens issued before it may remain, if any are stored.
func (t *tx) startTokenIndex() {
	if ms, ok := t.latestTokenExpiry(); ok {
		t.set([]byte(keyTokenIndexLegacy), putUint64(uint64(ms)))
	}
}

// latestTokenExpiry is the latest expiry in the token expiry index: its
// last key.
func (t *tx) latestTokenExpiry() (int64, bool) {
	prefix := []byte("te/")
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Reverse = true
	opts.Prefix = prefix
	it := t.txn.NewIterator(opts)
	defer it.Close()
	it.Seek([]byte("te/\xff"))
	if !it.ValidForPrefix(prefix) {
		return 0, false
	}
	ms, _, _ := strings.Cut(string(it.Item().Key()[len(prefix):]), "/")
	return hexMs(ms), true
}

// endTokenIndexLegacy drops keyTokenIndexLegacy once no token of expiry up
// to it is left (the purge, after its tokens).
func (t *tx) endTokenIndexLegacy() {
	v, ok := t.get([]byte(keyTokenIndexLegacy))
	if !ok {
		return
	}
	if len(t.due([]byte("te/"), int64(getUint64(v)), 1)) == 0 {
		t.del([]byte(keyTokenIndexLegacy))
	}
}

// delIndexedSessionTokens deletes uid's tokens of the session whose key is
// key, reading only that session's (TokenSessionIndexLevel). A replay
// applies it again from its start: what is gone is passed over.
func (t *tx) delIndexedSessionTokens(uid, key string) {
	if t.exists([]byte(keyTokenIndexLegacy)) && !t.exists(sessionIndexedKey(uid)) {
		t.indexLegacyTokens(uid, key)
		return
	}
	prefix := sessionTokenPrefix(uid, resource.SessionID(key))
	for _, k := range t.keys(prefix, 0) {
		t.stepDone()
		h := string(k[len(prefix):])
		var r resource.TokenRecord
		if testReadToken != nil {
			testReadToken()
		}
		if t.getJSON(tokenKey(h), &r) {
			t.delToken(h, &r) // and k
		} else {
			t.del(k)
		}
	}
}

// indexLegacyTokens reads every token of uid, as below the level, deletes
// those of the session whose key is key and indexes the others of a
// session, then marks uid as indexed.
func (t *tx) indexLegacyTokens(uid, key string) {
	prefix := "pt/" + uid + "/"
	for _, k := range t.keys([]byte(prefix), 0) {
		t.stepDone()
		h := string(k[len(prefix):])
		var r resource.TokenRecord
		if testReadToken != nil {
			testReadToken()
		}
		switch {
		case !t.getJSON(tokenKey(h), &r):
		case r.Session == key:
			t.delToken(h, &r)
		case r.Session != "":
			// Its expiry index names the session, for the purge.
			t.set(sessionTokenKey(uid, resource.SessionID(r.Session), h), nil)
			t.set(tokenExpiryKey(r.ExpiresAt.UnixMilli(), h), tokenExpiryValue(&r, true))
		}
	}
	t.set(sessionIndexedKey(uid), nil)
}
