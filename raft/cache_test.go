package raft

import (
	"context"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// The cached records follow every committed write: a read after an
// acknowledged update sees it, a consumed token is gone, and a caller that
// changes the record it was given changes nobody else's.
func TestCachedRecordsFollowWrites(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	u := newUser("carol")
	app := &resource.ApplicationRecord{ID: resource.NewGUID(), AppID: resource.NewGUID(), DisplayName: "before",
		TargetHostName: "cache.example", CreatedDateTime: resource.At(now),
		Credentials: []resource.CredentialRecord{{SecretHash: "h1"}}}
	for _, c := range []*Command{{Op: OpCreateUser, Now: now.UnixNano(), User: u},
		{Op: OpCreateApp, Now: now.UnixNano(), App: app}} {
		if _, err := s.Propose(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	a, ok, err := s.App(app.ID)
	if err != nil || !ok || a.DisplayName != "before" {
		t.Fatalf("App = %+v %v %v", a, ok, err)
	}
	a.DisplayName = "changed by the caller"
	a.Credentials[0].SecretHash = "changed"
	if a, _, _ := s.App(app.ID); a.DisplayName != "before" || a.Credentials[0].SecretHash != "h1" {
		t.Fatalf("a caller's change reached the cache: %+v", a)
	}
	if _, err := s.Propose(ctx, &Command{Op: OpUpdateApp, Now: now.UnixNano(), AppID: app.ID,
		App: &resource.ApplicationRecord{DisplayName: "after"}}); err != nil {
		t.Fatal(err)
	}
	if a, ok, err := s.App(app.ID); err != nil || !ok || a.DisplayName != "after" {
		t.Fatalf("App after update = %+v %v %v", a, ok, err)
	}

	if got, ok, err := s.User(u.ID); err != nil || !ok || got.DisplayName != "" {
		t.Fatalf("User = %+v %v %v", got, ok, err)
	} else {
		got.Roles[0] = "changed by the caller"
	}
	name := "Carol"
	if _, err := s.Propose(ctx, &Command{Op: OpUpdateUser, Now: now.UnixNano(), UserID: u.ID,
		UserPatch: &UserPatch{DisplayName: &name}}); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.User(u.ID); err != nil || !ok || got.DisplayName != "Carol" || got.Roles[0] != "user" {
		t.Fatalf("User after update = %+v %v %v", got, ok, err)
	}
	if _, err := s.Propose(ctx, &Command{Op: OpDeleteUser, Now: now.UnixNano(), UserID: u.ID}); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.User(u.ID); err != nil || ok {
		t.Fatalf("deleted user still found: %+v %v %v", got, ok, err)
	}
	u = newUser("carol2")
	if _, err := s.Propose(ctx, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u}); err != nil {
		t.Fatal(err)
	}

	refresh := resource.TokenRecord{Kind: resource.TokenRefresh, PrincipalType: resource.PrincipalUser,
		PrincipalID: u.ID, ExpiresAt: resource.At(now.Add(time.Hour))}
	if _, err := s.Propose(ctx, &Command{Op: OpIssueTokens, Now: now.UnixNano(),
		Tokens: []TokenGrant{{Hash: "rt1", Record: refresh}}}); err != nil {
		t.Fatal(err)
	}
	if tok, ok, err := s.Token("rt1"); err != nil || !ok || tok.PrincipalID != u.ID {
		t.Fatalf("Token = %+v %v %v", tok, ok, err)
	}
	if _, err := s.Propose(ctx, &Command{Op: OpIssueTokens, Now: now.UnixNano(), ConsumeHash: "rt1",
		Tokens: []TokenGrant{{Hash: "rt2", Record: refresh}}}); err != nil {
		t.Fatal(err)
	}
	if tok, ok, err := s.Token("rt1"); err != nil || ok {
		t.Fatalf("consumed token still found: %+v %v %v", tok, ok, err)
	}
	if _, ok, _ := s.Token("rt2"); !ok {
		t.Fatal("new token not found")
	}
}

// A reader that loaded a record before an invalidation must not store it
// afterwards: it could be older than the write that invalidated it.
func TestCacheDropsLoadsThatRacedAnInvalidation(t *testing.T) {
	c := newRecordCache(viewCacheBytes(0))
	stale := &resource.TokenRecord{PrincipalID: "old"}
	got, ok, err := cached(c, tokens, "h", func() (*resource.TokenRecord, bool, error) {
		c.begin([]string{"t/h"}) // the FSM commits while the load runs
		c.end([]string{"t/h"})
		return stale, true, nil
	}, cloneToken)
	if err != nil || !ok || got.PrincipalID != "old" {
		t.Fatalf("cached = %+v %v %v", got, ok, err)
	}
	if _, held := c.tokens["h"]; held {
		t.Fatal("a load that raced an invalidation was cached")
	}
	cached(c, tokens, "h", func() (*resource.TokenRecord, bool, error) { return stale, true, nil }, cloneToken)
	if _, held := c.tokens["h"]; !held {
		t.Fatal("a load with no invalidation in between was not cached")
	}
	c.begin([]string{"t/h"})
	if _, held := c.tokens["h"]; held {
		t.Fatal("a record being committed is still cached")
	}
	cached(c, tokens, "h", func() (*resource.TokenRecord, bool, error) { return stale, true, nil }, cloneToken)
	if _, held := c.tokens["h"]; held {
		t.Fatal("a load during a commit was cached")
	}
	c.end([]string{"t/h"})
	cached(c, tokens, "h", func() (*resource.TokenRecord, bool, error) { return stale, true, nil }, cloneToken)
	c.reset()
	if len(c.tokens) != 0 {
		t.Fatal("reset left records")
	}
}

// Every --memory from the smallest accepted opens Badger and stores a send.
func TestMemoryBudgetsOpen(t *testing.T) {
	for _, m := range []string{"16MiB", "64MiB", "1GiB"} {
		budget, err := ParseMemory(m)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(Options{Dir: t.TempDir(), NodeID: "n1", RaftAddr: freeAddr(t), Bootstrap: true, Logger: quiet,
			HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, Memory: budget})
		if err != nil {
			t.Fatalf("--memory %s: %v", m, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
		u := newUser("m" + m)
		if _, err := s.Propose(ctx, &Command{Op: OpCreateUser, Now: time.Now().UnixNano(), User: u}); err != nil {
			t.Fatalf("--memory %s: %v", m, err)
		}
		cancel()
		s.Close()
	}
	if _, err := ParseMemory("8MiB"); err == nil {
		t.Error("--memory 8MiB accepted; the floor is 16MiB")
	}
}
