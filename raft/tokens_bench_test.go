package raft

import (
	"fmt"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/resource"
)

// tokenBench is an FSM whose one user holds a busy session of n tokens
// (the access tokens a client that refreshes often leaves valid until they
// expire) and others sessions of two tokens each.
type tokenBench struct {
	f       *FSM
	uid     string
	index   uint64
	base    time.Time // the small sessions' times count from here
	busyAt  time.Time // the busy session's, later than any small one's
	refresh string    // the busy session's newest refresh token
	seq     int
}

func (b *tokenBench) apply(tb testing.TB, cmds ...*Command) {
	tb.Helper()
	b.index++
	for _, r := range b.f.ApplyBatch([]*hraft.Log{entry(tb, b.index, cmds...)})[0].([]Result) {
		if r.Err != nil {
			tb.Fatal(r.Err)
		}
	}
}

func (b *tokenBench) grant(hash, kind, session string, at time.Time) TokenGrant {
	return TokenGrant{Hash: hash, Record: resource.TokenRecord{Kind: kind, PrincipalType: resource.PrincipalUser,
		PrincipalID: b.uid, ExpiresAt: resource.At(at.Add(365 * 24 * time.Hour)), Session: session}}
}

// signIn opens a session of two tokens at the next small time.
func (b *tokenBench) signIn(tb testing.TB, key string) {
	b.seq++
	at := b.base.Add(time.Duration(b.seq) * time.Millisecond)
	b.apply(tb, &Command{Op: OpIssueTokens, Now: at.UnixNano(), Tokens: []TokenGrant{
		b.grant("a-"+key, resource.TokenAccess, key, at), b.grant("r-"+key, resource.TokenRefresh, key, at)}})
}

// refreshBusy rotates the busy session's refresh token.
func (b *tokenBench) refreshBusy(tb testing.TB) {
	b.seq++
	at := b.busyAt.Add(time.Duration(b.seq) * time.Millisecond)
	next := fmt.Sprintf("busy-r%d", b.seq)
	b.apply(tb, &Command{Op: OpIssueTokens, Now: at.UnixNano(), ConsumeHash: b.refresh, Tokens: []TokenGrant{
		b.grant(fmt.Sprintf("busy-a%d", b.seq), resource.TokenAccess, "busy", at),
		b.grant(next, resource.TokenRefresh, "busy", at)}})
	b.refresh = next
}

func (b *tokenBench) revoke(tb testing.TB, key string) {
	b.apply(tb, &Command{Op: OpRevokeSession, Now: time.Now().UnixNano(), UserID: b.uid, Session: key})
}

// newTokenBench builds the state: rules at level, n tokens in the busy
// session, and sessions more small ones.
func newTokenBench(tb testing.TB, level, n, sessions int) *tokenBench {
	f, db := openFSM(tb, tb.TempDir())
	tb.Cleanup(func() { db.Close() })
	now := time.Now()
	u := newUser("tokens")
	b := &tokenBench{f: f, uid: u.ID, base: now, busyAt: now.Add(30 * 24 * time.Hour)}
	b.apply(tb, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u},
		&Command{Op: OpSetRules, Now: now.UnixNano(), Level: level})
	b.refresh = "busy-r0"
	grants := []TokenGrant{b.grant(b.refresh, resource.TokenRefresh, "busy", b.busyAt)}
	for i := 1; i < n; i++ {
		grants = append(grants, b.grant(fmt.Sprintf("busy-old%d", i), resource.TokenAccess, "busy", b.busyAt))
		if len(grants) == 1000 {
			b.apply(tb, &Command{Op: OpIssueTokens, Now: b.busyAt.UnixNano(), Tokens: grants})
			grants = nil
		}
	}
	if len(grants) > 0 {
		b.apply(tb, &Command{Op: OpIssueTokens, Now: b.busyAt.UnixNano(), Tokens: grants})
	}
	for i := range sessions {
		b.signIn(tb, fmt.Sprintf("small-%d", i))
	}
	return b
}

var tokenBenchSizes = []int{1000, 10000, 40000}

// BenchmarkSessionsAmongManyTokens measures what the FSM spends on a
// session's operations for a user who holds n tokens in another session
// (a client refreshing ten times a second holds 36,000 access tokens):
// ending a session of two tokens (revoke), rotating a refresh token
// (refresh), opening a session (signin), and opening one past
// MaxSessionsPerUser, which ends the least recently used (signin-evict).
// Each op is one entry, committed.
func BenchmarkSessionsAmongManyTokens(b *testing.B) {
	for _, n := range tokenBenchSizes {
		b.Run(fmt.Sprintf("n=%d/revoke", n), func(b *testing.B) {
			tb := newTokenBench(b, RulesLevel, n, 10)
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				key := fmt.Sprintf("x-%d", i)
				tb.signIn(b, key)
				b.StartTimer()
				tb.revoke(b, key)
			}
		})
		b.Run(fmt.Sprintf("n=%d/refresh", n), func(b *testing.B) {
			tb := newTokenBench(b, RulesLevel, n, 10)
			for b.Loop() {
				tb.refreshBusy(b)
			}
		})
		b.Run(fmt.Sprintf("n=%d/signin", n), func(b *testing.B) {
			tb := newTokenBench(b, RulesLevel, n, 10)
			for i := 0; b.Loop(); i++ {
				key := fmt.Sprintf("x-%d", i)
				tb.signIn(b, key)
				b.StopTimer()
				tb.revoke(b, key)
				b.StartTimer()
			}
		})
		b.Run(fmt.Sprintf("n=%d/signin-evict", n), func(b *testing.B) {
			// The busy session and MaxSessionsPerUser-1 small ones: each
			// sign-in ends the oldest small one.
			tb := newTokenBench(b, RulesLevel, n, MaxSessionsPerUser-1)
			for i := 0; b.Loop(); i++ {
				tb.signIn(b, fmt.Sprintf("x-%d", i))
			}
		})
	}
}
