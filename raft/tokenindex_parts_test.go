package raft

import (
	"fmt"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/resource"
)

// Ending a session from TokenSessionIndexLevel deletes its tokens before
// its record, a step at a time, so that a node that stopped between two
// parts of the entry finds the session again by its public id when it
// applies the entry anew, and deletes the rest.
func TestASessionEndedInPartsIsEndedWholeByTheReplay(t *testing.T) {
	dir := t.TempDir()
	f, db := openFSM(t, dir)
	now := time.Now()
	u := newUser("parts")
	index := uint64(0)
	apply := func(cmds ...*Command) {
		index++
		f.ApplyBatch([]*hraft.Log{entry(t, index, cmds...)})
	}
	apply(&Command{Op: OpSetRules, Now: now.UnixNano(), Level: TokenSessionIndexLevel},
		&Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})
	grant := func(hash, kind, session string) TokenGrant {
		return TokenGrant{Hash: hash, Record: resource.TokenRecord{Kind: kind, PrincipalType: resource.PrincipalUser,
			PrincipalID: u.ID, ExpiresAt: resource.At(now.Add(time.Hour)), Session: session}}
	}
	apply(&Command{Op: OpIssueTokens, Now: now.UnixNano(), Tokens: []TokenGrant{grant("r-other", resource.TokenRefresh, "other")}})
	const perEntry, n = 2000, 30000
	for e := 0; e < n/perEntry; e++ {
		var gs []TokenGrant
		if e == 0 {
			gs = append(gs, grant("r-big", resource.TokenRefresh, "big"))
		}
		for i := range perEntry {
			gs = append(gs, grant(fmt.Sprintf("a-big-%d-%d", e, i), resource.TokenAccess, "big"))
		}
		apply(&Command{Op: OpIssueTokens, Now: now.UnixNano(), Tokens: gs})
	}
	revoke := entry(t, index+1, &Command{Op: OpRevokeSession, Now: now.UnixNano(), UserID: u.ID, ID: resource.SessionID("big")})
	crashAfterFlushes(t, 1)
	applyUntilCrash(t, f, []*hraft.Log{revoke})
	testAfterPart = nil
	db.Close()

	f, db = openFSM(t, dir)
	defer db.Close()
	if f.Applied() != index {
		t.Fatalf("applied %d after the crash, want %d", f.Applied(), index)
	}
	res := f.ApplyBatch([]*hraft.Log{revoke})[0].([]Result)
	if res[0].Err != nil {
		t.Fatalf("the replayed revoke: %v", res[0].Err)
	}
	st := checkTokenIndex(t, db, TokenSessionIndexLevel)
	if left := sessionTokens(st, "big"); left != 0 {
		t.Errorf("%d tokens of the ended session survived the replay", left)
	}
	if sessionTokens(st, "other") != 1 {
		t.Error("the other session lost its token")
	}
	if got, _ := (&Store{db: db}).Sessions(u.ID); len(got) != 1 || got[0].Key != "other" {
		t.Errorf("sessions %+v, want other's alone", got)
	}
}
