package raft

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/resource"
)

func openFSM(t testing.TB, dir string) (*FSM, *badger.DB) {
	t.Helper()
	db, err := badger.Open(badgerOptions(dir, 0)) // as the Store opens it
	if err != nil {
		t.Fatal(err)
	}
	f, err := newFSM(db, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	return f, db
}

func entry(t testing.TB, index uint64, cmds ...*Command) *hraft.Log {
	t.Helper()
	data, err := encodeEntry(cmds)
	if err != nil {
		t.Fatal(err)
	}
	return &hraft.Log{Index: index, Type: hraft.LogCommand, Data: data}
}

func sendCmd(uid, aid, appNotifID string, now, expires time.Time) *Command {
	in := resource.NotificationInput{AppNotificationID: appNotifID,
		Payload:            &resource.Payload{VisualContent: &resource.VisualContent{Title: "t"}},
		ExpirationDateTime: &resource.Time{Time: expires}}
	if err := in.Validate(now, "a.example"); err != nil {
		panic(err)
	}
	n := &resource.NotificationRecord{Notification: in.NewNotification(resource.NewNotificationID(now), now), UserID: uid, AppID: aid}
	return &Command{Op: OpSend, Now: now.UnixNano(), Notif: n}
}

// A crash between Raft's commit and Badger's sync replays entries Badger
// already holds; applying them again must change nothing.
func TestReplayedEntriesAreSkipped(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("dave")
	logs := []*hraft.Log{
		entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u}),
		entry(t, 2, sendCmd(u.ID, "app", "", now, now.Add(time.Hour))),
	}
	f.ApplyBatch(logs)
	again := f.ApplyBatch(logs)
	for i, r := range again {
		if r != nil {
			t.Fatalf("replayed entry %d was applied again: %v", i+1, r)
		}
	}
	if f.Applied() != 2 {
		t.Fatalf("applied = %d, want 2", f.Applied())
	}
	s := &Store{db: db}
	if ch, _ := s.Changes(u.ID, 0, 10); len(ch) != 1 {
		t.Fatalf("changes = %d, want 1", len(ch))
	}
}

func TestPurgeExpiresNotificationsAndTrimsChanges(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	s := &Store{db: db}
	now := time.Now()
	u := newUser("erin")
	f.ApplyBatch([]*hraft.Log{
		entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u}),
		entry(t, 2, sendCmd(u.ID, "app", "soon", now, now.Add(time.Minute)), sendCmd(u.ID, "app", "later", now, now.Add(time.Hour))),
	})
	later := now.Add(2 * time.Minute)
	res := f.ApplyBatch([]*hraft.Log{entry(t, 3, &Command{Op: OpPurge, Now: later.UnixNano(), MaxItems: 100, Retention: int64(time.Hour)})})
	pr := res[0].([]Result)[0].Value.(PurgeResult)
	if pr.Notifications != 1 || pr.Changes != 0 {
		t.Fatalf("purge = %+v, want 1 notification and no changes", pr)
	}
	page, _ := s.ListNotifications(u.ID, "", 10, nil)
	if len(page.Items) != 1 || page.Items[0].AppNotificationID != "later" {
		t.Fatalf("after purge the feed holds %+v", page.Items)
	}
	ch, _ := s.Changes(u.ID, 0, 10)
	if len(ch) != 3 || ch[2].Type != resource.ChangeExpired {
		t.Fatalf("change log = %+v, want created, created, expired", ch)
	}
	// Three hours on, "later" expires too, and the retention has passed for
	// every earlier change.
	much := now.Add(3 * time.Hour)
	f.ApplyBatch([]*hraft.Log{entry(t, 4, &Command{Op: OpPurge, Now: much.UnixNano(), MaxItems: 100, Retention: int64(time.Hour)})})
	if ch, _ := s.Changes(u.ID, 0, 10); len(ch) != 1 || ch[0].Type != resource.ChangeExpired || ch[0].Seq != 4 {
		t.Fatalf("changes after trimming = %+v, want only the expiry of later (seq 4)", ch)
	}
	floor, _ := s.ChangeFloor(u.ID)
	if floor != 3 {
		t.Fatalf("change floor = %d, want 3", floor)
	}
}

func TestReplaceKeepsIDAndQuotaCountsActiveOnly(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("frank")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})})
	first := sendCmd(u.ID, "app", "build-7", now, now.Add(time.Hour))
	first.MaxItems = 1
	r := f.ApplyBatch([]*hraft.Log{entry(t, 2, first)})[0].([]Result)[0]
	id := r.Value.(SendResult).Notification.ID
	second := sendCmd(u.ID, "app", "build-7", now, now.Add(time.Hour))
	second.MaxItems = 1
	r = f.ApplyBatch([]*hraft.Log{entry(t, 3, second)})[0].([]Result)[0]
	if got := r.Value.(SendResult); got.Created || got.Notification.ID != id {
		t.Fatalf("replace = %+v, want the same id %s, not created", got, id)
	}
	third := sendCmd(u.ID, "app", "build-8", now, now.Add(time.Hour))
	third.MaxItems = 1
	r = f.ApplyBatch([]*hraft.Log{entry(t, 4, third)})[0].([]Result)[0]
	if e, ok := r.Err.(*resource.Error); !ok || e.Code != resource.CodeQuotaReached {
		t.Fatalf("over quota: %v, want quotaLimitReached", r.Err)
	}
	f.ApplyBatch([]*hraft.Log{entry(t, 5, &Command{Op: OpDeleteNotif, Now: now.UnixNano(), UserID: u.ID, ID: id})})
	r = f.ApplyBatch([]*hraft.Log{entry(t, 6, third)})[0].([]Result)[0]
	if r.Err != nil {
		t.Fatalf("after a delete the quota has room again: %v", r.Err)
	}
}

// Apply may read no clock: a refresh token's validity is judged by the
// command's time, even when this node's clock says it has expired.
func TestTokenRotationIgnoresTheLocalClock(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	past := time.Now().Add(-48 * time.Hour)
	u := newUser("gina")
	grant := func(hash, kind string) TokenGrant {
		return TokenGrant{Hash: hash, Record: resource.TokenRecord{Kind: kind, PrincipalType: resource.PrincipalUser,
			PrincipalID: u.ID, ExpiresAt: resource.At(past.Add(time.Hour))}}
	}
	res := f.ApplyBatch([]*hraft.Log{
		entry(t, 1, &Command{Op: OpCreateUser, Now: past.UnixNano(), User: u}),
		entry(t, 2, &Command{Op: OpIssueTokens, Now: past.UnixNano(), Tokens: []TokenGrant{grant("r1", resource.TokenRefresh)}}),
		entry(t, 3, &Command{Op: OpIssueTokens, Now: past.Add(time.Minute).UnixNano(), ConsumeHash: "r1",
			Tokens: []TokenGrant{grant("a2", resource.TokenAccess), grant("r2", resource.TokenRefresh)}}),
	})
	if err := res[2].([]Result)[0].Err; err != nil {
		t.Fatalf("rotation judged by the local clock: %v", err)
	}
	s := &Store{db: db}
	if _, ok, _ := s.Token("r2"); !ok {
		t.Fatal("the rotated refresh token was not stored")
	}
	// The purge, at a time past the expiry, removes them.
	f.ApplyBatch([]*hraft.Log{entry(t, 4, &Command{Op: OpPurge, Now: time.Now().UnixNano(), MaxItems: 100, Retention: int64(time.Hour)})})
	if _, ok, _ := s.Token("r2"); ok {
		t.Fatal("an expired token survived the purge")
	}
}

// A snapshot taken after entries that never reach the FSM (barriers, a
// leader's no-op) must not make every restart reload it.
func TestRestartDoesNotReloadACurrentSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, nil)
	if _, err := s.Propose(context.Background(), &Command{Op: OpCreateUser, User: newUser("hank")}); err != nil {
		t.Fatal(err)
	}
	if err := s.raft.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	logs := &syncbuf.Buffer{}
	s2, err := Open(Options{Dir: dir, NodeID: "n1", RaftAddr: freeAddr(t), Bootstrap: true,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if strings.Contains(logs.String(), "restoring") {
		t.Fatalf("the restart reloaded a snapshot Badger already holds:\n%s", logs.String())
	}
	if _, ok, _ := s2.UserByName("hank"); !ok {
		t.Fatal("state lost across the restart")
	}
}

func TestPurgeRemovesSubscriptionsLongExpired(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("ivy")
	app := &resource.ApplicationRecord{ID: "app", AppID: "appid", TargetHostName: "a.example"}
	sub := func(id string, exp time.Time) *resource.SubscriptionRecord {
		return &resource.SubscriptionRecord{Subscription: resource.Subscription{ID: id, UserID: u.ID,
			TargetHostName: "a.example", PlatformType: resource.PlatformWeb, Status: resource.SubActive,
			Channel: resource.Channel{Type: resource.ChannelLive}, ExpirationDateTime: resource.At(exp)}, AppID: app.ID}
	}
	f.ApplyBatch([]*hraft.Log{
		entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u}, &Command{Op: OpCreateApp, Now: now.UnixNano(), App: app}),
		entry(t, 2, &Command{Op: OpCreateSub, Now: now.UnixNano(), Sub: sub("old", now.Add(time.Hour))},
			&Command{Op: OpCreateSub, Now: now.UnixNano(), Sub: sub("renewed", now.Add(time.Hour))}),
		// One is renewed far ahead; the other is left to lapse.
		entry(t, 3, &Command{Op: OpUpdateSub, Now: now.UnixNano(), UserID: u.ID, ID: "renewed",
			SubPatch: &resource.SubscriptionPatch{ExpirationDateTime: &resource.Time{Time: now.Add(80 * 24 * time.Hour)}}}),
	})
	s := &Store{db: db}
	later := now.Add(time.Hour + SubscriptionRetention + time.Minute)
	f.ApplyBatch([]*hraft.Log{entry(t, 4, &Command{Op: OpPurge, Now: later.UnixNano(), MaxItems: 100, Retention: int64(time.Hour)})})
	subs, _ := s.ListSubscriptions(u.ID)
	if len(subs) != 1 || subs[0].ID != "renewed" {
		t.Fatalf("after the purge: %+v, want only the renewed subscription", subs)
	}
}

func TestPushEndpointBelongsToItsNewestSubscription(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	a, b := newUser("jo"), newUser("kim")
	app := &resource.ApplicationRecord{ID: "app", AppID: "appid", TargetHostName: "a.example"}
	push := func(id, uid string) *resource.SubscriptionRecord {
		return &resource.SubscriptionRecord{Subscription: resource.Subscription{ID: id, UserID: uid,
			TargetHostName: "a.example", PlatformType: resource.PlatformWeb, Status: resource.SubActive,
			Channel:            resource.Channel{Type: resource.ChannelWebPush, Endpoint: "https://push.example/shared-browser"},
			ExpirationDateTime: resource.At(now.Add(time.Hour))}, AppID: app.ID}
	}
	f.ApplyBatch([]*hraft.Log{
		entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: a}, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: b},
			&Command{Op: OpCreateApp, Now: now.UnixNano(), App: app}),
		entry(t, 2, &Command{Op: OpCreateSub, Now: now.UnixNano(), Sub: push("first", a.ID)}),
		entry(t, 3, &Command{Op: OpCreateSub, Now: now.UnixNano(), Sub: push("second", b.ID)}),
	})
	s := &Store{db: db}
	if subs, _ := s.ListSubscriptions(a.ID); len(subs) != 0 {
		t.Fatalf("the first user still holds the shared endpoint: %+v", subs)
	}
	if subs, _ := s.ListSubscriptions(b.ID); len(subs) != 1 || subs[0].ID != "second" {
		t.Fatalf("the second user's subscriptions: %+v", subs)
	}
}

// Many small entries handed over together share Badger transactions,
// committed at entry boundaries once large: every entry still gets its own
// results, the stored applied index is the last entry's, every write is
// there, and replaying the batch changes nothing.
func TestEntriesOfOneBatchShareCommits(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("erin")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})})
	const entries, perEntry = 200, 3 // well past commitBytes
	var logs []*hraft.Log
	for i := range entries {
		var cmds []*Command
		for j := range perEntry {
			cmds = append(cmds, sendCmd(u.ID, "app", fmt.Sprintf("n%d-%d", i, j), now, now.Add(time.Hour)))
		}
		logs = append(logs, entry(t, uint64(i+2), cmds...))
	}
	logs = append(logs, &hraft.Log{Index: entries + 2, Type: hraft.LogNoop})
	out := f.ApplyBatch(logs)
	for i, r := range out[:entries] {
		res, ok := r.([]Result)
		if !ok || len(res) != perEntry {
			t.Fatalf("entry %d: results %v", i, r)
		}
		for _, x := range res {
			if x.Err != nil {
				t.Fatalf("entry %d: %v", i, x.Err)
			}
		}
	}
	if f.Applied() != entries+2 {
		t.Fatalf("applied = %d, want %d", f.Applied(), entries+2)
	}
	again, err := newFSM(db, nil, slog.Default()) // what a restart reads
	if err != nil || again.Applied() != entries+2 {
		t.Fatalf("stored applied index = %d (%v), want %d", again.Applied(), err, entries+2)
	}
	for i, r := range f.ApplyBatch(logs) {
		if r != nil {
			t.Fatalf("replayed entry %d was applied again: %v", i, r)
		}
	}
	s := &Store{db: db}
	if ch, _ := s.Changes(u.ID, 0, 2*entries*perEntry); len(ch) != entries*perEntry {
		t.Fatalf("changes = %d, want %d", len(ch), entries*perEntry)
	}
}

// A notification past its expiry that the purge has not taken yet is gone
// all the same: a patch finds nothing, and a send with its
// appNotificationId makes a new notification, the old one recorded as
// expired, instead of reviving it under its id.
func TestANotificationPastItsExpiryIsNotChangedOrRevived(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("ivy")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u},
		&Command{Op: OpSetRules, Now: now.UnixNano(), Level: 1})})
	r := f.ApplyBatch([]*hraft.Log{entry(t, 2, sendCmd(u.ID, "app", "short", now, now.Add(time.Second)))})[0].([]Result)[0]
	old := r.Value.(SendResult).Notification.ID
	later := now.Add(2 * time.Second)
	read := resource.ReadRead
	r = f.ApplyBatch([]*hraft.Log{entry(t, 3, &Command{Op: OpPatchNotif, Now: later.UnixNano(), UserID: u.ID, ID: old,
		NotifPatch: &resource.NotificationPatch{ReadState: &read}})})[0].([]Result)[0]
	if e, ok := r.Err.(*resource.Error); !ok || e.Code != resource.CodeNotFound {
		t.Fatalf("patch after the expiry: %v, want itemNotFound", r.Err)
	}
	again := sendCmd(u.ID, "app", "short", later, later.Add(time.Hour))
	r = f.ApplyBatch([]*hraft.Log{entry(t, 4, again)})[0].([]Result)[0]
	got := r.Value.(SendResult)
	if !got.Created || got.Notification.ID == old {
		t.Fatalf("send after the expiry = %+v, want a new notification, not %s revived", got, old)
	}
	s := &Store{db: db}
	ch, err := s.Changes(u.ID, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) != 3 || ch[1].Type != resource.ChangeExpired || ch[1].NotificationID != old ||
		ch[2].Type != resource.ChangeCreated || ch[2].NotificationID != got.Notification.ID {
		t.Fatalf("changes %+v, want created, expired (the old one), created (the new one)", ch)
	}
	// A resend replaces the new one, which has not expired.
	r = f.ApplyBatch([]*hraft.Log{entry(t, 5, sendCmd(u.ID, "app", "short", later, later.Add(time.Hour)))})[0].([]Result)[0]
	if res := r.Value.(SendResult); res.Created || res.Notification.ID != got.Notification.ID {
		t.Fatalf("resend = %+v, want the replace of %s", res, got.Notification.ID)
	}
	// The purge passes over the old one's index.
	f.ApplyBatch([]*hraft.Log{entry(t, 6, &Command{Op: OpPurge, Now: later.UnixNano(), MaxItems: 100, Retention: int64(time.Hour)})})
	if v, _, _ := getValue(db.NewTransaction(false), countersKey(u.ID)); !strings.Contains(string(v), `"n":1`) {
		t.Errorf("counters %s, want one active notification", v)
	}
}

// A user's sessions are bounded: a sign-in past MaxSessionsPerUser ends the
// least recently used one, its tokens with it.
func TestANewSessionPastTheBoundEndsTheLeastRecentlyUsed(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("kim")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u},
		&Command{Op: OpSetRules, Now: now.UnixNano(), Level: 1})})
	signIn := func(index uint64, at time.Time, key string) {
		t.Helper()
		grant := func(hash, kind string) TokenGrant {
			return TokenGrant{Hash: hash, Record: resource.TokenRecord{Kind: kind, PrincipalType: resource.PrincipalUser,
				PrincipalID: u.ID, ExpiresAt: resource.At(at.Add(time.Hour)), Session: key}}
		}
		r := f.ApplyBatch([]*hraft.Log{entry(t, index, &Command{Op: OpIssueTokens, Now: at.UnixNano(),
			Tokens: []TokenGrant{grant("a-"+key, resource.TokenAccess), grant("r-"+key, resource.TokenRefresh)}})})
		if err := r[0].([]Result)[0].Err; err != nil {
			t.Fatal(err)
		}
	}
	for i := range MaxSessionsPerUser {
		// Session 7 signed in first; the others in order after it.
		at := now.Add(time.Duration(i+1) * time.Second)
		if i == 7 {
			at = now
		}
		signIn(uint64(2+i), at, fmt.Sprintf("key-%d", i))
	}
	s := &Store{db: db}
	if got, _ := s.Sessions(u.ID); len(got) != MaxSessionsPerUser {
		t.Fatalf("%d sessions, want %d", len(got), MaxSessionsPerUser)
	}
	signIn(uint64(2+MaxSessionsPerUser), now.Add(time.Hour), "key-new")
	got, _ := s.Sessions(u.ID)
	if len(got) != MaxSessionsPerUser {
		t.Fatalf("%d sessions after one more sign-in, want %d", len(got), MaxSessionsPerUser)
	}
	for _, se := range got {
		if se.Key == "key-7" {
			t.Fatal("the least recently used session survived")
		}
	}
	for _, h := range []string{"a-key-7", "r-key-7"} {
		if _, ok, _ := s.Token(h); ok {
			t.Errorf("token %s of the ended session still works", h)
		}
	}
	if _, ok, _ := s.Token("a-key-8"); !ok {
		t.Error("a token of a session that was not ended is gone")
	}
}

// Rules that change what an entry writes wait for their level: under level
// 0 (a cluster some of whose members run an older binary) a send revives a
// notification past its expiry and a patch changes it, as every older node
// does; raised, the level applies from the next entry on, and never falls.
func TestNewRulesWaitForTheirLevel(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("lou")
	f.ApplyBatch([]*hraft.Log{entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})})
	r := f.ApplyBatch([]*hraft.Log{entry(t, 2, sendCmd(u.ID, "app", "short", now, now.Add(time.Second)))})[0].([]Result)[0]
	old := r.Value.(SendResult).Notification.ID
	later := now.Add(2 * time.Second)
	read := resource.ReadRead
	patch := func(index uint64) Result {
		return f.ApplyBatch([]*hraft.Log{entry(t, index, &Command{Op: OpPatchNotif, Now: later.UnixNano(), UserID: u.ID, ID: old,
			NotifPatch: &resource.NotificationPatch{ReadState: &read}})})[0].([]Result)[0]
	}
	if r := patch(3); r.Err != nil {
		t.Fatalf("patch under level 0: %v, want the older rule's success", r.Err)
	}
	r = f.ApplyBatch([]*hraft.Log{entry(t, 4, sendCmd(u.ID, "app", "short", later, later.Add(time.Second)))})[0].([]Result)[0]
	if got := r.Value.(SendResult); got.Created || got.Notification.ID != old {
		t.Fatalf("send under level 0 = %+v, want %s replaced as the older rule does", got, old)
	}
	s := &Store{db: db}
	raise := func(index uint64, level int) {
		t.Helper()
		r := f.ApplyBatch([]*hraft.Log{entry(t, index, &Command{Op: OpSetRules, Now: later.UnixNano(), Level: level})})[0].([]Result)[0]
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	raise(5, 1)
	if got, _ := s.Rules(); got != 1 {
		t.Fatalf("rules level %d, want 1", got)
	}
	later = later.Add(2 * time.Second)
	if r := patch(6); r.Err == nil {
		t.Fatal("patch past the expiry under level 1 succeeded")
	}
	// A raise to the level in force changes nothing.
	if r := f.ApplyBatch([]*hraft.Log{entry(t, 7, &Command{Op: OpSetRules, Now: later.UnixNano(), Level: 1})})[0].([]Result)[0]; r.Value != 1 {
		t.Fatalf("raise again: %v", r.Value)
	}
}

// The live streams are told of revoked tokens (a session ended), not of a
// refresh token that a refresh used up: no stream holds one, and a recheck
// of every stream of the user at every refresh would cost for nothing.
func TestOnlyRevocationsReachTheStreams(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	var told [][]string
	f.onRevoked = func(p []string) { told = append(told, slices.Clone(p)) }
	now := time.Now()
	u := newUser("max")
	grant := func(hash, kind string) TokenGrant {
		return TokenGrant{Hash: hash, Record: resource.TokenRecord{Kind: kind, PrincipalType: resource.PrincipalUser,
			PrincipalID: u.ID, ExpiresAt: resource.At(now.Add(time.Hour)), Session: "s1"}}
	}
	f.ApplyBatch([]*hraft.Log{
		entry(t, 1, &Command{Op: OpCreateUser, Now: now.UnixNano(), User: u}),
		entry(t, 2, &Command{Op: OpIssueTokens, Now: now.UnixNano(), Tokens: []TokenGrant{grant("a1", resource.TokenAccess), grant("r1", resource.TokenRefresh)}}),
		entry(t, 3, &Command{Op: OpIssueTokens, Now: now.UnixNano(), ConsumeHash: "r1",
			Tokens: []TokenGrant{grant("a2", resource.TokenAccess), grant("r2", resource.TokenRefresh)}}),
	})
	if len(told) != 0 {
		t.Fatalf("a sign-in and a refresh told the streams %v", told)
	}
	f.ApplyBatch([]*hraft.Log{entry(t, 4, &Command{Op: OpRevokeSession, Now: now.UnixNano(), UserID: u.ID, Session: "s1"})})
	if len(told) != 1 || !slices.Contains(told[0], u.ID) {
		t.Fatalf("ending the session told the streams %v, want %s once", told, u.ID)
	}
}

// The raise to IdentityLevel names the cluster, once: a later raise, or
// one below the level, does not rename it.
func TestTheRaiseToIdentityLevelNamesTheCluster(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	s := &Store{db: db}
	raise := func(index uint64, level int, id string) {
		t.Helper()
		r := f.ApplyBatch([]*hraft.Log{entry(t, index, &Command{Op: OpSetRules, Now: time.Now().UnixNano(), Level: level, ID: id})})[0].([]Result)[0]
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	name := func() string {
		t.Helper()
		id, err := s.ClusterID()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	raise(1, IdentityLevel-1, "early")
	if got := name(); got != "" {
		t.Fatalf("below the identity level the cluster is named %q", got)
	}
	raise(2, IdentityLevel, "first")
	raise(3, IdentityLevel+1, "second")
	if got := name(); got != "first" {
		t.Fatalf("cluster id %q, want the first raise's", got)
	}
}

// From rules level 2 a rotated refresh token works again for
// RefreshReuseGrace (its answer may have been lost), until a token its
// rotation made is used; after that it is unknown, and the sign-in goes on
// with the tokens the client has. Below the level it is gone at its first
// use.
func TestARefreshTokenUsedAgain(t *testing.T) {
	for _, level := range []int{1, 2} {
		t.Run(fmt.Sprintf("level %d", level), func(t *testing.T) {
			f, db := openFSM(t, t.TempDir())
			defer db.Close()
			s := &Store{db: db}
			now := time.Now()
			u := newUser("ray")
			grant := func(hash, kind string) TokenGrant {
				return TokenGrant{Hash: hash, Record: resource.TokenRecord{Kind: kind, PrincipalType: resource.PrincipalUser,
					PrincipalID: u.ID, ExpiresAt: resource.At(now.Add(time.Hour)), Session: "s1"}}
			}
			index := uint64(0)
			apply := func(c *Command) Result {
				index++
				return f.ApplyBatch([]*hraft.Log{entry(t, index, c)})[0].([]Result)[0]
			}
			apply(&Command{Op: OpCreateUser, Now: now.UnixNano(), User: u})
			apply(&Command{Op: OpSetRules, Now: now.UnixNano(), Level: level})
			apply(&Command{Op: OpIssueTokens, Now: now.UnixNano(), Tokens: []TokenGrant{grant("a0", resource.TokenAccess), grant("r0", resource.TokenRefresh)}})
			refresh := func(at time.Duration, consume, next string) error {
				r := apply(&Command{Op: OpIssueTokens, Now: now.Add(at).UnixNano(), ConsumeHash: consume,
					Tokens: []TokenGrant{grant("a"+next, resource.TokenAccess), grant("r"+next, resource.TokenRefresh)}})
				return r.Err
			}
			has := func(hash string) bool {
				_, found, err := s.Token(hash)
				if err != nil {
					t.Fatal(err)
				}
				return found
			}
			if err := refresh(time.Second, "r0", "1"); err != nil {
				t.Fatalf("first refresh: %v", err)
			}
			err := refresh(30*time.Second, "r0", "2")
			if level < 2 {
				if err == nil || has("r0") || !has("r1") {
					t.Fatalf("second use under level 1: %v; r0 kept %v, r1 kept %v; want refused, r0 gone, r1 kept",
						err, has("r0"), has("r1"))
				}
				return
			}
			if err != nil {
				t.Fatalf("second use within the grace: %v, want new tokens", err)
			}
			// r2's first use ends r0's grace.
			if err := refresh(40*time.Second, "r2", "3"); err != nil {
				t.Fatalf("the tokens the second use made: %v", err)
			}
			if err := refresh(45*time.Second, "r0", "4"); err == nil {
				t.Fatal("r0 once a token of its rotation was used: new tokens, want refused")
			}
			if has("r0") {
				t.Error("r0 outlived the first use of a token of its rotation")
			}
			// r2's own grace ends a minute after its use; r1, never used,
			// and r3 go on, with their access tokens.
			if err := refresh(40*time.Second+RefreshReuseGrace, "r2", "5"); err == nil {
				t.Fatal("r2 past its grace: new tokens, want refused")
			}
			for _, h := range []string{"a1", "r1", "a3", "r3"} {
				if !has(h) {
					t.Errorf("token %s is gone", h)
				}
			}
			if err := refresh(2*time.Minute, "r3", "6"); err != nil {
				t.Errorf("the sign-in's newest refresh token: %v", err)
			}
			sessions, err := s.Sessions(u.ID)
			if err != nil || len(sessions) != 1 {
				t.Errorf("sessions: %v, %v; want the one", sessions, err)
			}
		})
	}
}
