package raft

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// Deleting a user leaves nothing of theirs in the store or in a backup
// taken afterwards: not their notifications, tombstones, deliveries,
// pending deliveries, subscriptions, push endpoints, tokens, sessions,
// password, change log, counters or appNotificationId index, by key or by
// value. Only the time-ordered expiry and change-log indexes name them
// (their id, no content) until the purge reaches them, and the audit log
// records who they were; a user made again under the same name sees none of
// it.
func TestDeletingAUserLeavesNothingOfTheirsInTheStoreOrABackup(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	now := time.Now()
	u := newUser("erin")
	app := &resource.ApplicationRecord{ID: "app", AppID: "appid", TargetHostName: "a.example"}
	apply := entries(t, f)
	apply(&Command{Op: OpSetRules, Now: now.UnixNano(), Level: RulesLevel},
		&Command{Op: OpCreateUser, Now: now.UnixNano(), User: u}, &Command{Op: OpCreateApp, Now: now.UnixNano(), App: app})
	sub := func(id string, ch resource.Channel) *Command {
		return &Command{Op: OpCreateSub, Now: now.UnixNano(), Sub: &resource.SubscriptionRecord{Subscription: resource.Subscription{
			ID: id, UserID: u.ID, TargetHostName: "a.example", PlatformType: resource.PlatformWeb, Status: resource.SubActive,
			Channel: ch, ExpirationDateTime: resource.At(now.Add(time.Hour))}, AppID: app.ID}}
	}
	const endpoint = "https://push.example/ERIN-ENDPOINT"
	apply(sub("erin-live", resource.Channel{Type: resource.ChannelLive}),
		sub("erin-push", resource.Channel{Type: resource.ChannelWebPush, Endpoint: endpoint}),
		sub("erin-hook", resource.Channel{Type: resource.ChannelWebhook, URL: "https://hooks.example/ERIN-HOOK"}))
	grant := func(hash, kind string) TokenGrant {
		return TokenGrant{Hash: hash, Record: resource.TokenRecord{Kind: kind, PrincipalType: resource.PrincipalUser,
			PrincipalID: u.ID, ExpiresAt: resource.At(now.Add(time.Hour)), Session: "ERIN-SESSION"}}
	}
	apply(&Command{Op: OpIssueTokens, Now: now.UnixNano(), Client: &ClientInfo{Address: "192.0.2.7", UserAgent: "ERIN-AGENT"},
		Tokens: []TokenGrant{grant("ERIN-ACCESS", resource.TokenAccess), grant("ERIN-REFRESH", resource.TokenRefresh)}})
	var ids []string
	for i, k := range []string{"one", "two", "three"} {
		c := sendCmd(u.ID, app.ID, k, now.Add(time.Duration(i)), now.Add(time.Hour))
		secret := "ERIN-SECRET-" + k
		c.Notif.Payload = resource.Payload{RawContent: &secret}
		ids = append(ids, apply(c)[0].Value.(SendResult).Notification.ID)
	}
	read := resource.ReadRead
	apply(&Command{Op: OpPatchNotif, Now: now.UnixNano(), UserID: u.ID, ID: ids[1], NotifPatch: &resource.NotificationPatch{ReadState: &read}})
	apply(&Command{Op: OpDeleteNotifsBy, Now: now.UnixNano(), UserID: u.ID, AppID: app.ID, AppNotifID: "one"})
	apply(&Command{Op: OpDeliveryOutcomes, Now: now.UnixNano(), Outcomes: []DeliveryOutcome{{UserID: u.ID, NotificationID: ids[2],
		SubscriptionID: "erin-hook", Seq: 1, Outcome: OutcomeRetry, Attempted: true, Error: "ERIN-HOOK down", At: now.UnixNano(),
		NextAttempt: now.Add(time.Minute).UnixNano()}}})

	marks := []string{u.ID, "erin-", "ERIN-", string(endpointKey(endpoint)), ids[0], ids[1], ids[2]}
	for _, p := range []string{"n/", "na/", "d/", "dp/", "c/", "cnt/", "s/", "us/", "as/", "pe/", "t/", "pt/", "te/", "ss/", "sx/", "u/", "upn/"} {
		if len(keysUnder(t, db, p)) == 0 && p != "na/" && p != "dp/" {
			t.Fatalf("before the deletion nothing is under %s: the test does not set up what it checks", p)
		}
	}
	apply(&Command{Op: OpDeleteUser, Now: now.UnixNano(), UserID: u.ID})

	left := keysWhere(t, db, func([]byte) bool { return true })
	for k, v := range left {
		named := false
		for _, m := range marks {
			named = named || strings.Contains(k, m) || strings.Contains(v, m)
		}
		// The expiry and change-log time indexes name the user (and the
		// expiry index a notification id) until the purge drops them;
		// the audit log is the admin's record.
		if !named || strings.HasPrefix(k, "ne/") || strings.HasPrefix(k, "ce/") || strings.HasPrefix(k, "al/") {
			delete(left, k)
		}
	}
	if len(left) != 0 {
		t.Fatalf("after the deletion the store still holds %v", left)
	}
	var backup bytes.Buffer
	if err := WriteBackup(context.Background(), db, &backup); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"ERIN-", endpoint, string(endpointKey(endpoint)), "erin-"} {
		if bytes.Contains(backup.Bytes(), []byte(m)) {
			t.Errorf("a backup taken after the deletion holds %q", m)
		}
	}
	// The same name again is a new user who sees nothing of the old one.
	again := newUser("erin")
	apply(&Command{Op: OpCreateUser, Now: now.UnixNano(), User: again})
	s := &Store{db: db}
	if ch, err := s.Changes(again.ID, 0, 100); err != nil || len(ch) != 0 {
		t.Fatalf("the new erin's change log %v, %v", ch, err)
	}
	if subs, err := s.ListSubscriptions(again.ID); err != nil || len(subs) != 0 {
		t.Fatalf("the new erin's subscriptions %v, %v", subs, err)
	}
	if ss, err := s.Sessions(again.ID); err != nil || len(ss) != 0 {
		t.Fatalf("the new erin's sessions %v, %v", ss, err)
	}
}
