package httpapi_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
)

// pushKeys returns a browser-like PushSubscription key pair in base64url.
func pushKeys(t *testing.T) (p256dh, auth string) {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := make([]byte, 16)
	rand.Read(a)
	return base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()), base64.RawURLEncoding.EncodeToString(a)
}

const apnsToken = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

func TestCreateSubscriptionForEachChannelTypeNeverEchoesKeyMaterial(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "tasks.contoso.com")
	u := n.newUser(t, "alice")
	p256dh, auth := pushKeys(t)
	fcmToken := "fcm-registration-token-" + strings.Repeat("z", 40)

	cases := []struct {
		name, platform, wantPlatform string
		channel                      map[string]any
		wantChannel                  map[string]any
		secrets                      []string // must not appear in any answer
	}{
		{"live", "windows", "windows", map[string]any{"type": "live"}, map[string]any{"type": "live"}, nil},
		{"webPush", "webPush", "web", map[string]any{"type": "webPush", "endpoint": "https://push.example.net/send/abc",
			"expirationTime": nil, "keys": map[string]any{"p256dh": p256dh, "auth": auth}},
			map[string]any{"type": "webPush", "endpoint": "https://push.example.net/send/abc"}, []string{p256dh, auth}},
		{"webhook", "Web", "web", map[string]any{"type": "webhook", "url": "https://hooks.example.com/herald"},
			map[string]any{"type": "webhook", "url": "https://hooks.example.com/herald"}, nil},
		{"fcm", "android", "android", map[string]any{"type": "fcm", "token": fcmToken}, map[string]any{"type": "fcm"}, []string{fcmToken}},
		{"apns", "iOS", "ios", map[string]any{"type": "apns", "token": apnsToken, "topic": "com.contoso.tasks", "environment": "sandbox"},
			map[string]any{"type": "apns", "topic": "com.contoso.tasks", "environment": "sandbox"}, []string{apnsToken}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", map[string]any{"targetHostName": a.Host,
				"platformType": c.platform, "deviceName": "device " + c.name, "channel": c.channel}).expect(t, http.StatusCreated)
			s := r.obj(t)
			id := str(s, "id")
			if raw, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(raw) < 16 {
				t.Errorf("UNSID %q is not at least 128 random bits", id)
			}
			if loc := r.Header.Get("Location"); !strings.HasSuffix(loc, "/me/notificationSubscriptions/"+id) {
				t.Errorf("Location %q", loc)
			}
			if s["userId"] != u.ID || s["targetHostName"] != a.Host || s["platformType"] != c.wantPlatform ||
				s["deviceName"] != "device "+c.name || s["status"] != "active" || !wireTime.MatchString(str(s, "createdDateTime")) {
				t.Errorf("subscription %v", s)
			}
			if _, ok := s["statusReason"]; !ok {
				t.Errorf("no statusReason in %v", s)
			}
			exp, err := time.Parse(time.RFC3339, str(s, "expirationDateTime"))
			if err != nil || exp.Before(start.Add(30*24*time.Hour-time.Minute)) || exp.After(time.Now().Add(30*24*time.Hour+time.Minute)) {
				t.Errorf("default expirationDateTime %v, want now + 30 days", s["expirationDateTime"])
			}
			if string(mustJSON(s["channel"])) != string(mustJSON(c.wantChannel)) {
				t.Errorf("channel %s, want %s", mustJSON(s["channel"]), mustJSON(c.wantChannel))
			}
			secret, hasSecret := s["secret"]
			if c.name == "webhook" {
				if sec, _ := secret.(string); !strings.HasPrefix(sec, "whsec_") || len(sec) < 20 {
					t.Errorf("webhook secret %v, want whsec_...", secret)
				}
				c.secrets = append(c.secrets, secret.(string))
			} else if hasSecret {
				t.Errorf("%s subscription has a secret: %v", c.name, secret)
			}

			got := n.get(t, u.Token, "/v1.0/me/notificationSubscriptions/"+id).expect(t, http.StatusOK)
			list := n.get(t, u.Token, "/v1.0/me/notificationSubscriptions").expect(t, http.StatusOK)
			admin := n.get(t, n.admin, "/v1.0/users/"+u.ID+"/notificationSubscriptions").expect(t, http.StatusOK)
			if _, ok := got.obj(t)["secret"]; ok {
				t.Errorf("GET shows the webhook secret: %s", got.Body)
			}
			if g := got.obj(t); str(g, "id") != id || string(mustJSON(g["channel"])) != string(mustJSON(c.wantChannel)) {
				t.Errorf("GET %s", got.Body)
			}
			for _, answer := range []*resp{r, got, list, admin} {
				for _, sec := range c.secrets {
					if strings.Contains(string(answer.Body), sec) && !(answer == r && strings.HasPrefix(sec, "whsec_")) {
						t.Errorf("%s echoes key material %q", answer.what, sec)
					}
				}
				if strings.Contains(string(answer.Body), `"keys"`) || strings.Contains(string(answer.Body), `"token"`) {
					t.Errorf("%s shows keys or a device token: %s", answer.what, answer.Body)
				}
			}
		})
	}
	if got := n.get(t, u.Token, "/v1.0/me/notificationSubscriptions").expect(t, 200).value(t); len(got) != len(cases) {
		t.Errorf("list has %d subscriptions, want %d", len(got), len(cases))
	}
}

func TestCreateSubscriptionRejectsInvalidInputWithoutStoringIt(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "tasks.contoso.com")
	u := n.newUser(t, "alice")
	n.subscribe(t, u, a.Host)
	p256dh, auth := pushKeys(t)
	before := n.snapshot(t, u.Token, "/v1.0/me/notificationSubscriptions")

	base := func(kv ...any) map[string]any {
		m := map[string]any{"targetHostName": a.Host, "platformType": "web", "deviceName": "laptop", "channel": map[string]any{"type": "live"}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	wp := func(kv ...any) map[string]any {
		c := map[string]any{"type": "webPush", "endpoint": "https://push.example.net/x", "keys": map[string]any{"p256dh": p256dh, "auth": auth}}
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	cases := []struct {
		name   string
		body   any
		target string
	}{
		{"unregistered targetHostName", base("targetHostName", "unknown.example.com"), "targetHostName"},
		{"no targetHostName", base("targetHostName", nil), "targetHostName"},
		{"app id as targetHostName", base("targetHostName", a.AppID), "targetHostName"},
		{"unknown platformType", base("platformType", "blackberry"), "platformType"},
		{"no platformType", base("platformType", nil), "platformType"},
		{"no channel", base("channel", nil), "channel"},
		{"unknown channel type", base("channel", map[string]any{"type": "sms"}), "channel.type"},
		{"live with url", base("channel", map[string]any{"type": "live", "url": "https://x.example.com"}), "channel"},
		{"webPush without keys", base("channel", map[string]any{"type": "webPush", "endpoint": "https://push.example.net/x"}), "channel.keys"},
		{"webPush short p256dh", base("channel", wp("keys", map[string]any{"p256dh": "AAAA", "auth": auth})), "channel.keys.p256dh"},
		// 65 bytes with the uncompressed prefix, but (0, 0) is on no curve.
		{"webPush p256dh off the curve", base("channel", wp("keys", map[string]any{"p256dh": "B" + strings.Repeat("A", 86), "auth": auth})), "channel.keys.p256dh"},
		{"webPush bad auth", base("channel", wp("keys", map[string]any{"p256dh": p256dh, "auth": "AAAA"})), "channel.keys.auth"},
		{"webPush no endpoint", base("channel", wp("endpoint", "")), "channel.endpoint"},
		{"webPush http endpoint", base("channel", wp("endpoint", "http://push.example.net/x")), "channel.endpoint"},
		{"webPush loopback endpoint", base("channel", wp("endpoint", "https://127.0.0.1/x")), "channel.endpoint"},
		{"webhook without url", base("channel", map[string]any{"type": "webhook"}), "channel.url"},
		{"webhook ftp url", base("channel", map[string]any{"type": "webhook", "url": "ftp://hooks.example.com/x"}), "channel.url"},
		{"webhook private address", base("channel", map[string]any{"type": "webhook", "url": "https://10.1.2.3/x"}), "channel.url"},
		{"webhook localhost", base("channel", map[string]any{"type": "webhook", "url": "https://localhost/x"}), "channel.url"},
		{"webhook with keys", base("channel", map[string]any{"type": "webhook", "url": "https://hooks.example.com/x",
			"keys": map[string]any{"p256dh": p256dh, "auth": auth}}), "channel"},
		{"fcm without token", base("channel", map[string]any{"type": "fcm"}), "channel.token"},
		{"apns non-hex token", base("channel", map[string]any{"type": "apns", "token": strings.Repeat("z", 64), "topic": "com.x"}), "channel.token"},
		{"apns without topic", base("channel", map[string]any{"type": "apns", "token": apnsToken}), "channel.topic"},
		{"apns bad environment", base("channel", map[string]any{"type": "apns", "token": apnsToken, "topic": "com.x", "environment": "staging"}), "channel.environment"},
		{"expiration beyond 90 days", base("expirationDateTime", time.Now().Add(91*24*time.Hour).UTC().Format(time.RFC3339)), "expirationDateTime"},
		{"expiration in the past", base("expirationDateTime", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)), "expirationDateTime"},
		{"expiration not a time", base("expirationDateTime", "tomorrow"), "expirationDateTime"},
		{"long deviceName", base("deviceName", strings.Repeat("d", 257)), "deviceName"},
		{"deviceName with a NUL", base("deviceName", "a\x00b"), "deviceName"},
		{"unknown property", base("resource", "/me"), "resource"},
		{"unknown channel property", base("channel", map[string]any{"type": "live", "priority": 1}), "channel.priority"},
		{"unknown key property", base("channel", wp("keys", map[string]any{"p256dh": p256dh, "auth": auth, "extra": "x"})), "channel.keys.extra"},
		{"status is read-only", base("status", "disabled"), "status"},
		{"array body", []any{base()}, ""},
		{"malformed JSON", `{"targetHostName":`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantInvalid(t, n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", c.body), c.target)
		})
	}
	sameSnapshot(t, "subscriptions", before, n.snapshot(t, u.Token, "/v1.0/me/notificationSubscriptions"))

	// An application token may not register devices.
	wantError(t, n.post(t, a.Token, "/v1.0/me/notificationSubscriptions", base()), http.StatusForbidden, "accessDenied")
	wantError(t, n.get(t, a.Token, "/v1.0/me/notificationSubscriptions"), http.StatusForbidden, "accessDenied")

	// The accepted edges.
	in89 := time.Now().Add(89 * 24 * time.Hour).UTC().Truncate(time.Millisecond)
	s := n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", base("expirationDateTime", in89.Format(time.RFC3339Nano), "platformType", "WEBPUSH")).
		expect(t, http.StatusCreated).obj(t)
	if s["expirationDateTime"] != in89.Format("2006-01-02T15:04:05.000Z") || s["platformType"] != "web" {
		t.Errorf("subscription %v, want expiration %s and platform web", s, in89)
	}
}

func TestSubscriptionPatchRenewsAndRenamesAndDeleteRemoves(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "tasks.contoso.com")
	u := n.newUser(t, "alice")
	id := n.subscribe(t, u, a.Host)
	path := "/v1.0/me/notificationSubscriptions/" + id

	p := n.patch(t, u.Token, path, map[string]any{"deviceName": "Alice's phone"}).expect(t, http.StatusOK).obj(t)
	if p["deviceName"] != "Alice's phone" || p["id"] != id {
		t.Errorf("rename answer %v", p)
	}
	renew := time.Now().Add(60 * 24 * time.Hour).UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z")
	p = n.patch(t, u.Token, path, map[string]any{"expirationDateTime": renew}).expect(t, http.StatusOK).obj(t)
	if p["expirationDateTime"] != renew || p["deviceName"] != "Alice's phone" {
		t.Errorf("renew answer %v", p)
	}
	got := n.get(t, u.Token, path).expect(t, http.StatusOK).obj(t)
	if got["expirationDateTime"] != renew || got["deviceName"] != "Alice's phone" || got["status"] != "active" {
		t.Errorf("after PATCH: %v", got)
	}

	before := n.snapshot(t, u.Token, path)
	wantInvalid(t, n.patch(t, u.Token, path, map[string]any{"expirationDateTime": time.Now().Add(100 * 24 * time.Hour).UTC().Format(time.RFC3339)}), "expirationDateTime")
	wantInvalid(t, n.patch(t, u.Token, path, map[string]any{"expirationDateTime": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}), "expirationDateTime")
	wantInvalid(t, n.patch(t, u.Token, path, map[string]any{"deviceName": "x", "channel": map[string]any{"type": "live"}}), "channel")
	wantInvalid(t, n.patch(t, u.Token, path, map[string]any{"deviceName": strings.Repeat("d", 257)}), "deviceName")
	wantError(t, n.patch(t, u.Token, path, map[string]any{}), http.StatusBadRequest, "invalidRequest")
	sameSnapshot(t, "subscription", before, n.snapshot(t, u.Token, path))

	n.del(t, u.Token, path).expect(t, http.StatusNoContent)
	wantError(t, n.get(t, u.Token, path), http.StatusNotFound, "itemNotFound")
	wantError(t, n.patch(t, u.Token, path, map[string]any{"deviceName": "x"}), http.StatusNotFound, "itemNotFound")
	wantError(t, n.del(t, u.Token, path), http.StatusNotFound, "itemNotFound")
	if got := n.get(t, u.Token, "/v1.0/me/notificationSubscriptions").expect(t, 200).value(t); len(got) != 0 {
		t.Errorf("list after delete: %v", got)
	}
	// A deleted UNSID no longer receives.
	wantError(t, n.send(t, a, id, visual("gone")), http.StatusForbidden, "accessDenied")
}

func TestSubscriptionsOfOtherUsersAreNotFound(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "tasks.contoso.com")
	alice := n.newUser(t, "alice")
	bob := n.newUser(t, "bob")
	id := n.subscribe(t, alice, a.Host)
	path := "/v1.0/me/notificationSubscriptions/" + id
	before := n.snapshot(t, alice.Token, path)

	wantError(t, n.get(t, bob.Token, path), http.StatusNotFound, "itemNotFound")
	wantError(t, n.patch(t, bob.Token, path, map[string]any{"deviceName": "mine now"}), http.StatusNotFound, "itemNotFound")
	wantError(t, n.del(t, bob.Token, path), http.StatusNotFound, "itemNotFound")
	if got := n.get(t, bob.Token, "/v1.0/me/notificationSubscriptions").expect(t, 200).value(t); len(got) != 0 {
		t.Errorf("bob sees %v", got)
	}
	sameSnapshot(t, "alice's subscription", before, n.snapshot(t, alice.Token, path))
}

func TestAdminReadsAnyUsersSubscriptions(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "tasks.contoso.com")
	alice := n.newUser(t, "alice")
	bob := n.newUser(t, "bob")
	s1 := n.subscribe(t, alice, a.Host)
	s2 := n.subscribe(t, alice, a.Host)
	n.subscribe(t, bob, a.Host)

	for _, ref := range []string{alice.ID, "alice"} {
		got := ids(n.get(t, n.admin, "/v1.0/users/"+ref+"/notificationSubscriptions").expect(t, http.StatusOK).value(t))
		slices.Sort(got)
		want := []string{s1, s2}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("admin read of %s: %v, want %v", ref, got, want)
		}
	}
	wantError(t, n.get(t, n.admin, "/v1.0/users/nobody/notificationSubscriptions"), http.StatusNotFound, "itemNotFound")
	wantError(t, n.get(t, bob.Token, "/v1.0/users/alice/notificationSubscriptions"), http.StatusForbidden, "accessDenied")
}

func TestSubscriptionQuotaIs507AndStoresNothing(t *testing.T) {
	t.Parallel()
	n := start(t, func(c *node.Config) { c.Limits.MaxSubscriptionsPerUser = 2 })
	a := n.newApp(t, "tasks.contoso.com")
	alice := n.newUser(t, "alice")
	bob := n.newUser(t, "bob")
	first := n.subscribe(t, alice, a.Host)
	n.subscribe(t, alice, a.Host)
	before := n.snapshot(t, alice.Token, "/v1.0/me/notificationSubscriptions")

	body := map[string]any{"targetHostName": a.Host, "platformType": "web", "channel": map[string]any{"type": "live"}}
	wantError(t, n.post(t, alice.Token, "/v1.0/me/notificationSubscriptions", body), http.StatusInsufficientStorage, "quotaLimitReached")
	sameSnapshot(t, "subscriptions", before, n.snapshot(t, alice.Token, "/v1.0/me/notificationSubscriptions"))

	// The quota is per user, and freed by a delete.
	n.subscribe(t, bob, a.Host)
	n.del(t, alice.Token, "/v1.0/me/notificationSubscriptions/"+first).expect(t, http.StatusNoContent)
	n.post(t, alice.Token, "/v1.0/me/notificationSubscriptions", body).expect(t, http.StatusCreated)
}

func TestExpiredSubscriptionRefusesSendsUntilRenewed(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "tasks.contoso.com")
	u := n.newUser(t, "alice")
	soon := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	var s struct{ ID string }
	n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", map[string]any{"targetHostName": a.Host, "platformType": "web",
		"channel": map[string]any{"type": "live"}, "expirationDateTime": soon}).expect(t, http.StatusCreated).into(t, &s)
	path := "/v1.0/me/notificationSubscriptions/" + s.ID

	eventually(t, 10*time.Second, "the subscription to show as expired", func() bool {
		return n.get(t, u.Token, path).expect(t, http.StatusOK).obj(t)["status"] == "expired"
	})
	wantError(t, n.send(t, a, s.ID, visual("too late")), http.StatusForbidden, "accessDenied")
	if got := n.get(t, u.Token, "/v1.0/me/notifications?status=any").expect(t, 200).value(t); len(got) != 0 {
		t.Errorf("a send through an expired subscription was stored: %v", got)
	}

	renew := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339Nano)
	if p := n.patch(t, u.Token, path, map[string]any{"expirationDateTime": renew}).expect(t, http.StatusOK).obj(t); p["status"] != "active" {
		t.Errorf("renewed subscription %v, want status active", p)
	}
	n.sendOK(t, a, s.ID, visual("renewed"))
}

// Only active subscriptions count toward the quota, and a renewal was not
// counted at all: a user made subscriptions that expired a moment later,
// as many as the request rate allowed, and renewed them all, holding any
// number of active ones (each a delivery record per notification) and any
// number of expired ones (each read by every send to the user, and by the
// next create, until the purge thirty days on).
func TestSubscriptionsThatExpireAtOnceDoNotEscapeTheQuota(t *testing.T) {
	t.Parallel()
	const quota = 2
	n := start(t, func(c *node.Config) { c.Limits.MaxSubscriptionsPerUser = quota })
	a := n.newApp(t, "tasks.contoso.com")
	alice := n.newUser(t, "alice")
	subs := "/v1.0/me/notificationSubscriptions"
	soon := func() map[string]any {
		return map[string]any{"targetHostName": a.Host, "platformType": "web", "channel": map[string]any{"type": "live"},
			"expirationDateTime": time.Now().Add(300 * time.Millisecond).UTC().Format(time.RFC3339Nano)}
	}
	// Create subscriptions that expire at once until the node refuses one;
	// it must refuse before the user holds more than the documented bound.
	held := raft.HeldSubsFactor * quota
	var ids []string
	for len(ids) <= held {
		r := n.post(t, alice.Token, subs, soon())
		if r.Status == http.StatusInsufficientStorage {
			break
		}
		var s struct{ ID string }
		r.expect(t, http.StatusCreated).into(t, &s)
		ids = append(ids, s.ID)
		eventually(t, 10*time.Second, "the subscription to expire", func() bool {
			return n.get(t, alice.Token, subs+"/"+s.ID).expect(t, http.StatusOK).obj(t)["status"] == "expired"
		})
	}
	if got := len(n.get(t, alice.Token, subs).expect(t, http.StatusOK).value(t)); got > held {
		t.Fatalf("alice holds %d subscriptions, want at most %d", got, held)
	}
	// Renewing them makes them active again, up to the quota only.
	renew := map[string]any{"expirationDateTime": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339Nano)}
	renewed := 0
	for _, id := range ids {
		switch r := n.patch(t, alice.Token, subs+"/"+id, renew); r.Status {
		case http.StatusOK:
			renewed++
		default:
			wantError(t, r, http.StatusInsufficientStorage, "quotaLimitReached")
		}
	}
	active := 0
	for _, s := range n.get(t, alice.Token, subs).expect(t, http.StatusOK).value(t) {
		if s["status"] == "active" {
			active++
		}
	}
	if renewed != quota || active != quota {
		t.Errorf("%d renewals taken, %d subscriptions active; want %d each (the quota)", renewed, active, quota)
	}
}
