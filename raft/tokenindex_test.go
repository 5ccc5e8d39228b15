package raft

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/herald-notify/herald/resource"
)

// tokenState is what the state holds of tokens: the records by hash, the
// session index's keys, and the expiry index's values by hash.
type tokenState struct {
	tokens map[string]resource.TokenRecord
	index  map[string]bool // st/ keys
	expiry map[string]string
}

func tokensIn(t *testing.T, db *badger.DB) tokenState {
	t.Helper()
	st := tokenState{tokens: map[string]resource.TokenRecord{}, index: map[string]bool{}, expiry: map[string]string{}}
	for k, v := range keysWhere(t, db, func(k []byte) bool {
		return strings.HasPrefix(string(k), "t/") || strings.HasPrefix(string(k), "st/") || strings.HasPrefix(string(k), "te/")
	}) {
		switch {
		case strings.HasPrefix(k, "t/"):
			var r resource.TokenRecord
			if err := json.Unmarshal([]byte(v), &r); err != nil {
				t.Fatal(err)
			}
			st.tokens[k[len("t/"):]] = r
		case strings.HasPrefix(k, "st/"):
			st.index[k] = true
		default:
			parts := strings.SplitN(k, "/", 3)
			st.expiry[parts[2]] = v
		}
	}
	return st
}

// checkTokenIndex fails t unless the session index is what the level
// asks: below TokenSessionIndexLevel no key; from it, a key for each token
// of a session, naming it in its expiry index too, and no other key.
func checkTokenIndex(t *testing.T, db *badger.DB, level int) tokenState {
	t.Helper()
	st := tokensIn(t, db)
	if level < TokenSessionIndexLevel {
		for k := range st.index {
			t.Errorf("session index key %s under level %d", k, level)
		}
		for h, v := range st.expiry {
			if strings.Contains(v, "/") {
				t.Errorf("expiry index of %s holds %q under level %d", h, v, level)
			}
		}
		return st
	}
	want := map[string]bool{}
	for h, r := range st.tokens {
		if r.Session == "" {
			continue
		}
		sid := resource.SessionID(r.Session)
		want[string(sessionTokenKey(r.PrincipalID, sid, h))] = true
		if v := st.expiry[h]; v != r.PrincipalID+"/"+sid {
			t.Errorf("expiry index of %s holds %q, want its owner and session", h, v)
		}
	}
	for k := range want {
		if !st.index[k] {
			t.Errorf("token left unindexed: no %s", k)
		}
	}
	for k := range st.index {
		if !want[k] {
			t.Errorf("index key %s names no token", k)
		}
	}
	return st
}

// countTokenReads counts the token records ending sessions reads.
func countTokenReads(t *testing.T) *int {
	n := new(int)
	testReadToken = func() { *n++ }
	t.Cleanup(func() { testReadToken = nil })
	return n
}

type tokenUser struct {
	t     *testing.T
	apply func(cmds ...*Command) []Result
	uid   string
	now   time.Time
}

func (u *tokenUser) grant(hash, kind, session string) TokenGrant {
	return TokenGrant{Hash: hash, Record: resource.TokenRecord{Kind: kind, PrincipalType: resource.PrincipalUser,
		PrincipalID: u.uid, ExpiresAt: resource.At(u.now.Add(time.Hour)), Session: session}}
}

// signIn opens session key with n access tokens and a refresh token r-key.
func (u *tokenUser) signIn(key string, n int) {
	gs := []TokenGrant{u.grant("r-"+key, resource.TokenRefresh, key)}
	for i := range n {
		gs = append(gs, u.grant(fmt.Sprintf("a-%s-%d", key, i), resource.TokenAccess, key))
	}
	u.apply(&Command{Op: OpIssueTokens, Now: u.now.UnixNano(), Tokens: gs})
}

// refresh uses refresh token consume for an access token and refresh
// token next, a second later.
func (u *tokenUser) refresh(key, consume, next string) {
	u.now = u.now.Add(time.Second)
	u.apply(&Command{Op: OpIssueTokens, Now: u.now.UnixNano(), ConsumeHash: consume,
		Tokens: []TokenGrant{u.grant("ra-"+next, resource.TokenAccess, key), u.grant(next, resource.TokenRefresh, key)}})
}

func newTokenUser(t *testing.T, level int) (*tokenUser, *FSM, *badger.DB) {
	f, db := openFSM(t, t.TempDir())
	t.Cleanup(func() { db.Close() })
	u := &tokenUser{t: t, apply: entries(t, f), now: time.Now()}
	user := newUser("toki")
	u.uid = user.ID
	u.apply(&Command{Op: OpSetRules, Now: u.now.UnixNano(), Level: level},
		&Command{Op: OpCreateUser, Now: u.now.UnixNano(), User: user})
	return u, f, db
}

func sessionTokens(st tokenState, key string) int {
	n := 0
	for _, r := range st.tokens {
		if r.Session == key {
			n++
		}
	}
	return n
}

// Ending a session deletes its tokens and no other. From
// TokenSessionIndexLevel it reads only them: below it, every token of the
// user, and a client that refreshes often holds tens of thousands
// (BenchmarkSessionsAmongManyTokens). The purge takes the index with the
// tokens.
func TestEndingASessionReadsOnlyItsTokens(t *testing.T) {
	for _, level := range []int{TokenSessionIndexLevel - 1, TokenSessionIndexLevel} {
		t.Run(fmt.Sprintf("rules%d", level), func(t *testing.T) {
			u, _, db := newTokenUser(t, level)
			u.signIn("busy", 200)
			u.refresh("busy", "r-busy", "busy-1")
			u.refresh("busy", "busy-1", "busy-2")
			u.signIn("s2", 1)
			u.signIn("s3", 1)
			checkTokenIndex(t, db, level)

			reads := countTokenReads(t)
			u.apply(&Command{Op: OpRevokeSession, Now: u.now.UnixNano(), UserID: u.uid, Session: "s2"})
			st := checkTokenIndex(t, db, level)
			if n := sessionTokens(st, "s2"); n != 0 {
				t.Errorf("%d tokens of the ended session left", n)
			}
			if level < TokenSessionIndexLevel {
				if *reads < 200 {
					t.Errorf("ending a session read %d tokens under level %d, want all the user's, as before", *reads, level)
				}
			} else if *reads != 2 {
				t.Errorf("ending a session of 2 tokens read %d", *reads)
			}
			// By the sessions API's id, and the record goes.
			u.apply(&Command{Op: OpRevokeSession, Now: u.now.UnixNano(), UserID: u.uid, ID: resource.SessionID("s3")})
			st = checkTokenIndex(t, db, level)
			if n := sessionTokens(st, "s3"); n != 0 {
				t.Errorf("%d tokens of the session ended by id left", n)
			}
			// busy: 200 access tokens, the three of its refreshes and the
			// last refresh token used, within its grace.
			if n := sessionTokens(st, "busy"); n != 204 {
				t.Errorf("the other session holds %d tokens, want 204", n)
			}
			if got, _ := (&Store{db: db}).Sessions(u.uid); len(got) != 1 || got[0].Key != "busy" {
				t.Errorf("sessions %+v, want busy's alone", got)
			}

			u.apply(&Command{Op: OpPurge, Now: u.now.Add(2 * time.Hour).UnixNano(), MaxItems: 1000, Retention: int64(time.Hour)})
			if st := checkTokenIndex(t, db, level); len(st.tokens) != 0 || len(st.index) != 0 {
				t.Errorf("after the purge: %d tokens, %d index keys", len(st.tokens), len(st.index))
			}
		})
	}
}

// Tokens issued before the raise to TokenSessionIndexLevel have no index
// key: the first session of their user ended under it finds them by
// reading the user's tokens, once, and indexes the others; the purge
// forgets the raise once the last of them is gone.
func TestTokensIssuedBeforeTheIndexAreFound(t *testing.T) {
	u, _, db := newTokenUser(t, TokenSessionIndexLevel-1)
	u.signIn("a", 20)
	u.signIn("b", 20)
	u.signIn("c", 20)
	legacyEnd := u.now.Add(time.Hour)
	u.now = u.now.Add(10 * time.Minute)
	u.apply(&Command{Op: OpSetRules, Now: u.now.UnixNano(), Level: TokenSessionIndexLevel})
	has := func(k string) bool {
		t.Helper()
		return len(keysWhere(t, db, func(b []byte) bool { return string(b) == k })) > 0
	}
	if v, ok := keysWhere(t, db, func(b []byte) bool { return string(b) == keyTokenIndexLegacy })[keyTokenIndexLegacy]; !ok ||
		int64(getUint64([]byte(v))) != legacyEnd.UnixMilli() {
		t.Fatalf("the raise recorded %x, want the latest expiry of the tokens before it", v)
	}
	// Session a goes on under the level, from its refresh token of before.
	u.refresh("a", "r-a", "a-1")
	u.signIn("d", 2)

	reads := countTokenReads(t)
	u.apply(&Command{Op: OpRevokeSession, Now: u.now.UnixNano(), UserID: u.uid, Session: "a"})
	st := checkTokenIndex(t, db, TokenSessionIndexLevel)
	if n := sessionTokens(st, "a"); n != 0 {
		t.Errorf("%d tokens of the ended session left, those of before the raise among them", n)
	}
	if *reads < 60 {
		t.Errorf("the first end of a session read %d tokens, want every token of the user", *reads)
	}
	if !has(string(sessionIndexedKey(u.uid))) {
		t.Error("the user is not marked as indexed")
	}
	*reads = 0
	u.apply(&Command{Op: OpRevokeSession, Now: u.now.UnixNano(), UserID: u.uid, Session: "b"})
	st = checkTokenIndex(t, db, TokenSessionIndexLevel)
	if n := sessionTokens(st, "b"); n != 0 || *reads != 21 {
		t.Errorf("ending a session of 21 tokens of before the raise: %d left, %d read", n, *reads)
	}

	// A purge before the last token of before the raise expires keeps the
	// record; one after it forgets it.
	u.apply(&Command{Op: OpPurge, Now: legacyEnd.Add(-time.Minute).UnixNano(), MaxItems: 1000, Retention: int64(time.Hour)})
	if !has(keyTokenIndexLegacy) {
		t.Fatal("the raise was forgotten while its tokens remain")
	}
	u.apply(&Command{Op: OpPurge, Now: legacyEnd.UnixNano(), MaxItems: 1000, Retention: int64(time.Hour)})
	if has(keyTokenIndexLegacy) {
		t.Error("the raise is remembered once its tokens are gone")
	}
	st = checkTokenIndex(t, db, TokenSessionIndexLevel)
	if n := sessionTokens(st, "c"); n != 0 {
		t.Errorf("%d tokens of before the raise survived the purge", n)
	}
	if n := sessionTokens(st, "d"); n != 3 {
		t.Errorf("session d holds %d tokens, want 3", n)
	}
}

// Disabling a user, changing its password and deleting it end every token
// of the user, and a sign-in past MaxSessionsPerUser the least recently
// used session's: the index goes with them.
func TestEndingEveryTokenOfAUserKeepsTheIndex(t *testing.T) {
	for _, level := range []int{TokenSessionIndexLevel - 1, TokenSessionIndexLevel} {
		t.Run(fmt.Sprintf("rules%d", level), func(t *testing.T) {
			u, _, db := newTokenUser(t, level)
			count := func() int { return len(checkTokenIndex(t, db, level).tokens) }
			for i := range MaxSessionsPerUser {
				u.now = u.now.Add(time.Second)
				u.signIn(fmt.Sprintf("s%d", i), 1)
			}
			u.now = u.now.Add(time.Second)
			u.signIn("new", 1)
			st := checkTokenIndex(t, db, level)
			if n := sessionTokens(st, "s0"); n != 0 || len(st.tokens) != 2*MaxSessionsPerUser {
				t.Errorf("past the bound: the oldest session holds %d tokens, all %d", n, len(st.tokens))
			}

			password, off, on := "new", false, true
			u.apply(&Command{Op: OpUpdateUser, Now: u.now.UnixNano(), UserID: u.uid, UserPatch: &UserPatch{PasswordHash: &password}})
			if n := count(); n != 0 {
				t.Errorf("%d tokens after a new password", n)
			}
			u.signIn("x", 3)
			u.apply(&Command{Op: OpUpdateUser, Now: u.now.UnixNano(), UserID: u.uid, UserPatch: &UserPatch{AccountEnabled: &off}})
			if n := count(); n != 0 {
				t.Errorf("%d tokens after disabling the user", n)
			}
			u.apply(&Command{Op: OpUpdateUser, Now: u.now.UnixNano(), UserID: u.uid, UserPatch: &UserPatch{AccountEnabled: &on}})
			u.signIn("y", 3)
			u.apply(&Command{Op: OpDeleteUser, Now: u.now.UnixNano(), UserID: u.uid})
			if n := count(); n != 0 {
				t.Errorf("%d tokens after deleting the user", n)
			}
			if left := keysWhere(t, db, func(k []byte) bool {
				return strings.HasPrefix(string(k), "sti/") || strings.HasPrefix(string(k), "pt/")
			}); len(left) != 0 {
				t.Errorf("left of the deleted user: %v", left)
			}
		})
	}
}
