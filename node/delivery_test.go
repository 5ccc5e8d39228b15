package node_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/docs/examples/webhookverify"
	"github.com/herald-notify/herald/fanout/apns/apnstest"
	"github.com/herald-notify/herald/fanout/fcm/fcmtest"
	"github.com/herald-notify/herald/fanout/webhook/webhooktest"
	"github.com/herald-notify/herald/fanout/webpush/webpushtest"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/resource"
)

// These tests prove API.md §7 end to end: a real node, its real REST API,
// and loopback stand-ins that speak each channel's real protocol (a push
// service that checks VAPID and decrypts with the browser's key, a webhook
// receiver that verifies with the Standard Webhooks library, FCM and APNs
// fakes that check the provider JWTs, headers and bodies).

const (
	appHost  = "tasks.contoso.test"
	alice    = "alice"
	alicePW  = "alice-password-1"
	waitLong = 20 * time.Second
)

// deliveryRig is a node with every channel configured against stand-ins,
// an application, and a user with tokens for both.
type deliveryRig struct {
	t     testing.TB
	cfg   node.Config
	node  *testnode.Node
	push  *webpushtest.PushService
	hooks *webhooktest.Receiver
	fcm   *fcmtest.Server
	apns  *apnstest.Server

	userToken, appToken string
	user, app           *client.Client
	vapidKey            string
	unsid               string // a live subscription, the X-UNS-ID of sends
}

// newDeliveryRig starts a node with short backoffs and every channel
// pointed at a stand-in; edit may change the config before the start.
func newDeliveryRig(t testing.TB, edit func(*node.Config)) *deliveryRig {
	t.Helper()
	r := &deliveryRig{t: t}
	r.push = webpushtest.NewPushService(t, webpushtest.Options{})
	r.hooks = webhooktest.NewReceiver(t)
	r.fcm = fcmtest.New(t, fcmtest.Options{})
	r.apns = apnstest.New(t, apnstest.Options{})

	creds := t.TempDir() // apart from the data directory, as an operator keeps them
	write := func(name string, b []byte) string {
		p := filepath.Join(creds, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := testnode.Config(t, t.TempDir())
	cfg.WebPush.AllowPrivate, cfg.Webhook.AllowPrivate = true, true
	cfg.Webhook.DisableAfter = time.Hour
	cfg.Delivery.MinBackoff, cfg.Delivery.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	cfg.Delivery.Timeout = time.Second
	cfg.Limits.AppRate, cfg.Limits.UserRate = 0, 0 // the tests poll
	cfg.FCM = node.FCMConfig{CredentialsFile: write("fcm.json", r.fcm.ServiceAccountJSON()),
		Endpoint: r.fcm.URL, TokenURL: r.fcm.TokenURL()}
	cfg.APNs = node.APNsConfig{KeyFile: write("apns.p8", r.apns.KeyPEM()), KeyID: r.apns.KeyID, TeamID: r.apns.TeamID,
		URL: r.apns.URL, CAFile: write("apns-ca.pem", r.apns.CertPEM())}
	if edit != nil {
		edit(&cfg)
	}
	r.cfg = cfg
	r.node = testnode.Start(t, &r.cfg)

	ctx := context.Background()
	anon := r.client("")
	tok, err := anon.PasswordToken(ctx, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	admin := r.client(tok.AccessToken)
	app, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Tasks", TargetHostName: appHost})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: alice, Password: alicePW}); err != nil {
		t.Fatal(err)
	}
	ut, err := anon.PasswordToken(ctx, alice, alicePW)
	if err != nil {
		t.Fatal(err)
	}
	at, err := anon.ClientCredentialsToken(ctx, app.AppID, app.PasswordCredentials[0].SecretText)
	if err != nil {
		t.Fatal(err)
	}
	r.userToken, r.appToken = ut.AccessToken, at.AccessToken
	r.connect(r.node)

	var key struct{ PublicKey string }
	if err := anon.Do(ctx, http.MethodGet, "/v1.0/webPush/vapidPublicKey", nil, &key); err != nil || key.PublicKey == "" {
		t.Fatalf("vapidPublicKey: %q, %v", key.PublicKey, err)
	}
	r.vapidKey = key.PublicKey
	r.unsid = r.subscribe("web", map[string]any{"type": "live"}).ID

	// No stand-in may have seen a request that broke its protocol.
	t.Cleanup(func() {
		for _, m := range r.push.Rejected() {
			t.Errorf("the push service refused a request to %s: %v", m.Endpoint, m.Err)
		}
		for _, q := range r.hooks.Rejected() {
			t.Errorf("the webhook receiver refused a request to %s: %v", q.URL, q.Err)
		}
	})
	return r
}

func (r *deliveryRig) client(token string) *client.Client {
	c, err := client.New(r.node.URL, client.WithToken(token))
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// connect points the user's and the application's clients at n.
func (r *deliveryRig) connect(n *testnode.Node) {
	r.node = n
	r.user, r.app = r.client(r.userToken), r.client(r.appToken)
}

type createdSub struct {
	resource.Subscription
	Secret string `json:"secret"`
}

// subscribe registers one of alice's devices with POST
// /v1.0/me/notificationSubscriptions.
func (r *deliveryRig) subscribe(platform string, channel any) createdSub {
	r.t.Helper()
	var out createdSub
	err := r.user.Do(context.Background(), http.MethodPost, "/v1.0/me/notificationSubscriptions",
		map[string]any{"targetHostName": appHost, "platformType": platform, "deviceName": "device " + platform, "channel": channel}, &out)
	if err != nil {
		r.t.Fatalf("subscribe %s %v: %v", platform, channel, err)
	}
	if out.ID == "" || out.Status != resource.SubActive {
		r.t.Fatalf("subscription %+v", out)
	}
	return out
}

// webPush subscribes a new browser at the push service with the server's
// VAPID key, and registers its PushSubscription.toJSON() with Herald.
func (r *deliveryRig) webPush(answers ...webpushtest.Answer) (createdSub, string) {
	browser := webpushtest.NewBrowser(r.t)
	endpoint := r.push.Subscribe(browser, r.vapidKey)
	r.push.Script(endpoint, answers...)
	return r.subscribe("web", browser.Channel(endpoint)), endpoint
}

// webhook registers a new receiver endpoint and gives it the secret of the
// 201 answer.
func (r *deliveryRig) webhook(answers ...webhooktest.Answer) (createdSub, string) {
	url := r.hooks.Endpoint()
	r.hooks.Script(url, answers...)
	s := r.subscribe("windows", map[string]any{"type": "webhook", "url": url})
	if !strings.HasPrefix(s.Secret, "whsec_") {
		r.t.Fatalf("webhook secret %q", s.Secret)
	}
	if err := r.hooks.SetSecret(url, s.Secret); err != nil {
		r.t.Fatalf("the Standard Webhooks library does not take the secret %q: %v", s.Secret, err)
	}
	return s, url
}

func (r *deliveryRig) fcmDevice(answers ...fcmtest.Answer) (createdSub, string) {
	token := "fcm-" + randomHex(r.t, 16)
	r.fcm.Script(token, answers...)
	return r.subscribe("android", map[string]any{"type": "fcm", "token": token}), token
}

func (r *deliveryRig) apnsDevice(answers ...apnstest.Answer) (createdSub, string) {
	device := randomHex(r.t, 32)
	r.apns.Script(device, answers...)
	return r.subscribe("ios", map[string]any{"type": "apns", "token": device, "topic": r.apns.Topic, "environment": "production"}), device
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// send posts a notification as the application.
func (r *deliveryRig) send(n client.Notification) *client.Notification {
	r.t.Helper()
	out, err := r.app.Send(context.Background(), r.unsid, &n)
	if err != nil {
		r.t.Fatalf("send: %v", err)
	}
	return out
}

// deliveries is GET /v1.0/me/notifications/{id}/deliveries, by subscription.
func (r *deliveryRig) deliveries(nid string) map[string]resource.Delivery {
	r.t.Helper()
	var out struct{ Value []resource.Delivery }
	if err := r.user.Do(context.Background(), http.MethodGet, "/v1.0/me/notifications/"+nid+"/deliveries", nil, &out); err != nil {
		r.t.Fatalf("deliveries: %v", err)
	}
	m := map[string]resource.Delivery{}
	for _, d := range out.Value {
		m[d.SubscriptionID] = d
	}
	return m
}

func (r *deliveryRig) subscription(id string) resource.Subscription {
	r.t.Helper()
	var s resource.Subscription
	if err := r.user.Do(context.Background(), http.MethodGet, "/v1.0/me/notificationSubscriptions/"+id, nil, &s); err != nil {
		r.t.Fatalf("subscription: %v", err)
	}
	return s
}

// settled waits until none of the named deliveries of nid is pending, and
// returns them all.
func (r *deliveryRig) settled(nid string, sids ...string) map[string]resource.Delivery {
	r.t.Helper()
	var ds map[string]resource.Delivery
	eventually(r.t, func() (bool, string) {
		ds = r.deliveries(nid)
		for _, sid := range sids {
			if d, ok := ds[sid]; !ok || d.State == resource.DeliveryPending {
				return false, fmt.Sprintf("delivery to %s: %+v", sid, d)
			}
		}
		return true, ""
	})
	return ds
}

// eventually polls cond until it holds, failing with cond's last word when
// it has not within waitLong.
func eventually(t testing.TB, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantDelivered(t *testing.T, what string, d resource.Delivery, attempts int) {
	t.Helper()
	if d.State != resource.DeliveryDelivered || d.Attempts != attempts || d.LastError != nil || d.DeliveredDateTime.IsZero() {
		t.Errorf("%s: %+v, want delivered after %d attempt(s)", what, d, attempts)
	}
}

func visual(title, body string) *client.Payload {
	return &client.Payload{VisualContent: &client.VisualContent{Title: title, Body: body}}
}

func TestDeliveryReachesEveryChannelAndDismissesEverywhere(t *testing.T) {
	r := newDeliveryRig(t, nil)
	wp, endpoint := r.webPush()
	wh, hookURL := r.webhook()
	fc, fcmToken := r.fcmDevice()
	ap, device := r.apnsDevice()
	external := []string{wp.ID, wh.ID, fc.ID, ap.ID}

	n := r.send(client.Notification{AppNotificationID: "task-42", GroupName: "tasks",
		Payload: &client.Payload{RawContent: `{"task":42}`, VisualContent: &client.VisualContent{Title: "Review due", Body: "Today"}}})
	ds := r.settled(n.ID, external...)
	for i, ch := range []string{"webPush", "webhook", "fcm", "apns"} {
		wantDelivered(t, ch, ds[external[i]], 1)
		if ds[external[i]].ChannelType != ch {
			t.Errorf("%s: channelType %q", ch, ds[external[i]].ChannelType)
		}
	}
	if d := ds[r.unsid]; d.ChannelType != "live" || d.State != resource.DeliveryPending || d.Attempts != 0 {
		t.Errorf("live subscription without a stream: %+v, want pending", d)
	}

	// Web Push: the browser decrypts it; headers from the notification.
	pm := r.push.Delivered(endpoint)
	if len(pm) != 1 {
		t.Fatalf("push service delivered %d messages, want 1", len(pm))
	}
	got := pm[0].JSON()
	if got["type"] != "created" || got["id"] != n.ID || got["title"] != "Review due" || got["body"] != "Today" ||
		got["rawContent"] != `{"task":42}` || got["appNotificationId"] != "task-42" {
		t.Errorf("push plaintext %s", pm[0].Plaintext)
	}
	ttl := time.Until(n.ExpirationDateTime).Seconds()
	if pm[0].Urgency != "high" || pm[0].Topic == "" || float64(pm[0].TTL) > ttl+1 || float64(pm[0].TTL) < ttl-60 {
		t.Errorf("Urgency %q Topic %q TTL %d (expiry in %.0fs)", pm[0].Urgency, pm[0].Topic, pm[0].TTL, ttl)
	}
	if pm[0].K != r.vapidKey {
		t.Errorf("k= %s, want the key of /v1.0/webPush/vapidPublicKey %s", pm[0].K, r.vapidKey)
	}

	// Webhook: verified by the Standard Webhooks library.
	hm := r.hooks.Delivered(hookURL)
	if len(hm) != 1 || hm[0].Event.Type != "notification.created" || hm[0].Event.SubscriptionID != wh.ID ||
		hm[0].Notification()["id"] != n.ID || hm[0].ID == "" {
		t.Fatalf("webhook requests %+v", hm)
	}

	// FCM and APNs: a visible alert, urgent.
	fs := r.fcm.Sends(fcmToken)
	if len(fs) != 1 || fs[0].Message.Notification == nil || fs[0].Message.Notification.Title != "Review due" ||
		fs[0].Message.Data["id"] != n.ID || fs[0].Message.Android.Priority != "high" {
		t.Fatalf("fcm sends %+v", fs)
	}
	as := r.apns.Requests(device)
	if len(as) != 1 || as[0].Header.Get("apns-push-type") != "alert" || as[0].Header.Get("apns-priority") != "10" ||
		as[0].Body["id"] != n.ID || as[0].Header.Get("apns-collapse-id") != "task-42" {
		t.Fatalf("apns requests %+v", as)
	}
	if alert := as[0].Body["aps"].(map[string]any)["alert"].(map[string]any); alert["title"] != "Review due" {
		t.Errorf("apns alert %v", alert)
	}

	// Universal dismiss: read, then dismissed, then deleted on one device
	// reaches every other as a compact, silent message.
	steps := []struct {
		name   string
		do     func() error
		event  string
		fields map[string]any
	}{
		{"read", func() error {
			return r.user.Do(context.Background(), http.MethodPatch, "/v1.0/me/notifications/"+n.ID, map[string]string{"readState": "read"}, nil)
		}, "updated", map[string]any{"readState": "read"}},
		{"dismissed", func() error {
			return r.user.Do(context.Background(), http.MethodPatch, "/v1.0/me/notifications/"+n.ID, map[string]string{"userActionState": "dismissed"}, nil)
		}, "updated", map[string]any{"userActionState": "dismissed"}},
		{"deleted", func() error {
			return r.user.Do(context.Background(), http.MethodDelete, "/v1.0/me/notifications/"+n.ID, nil, nil)
		}, "deleted", map[string]any{"reason": "deleted"}},
	}
	ids := map[string]bool{hm[0].ID: true}
	for i, step := range steps {
		want := i + 2 // messages so far to each endpoint
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		eventually(t, func() (bool, string) {
			ds := r.deliveries(n.ID)
			for _, sid := range external {
				if d := ds[sid]; d.State != resource.DeliveryDelivered || d.Attempts != want {
					return false, fmt.Sprintf("%s: delivery %+v, want delivered after %d attempts", step.name, d, want)
				}
			}
			return true, ""
		})

		p := r.push.Delivered(endpoint)[want-1]
		if p.JSON()["type"] != step.event || p.JSON()["id"] != n.ID {
			t.Errorf("%s: push plaintext %s", step.name, p.Plaintext)
		}
		for k, v := range step.fields {
			if p.JSON()[k] != v {
				t.Errorf("%s: push plaintext %s, want %s %v", step.name, p.Plaintext, k, v)
			}
		}
		h := r.hooks.Delivered(hookURL)[want-1]
		if h.Event.Type != "notification."+step.event || ids[h.ID] {
			t.Errorf("%s: webhook %s with webhook-id %s (a new message needs a new id)", step.name, h.Event.Type, h.ID)
		}
		ids[h.ID] = true
		f := r.fcm.Sends(fcmToken)[want-1].Message
		if f.Notification != nil || f.Android.Priority != "normal" || f.Data["type"] != step.event || f.Data["id"] != n.ID {
			t.Errorf("%s: fcm %+v, want a silent data message", step.name, f)
		}
		a := r.apns.Requests(device)[want-1]
		if a.Header.Get("apns-push-type") != "background" || a.Header.Get("apns-priority") != "5" || a.Body["type"] != step.event {
			t.Errorf("%s: apns %v %v, want a background push", step.name, a.Header, a.Body)
		}
		for k, v := range step.fields {
			if f.Data[k] != v || a.Body[k] != v {
				t.Errorf("%s: fcm data %v, apns body %v, want %s %v", step.name, f.Data, a.Body, k, v)
			}
		}
		if step.event == "deleted" {
			if got := fmt.Sprint(p.JSON()); got != fmt.Sprintf("map[id:%s reason:deleted type:deleted]", n.ID) {
				t.Errorf("deleted: push plaintext %s, want only type, id and reason", got)
			}
			if got := fmt.Sprint(h.Notification()); got != fmt.Sprintf("map[@removed:map[reason:deleted] id:%s]", n.ID) {
				t.Errorf("deleted: webhook notification %s", got)
			}
		}
	}

	// Metrics count the attempts by channel: four messages, four deliveries.
	resp, err := r.node.GetMetrics()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, ch := range []string{"webPush", "webhook", "fcm", "apns"} {
		line := fmt.Sprintf(`herald_delivery_attempts_total{channel=%q,outcome="delivered"} 4`, ch)
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
}

func TestTargetPolicyDecidesWhichSubscriptionsGetADelivery(t *testing.T) {
	r := newDeliveryRig(t, nil)
	wp, endpoint := r.webPush()
	wh, hookURL := r.webhook()
	fc, fcmToken := r.fcmDevice()
	ap, device := r.apnsDevice()

	for _, c := range []struct {
		platforms []string
		want      []string
	}{
		{[]string{"android", "iOS"}, []string{fc.ID, ap.ID}},
		{[]string{"webPush"}, []string{wp.ID, r.unsid}}, // web: the webPush and the live subscription
		{[]string{"WINDOWS"}, []string{wh.ID}},
		{nil, []string{wp.ID, wh.ID, fc.ID, ap.ID, r.unsid}},
	} {
		n := r.send(client.Notification{Payload: visual("For "+fmt.Sprint(c.platforms), ""),
			TargetPolicy: &client.TargetPolicy{PlatformTypes: c.platforms}})
		// The records are written with the notification, before the 201.
		ds := r.deliveries(n.ID)
		if len(ds) != len(c.want) {
			t.Errorf("%v: %d delivery records %v, want %d", c.platforms, len(ds), ds, len(c.want))
		}
		for _, sid := range c.want {
			if _, ok := ds[sid]; !ok {
				t.Errorf("%v: no delivery record for %s", c.platforms, sid)
			}
		}
		external := make([]string, 0, len(c.want))
		for _, sid := range c.want {
			if sid != r.unsid {
				external = append(external, sid)
			}
		}
		r.settled(n.ID, external...)
	}
	// Each endpoint got what targeted it, and nothing else.
	if a, b, c, d := len(r.push.Messages(endpoint)), len(r.hooks.Requests(hookURL)), len(r.fcm.Sends(fcmToken)), len(r.apns.Requests(device)); a != 2 || b != 2 || c != 2 || d != 2 {
		t.Errorf("requests: webPush %d, webhook %d, fcm %d, apns %d; want 2 each", a, b, c, d)
	}
}

func TestDeliveryFailuresFollowTheContract(t *testing.T) {
	r := newDeliveryRig(t, func(c *node.Config) { c.Delivery.Timeout = 1500 * time.Millisecond })
	type expect struct {
		state    string
		attempts int
		disabled string // a word of the subscription's statusReason, when disabled
		errWord  string // a word of lastError, for failed deliveries
	}
	cases := map[string]expect{}
	ids := map[string]string{}
	add := func(name string, s createdSub, e expect) { ids[name], cases[name] = s.ID, e }

	s, _ := r.webPush(webpushtest.Answer{Status: http.StatusGone})
	add("webPush 410", s, expect{resource.DeliveryFailed, 1, "410", "410"})
	s, _ = r.webPush(webpushtest.Answer{Status: http.StatusNotFound})
	add("webPush 404", s, expect{resource.DeliveryFailed, 1, "404", "404"})
	s, throttled := r.webPush(webpushtest.Answer{Status: http.StatusTooManyRequests, RetryAfter: "1"}, webpushtest.Answer{})
	add("webPush 429 Retry-After", s, expect{resource.DeliveryDelivered, 2, "", ""})
	s, _ = r.webPush(webpushtest.Answer{Status: 500}, webpushtest.Answer{Status: 503}, webpushtest.Answer{Status: 202})
	add("webPush 500, 503", s, expect{resource.DeliveryDelivered, 3, "", ""})
	s, _ = r.webPush(webpushtest.Answer{Status: http.StatusBadRequest, Body: "bad payload"})
	add("webPush 400", s, expect{resource.DeliveryFailed, 1, "", "400 Bad Request: bad payload"})
	elsewhere := r.push.Subscribe(webpushtest.NewBrowser(t), r.vapidKey)
	s, _ = r.webPush(webpushtest.Answer{Status: http.StatusTemporaryRedirect, Location: elsewhere})
	add("webPush redirect", s, expect{resource.DeliveryFailed, 1, "", "redirects are not followed"})
	s, _ = r.webPush(webpushtest.Answer{Hang: true}, webpushtest.Answer{})
	add("webPush timeout", s, expect{resource.DeliveryDelivered, 2, "", ""})
	s, _ = r.webhook(webhooktest.Answer{Status: http.StatusGone})
	add("webhook 410", s, expect{resource.DeliveryFailed, 1, "410", "410"})
	s, flakyHook := r.webhook(webhooktest.Answer{Status: 500}, webhooktest.Answer{Status: http.StatusBadRequest}, webhooktest.Answer{})
	add("webhook 500, 400", s, expect{resource.DeliveryDelivered, 3, "", ""})
	s, _ = r.webhook(webhooktest.Answer{Hang: true}, webhooktest.Answer{})
	add("webhook timeout", s, expect{resource.DeliveryDelivered, 2, "", ""})
	s, _ = r.fcmDevice(fcmtest.Error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."))
	add("fcm unregistered", s, expect{resource.DeliveryFailed, 1, "UNREGISTERED", "UNREGISTERED"})
	s, _ = r.fcmDevice(fcmtest.Error(503, "UNAVAILABLE", "UNAVAILABLE", "try later"), fcmtest.Accept())
	add("fcm 503", s, expect{resource.DeliveryDelivered, 2, "", ""})
	s, _ = r.apnsDevice(apnstest.Error(410, "Unregistered"))
	add("apns unregistered", s, expect{resource.DeliveryFailed, 1, "Unregistered", "Unregistered"})
	s, _ = r.apnsDevice(apnstest.Error(400, "BadTopic"))
	add("apns bad topic", s, expect{resource.DeliveryFailed, 1, "", "BadTopic"})

	n := r.send(client.Notification{Payload: visual("Failures", "scripted")})
	all := make([]string, 0, len(ids))
	for _, id := range ids {
		all = append(all, id)
	}
	ds := r.settled(n.ID, all...)
	for name, e := range cases {
		d, sub := ds[ids[name]], r.subscription(ids[name])
		if d.State != e.state || d.Attempts != e.attempts {
			t.Errorf("%s: delivery %s after %d attempts (%v), want %s after %d", name, d.State, d.Attempts, d.LastError, e.state, e.attempts)
		}
		if e.errWord != "" && (d.LastError == nil || !strings.Contains(*d.LastError, e.errWord)) {
			t.Errorf("%s: lastError %v, want it to say %q", name, d.LastError, e.errWord)
		}
		if e.state == resource.DeliveryDelivered && d.LastError != nil {
			t.Errorf("%s: delivered with lastError %q", name, *d.LastError)
		}
		switch {
		case e.disabled != "" && (sub.Status != resource.SubDisabled || sub.StatusReason == nil || !strings.Contains(*sub.StatusReason, e.disabled)):
			t.Errorf("%s: subscription %s (%v), want disabled saying %q", name, sub.Status, sub.StatusReason, e.disabled)
		case e.disabled == "" && sub.Status != resource.SubActive:
			t.Errorf("%s: subscription %s (%v), want active", name, sub.Status, sub.StatusReason)
		}
	}

	// The attempt history shows each try and its error, oldest first.
	if h := ds[ids["webPush 500, 503"]].AttemptHistory; len(h) != 3 ||
		h[0].Outcome != "retry" || !strings.Contains(h[0].Error, "500") ||
		h[1].Outcome != "retry" || !strings.Contains(h[1].Error, "503") || h[2].Outcome != "delivered" {
		t.Errorf("attempt history of 500, 503, 202: %+v", h)
	}

	// Retry-After was honoured: the retry came a second later, not after
	// the 20 ms backoff.
	if m := r.push.Messages(throttled); len(m) != 2 || m[1].At.Sub(m[0].At) < 950*time.Millisecond {
		t.Errorf("429 with Retry-After: 1: %d requests, %v apart", len(m), m[len(m)-1].At.Sub(m[0].At))
	}
	// The redirect was not followed; webhook retries kept their webhook-id.
	if len(r.push.Messages(elsewhere)) != 0 {
		t.Error("the redirect was followed")
	}
	if q := r.hooks.Requests(flakyHook); len(q) != 3 || q[0].ID != q[1].ID || q[1].ID != q[2].ID {
		t.Errorf("webhook retries: %d requests with ids %v", len(q), q)
	}

	// A disabled subscription gets no delivery record any more.
	n2 := r.send(client.Notification{Payload: visual("After", "")})
	ds2 := r.deliveries(n2.ID)
	for name, e := range cases {
		if _, ok := ds2[ids[name]]; ok == (e.disabled != "") {
			t.Errorf("%s: delivery record present %v for a subscription disabled %v", name, ok, e.disabled != "")
		}
	}
}

func TestWebhookThatKeepsFailingIsDisabled(t *testing.T) {
	r := newDeliveryRig(t, func(c *node.Config) { c.Webhook.DisableAfter = 300 * time.Millisecond })
	s, url := r.webhook(webhooktest.Answer{Status: http.StatusServiceUnavailable})
	n := r.send(client.Notification{Payload: visual("Nobody home", "")})
	d := r.settled(n.ID, s.ID)[s.ID]
	sub := r.subscription(s.ID)
	if sub.Status != resource.SubDisabled || sub.StatusReason == nil || !strings.Contains(*sub.StatusReason, "kept failing") ||
		!strings.Contains(*sub.StatusReason, "503") {
		t.Fatalf("subscription %s (%v), want disabled for failing", sub.Status, sub.StatusReason)
	}
	q := r.hooks.Requests(url)
	if d.State != resource.DeliveryFailed || d.Attempts < 2 || d.Attempts != len(q) {
		t.Errorf("delivery %+v after %d requests", d, len(q))
	}
	// The node counts the window from the end of the first attempt to the
	// end of the last; the receiver sees when each arrived, so a last
	// answer slower than the first puts its span short of the window by
	// the difference (CI saw 299.67 ms). 10 ms allows for that.
	if first, last := q[0], q[len(q)-1]; last.At.Sub(first.At) < 290*time.Millisecond || first.ID != last.ID {
		t.Errorf("retried for %v with ids %s and %s", last.At.Sub(first.At), first.ID, last.ID)
	}
}

func TestRestartResumesTheRetryScheduleWithTheSameWebhookID(t *testing.T) {
	r := newDeliveryRig(t, nil)
	s, url := r.webhook(webhooktest.Answer{Status: http.StatusServiceUnavailable})
	n := r.send(client.Notification{Payload: visual("Survives a restart", "")})
	eventually(t, func() (bool, string) {
		k := len(r.hooks.Requests(url))
		return k >= 3, fmt.Sprintf("%d attempts", k)
	})
	before := r.hooks.Requests(url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.node.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	r.hooks.Script(url, webhooktest.Answer{}) // the endpoint recovers while the node is down
	r.connect(testnode.Start(t, &r.cfg))      // the same data directory

	d := r.settled(n.ID, s.ID)[s.ID]
	if d.State != resource.DeliveryDelivered || d.Attempts < 3 {
		t.Errorf("after the restart: %+v, want delivered after the attempts before it too", d)
	}
	ok := r.hooks.Delivered(url)
	if len(ok) != 1 {
		t.Fatalf("%d deliveries after the restart, want 1", len(ok))
	}
	if ok[0].ID != before[0].ID {
		t.Errorf("webhook-id %s after the restart, %s before", ok[0].ID, before[0].ID)
	}
	for _, q := range r.hooks.Requests(url) {
		if q.ID != before[0].ID {
			t.Errorf("an attempt with webhook-id %s, want %s throughout", q.ID, before[0].ID)
		}
	}
}

func TestLiveStreamWithSubscriptionIDMarksItsDeliveries(t *testing.T) {
	r := newDeliveryRig(t, nil)
	other := r.subscribe("web", map[string]any{"type": "live"})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.node.URL+"/v1.0/me/notifications/stream?subscriptionId="+r.unsid, nil)
	req.Header.Set("Authorization", "Bearer "+r.userToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: HTTP %d", resp.StatusCode)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	if _, ok := <-lines; !ok { // the stream is open once its first line arrives
		t.Fatal("the stream ended before it started")
	}

	n := r.send(client.Notification{Payload: visual("Live", "")})
	deadline := time.After(waitLong)
	for got := false; !got; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the stream ended")
			}
			got = strings.HasPrefix(l, "data: ") && strings.Contains(l, n.ID)
		case <-deadline:
			t.Fatal("the notification never reached the stream")
		}
	}
	eventually(t, func() (bool, string) {
		d := r.deliveries(n.ID)[r.unsid]
		return d.State == resource.DeliveryDelivered, fmt.Sprintf("live delivery %+v", d)
	})
	ds := r.deliveries(n.ID)
	if d := ds[r.unsid]; d.Attempts != 0 || d.DeliveredDateTime.IsZero() || d.ChannelType != "live" {
		t.Errorf("streamed delivery %+v", d)
	}
	if d := ds[other.ID]; d.State != resource.DeliveryPending {
		t.Errorf("a live subscription without a stream: %+v, want pending", d)
	}
}

// Every message has its own id: two subscriptions that get the same change
// get it under two webhook-ids (and two apns-ids), since a receiver that
// serves several subscriptions drops an id it has seen. A Web Push Topic
// names one notification: an appNotificationId taken again after a
// deletion gets a topic of its own, so that a push service does not let
// the new notification replace the old one's deletion (or the other way
// round) for a browser that is offline; a replace keeps the topic.
func TestEachSubscriptionsMessageHasItsOwnID(t *testing.T) {
	r := newDeliveryRig(t, nil)
	wh1, url1 := r.webhook()
	wh2, url2 := r.webhook()
	ap1, dev1 := r.apnsDevice()
	ap2, dev2 := r.apnsDevice()
	wp, endpoint := r.webPush()

	a := r.send(client.Notification{AppNotificationID: "reuse-1", Payload: visual("First", "")})
	r.settled(a.ID, wh1.ID, wh2.ID, ap1.ID, ap2.ID, wp.ID)
	h1, h2 := r.hooks.Delivered(url1), r.hooks.Delivered(url2)
	if len(h1) != 1 || len(h2) != 1 || h1[0].ID == "" || h1[0].ID == h2[0].ID {
		ids := func(rs []webhooktest.Request) (out []string) {
			for _, r := range rs {
				out = append(out, r.ID)
			}
			return out
		}
		t.Fatalf("webhook-ids %v and %v: two subscriptions' messages need two ids", ids(h1), ids(h2))
	}
	d1, d2 := r.apns.Requests(dev1), r.apns.Requests(dev2)
	if len(d1) != 1 || len(d2) != 1 || d1[0].Header.Get("apns-id") == d2[0].Header.Get("apns-id") {
		t.Fatalf("apns-ids of two devices for one change: %v and %v", d1[0].Header.Get("apns-id"), d2[0].Header.Get("apns-id"))
	}

	if err := r.user.Do(context.Background(), http.MethodDelete, "/v1.0/me/notifications/"+a.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() (bool, string) {
		n := len(r.push.Delivered(endpoint))
		return n == 2, fmt.Sprintf("%d pushes, want the creation and the deletion", n)
	})
	b := r.send(client.Notification{AppNotificationID: "reuse-1", Payload: visual("Second", "")})
	if b.ID == a.ID {
		t.Fatal("a send after the deletion kept the deleted notification's id")
	}
	// Delivered before the replace: the engine sends a record's latest
	// change, so a replace applied first would make the two one message.
	r.settled(b.ID, wp.ID)
	b2 := r.send(client.Notification{AppNotificationID: "reuse-1", Payload: visual("Second, changed", "")})
	if b2.ID != b.ID {
		t.Fatalf("a replace made a new notification %s, want %s", b2.ID, b.ID)
	}
	eventually(t, func() (bool, string) {
		n := len(r.push.Delivered(endpoint))
		return n == 4, fmt.Sprintf("%d pushes, want 4", n)
	})
	topics := map[string][]string{}
	for _, m := range r.push.Delivered(endpoint) {
		id, _ := m.JSON()["id"].(string)
		topics[id] = append(topics[id], m.Topic)
	}
	ta, tb := topics[a.ID], topics[b.ID]
	if len(ta) != 2 || len(tb) != 2 || ta[0] == "" || ta[0] != ta[1] || tb[0] != tb[1] {
		t.Fatalf("topics by notification %v: each notification's messages share one topic", topics)
	}
	if ta[0] == tb[0] {
		t.Fatalf("notifications %s and %s share the topic %s", a.ID, b.ID, ta[0])
	}
}

// --delivery-timeout is the time limit of one attempt, raised as well as
// lowered: a receiver that takes longer than the senders' own defaults
// (15 s for a webhook to answer) is delivered to when the operator allows
// it the time. The senders used to keep their defaults whatever the
// setting, and such a receiver got every attempt cut short until the
// webhook was disabled for failing.
func TestDeliveryTimeoutLetsASlowWebhookAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a receiver that answers after 16 s")
	}
	const slow = 16 * time.Second
	r := newDeliveryRig(t, func(c *node.Config) { c.Delivery.Timeout = 30 * time.Second })
	var calls atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, q.Body)
		select {
		case <-time.After(slow):
			w.WriteHeader(http.StatusNoContent)
		case <-q.Context().Done():
		}
	}))
	defer recv.Close()
	s := r.subscribe("windows", map[string]any{"type": "webhook", "url": recv.URL + "/hook"})
	n := r.send(client.Notification{Payload: visual("Cold start", "")})
	d := r.settled(n.ID, s.ID)[s.ID]
	wantDelivered(t, "a webhook answering in 16 s with a 30 s delivery timeout", d, 1)
	if k := calls.Load(); k != 1 {
		t.Errorf("%d requests, want 1", k)
	}
}

// An iOS app that takes its pushes through FCM (Flutter, React Native)
// registers an fcm channel with platformType ios. FCM hands such a message
// to APNs with the apns block's headers, and without them with its own
// defaults: priority 10 and a 30-day apns-expiration. A notification due
// to expire in an hour then still showed weeks later, and a dismissal,
// sent as data only with no content-available, never woke the app to
// remove what it showed.
func TestIOSDeviceThroughFCMGetsAPNsHeaders(t *testing.T) {
	r := newDeliveryRig(t, nil)
	iosToken := "fcm-ios-" + randomHex(t, 16)
	ios := r.subscribe("ios", map[string]any{"type": "fcm", "token": iosToken})
	android, androidToken := r.fcmDevice()

	exp := time.Now().Add(2 * time.Hour).Truncate(time.Millisecond)
	n := r.send(client.Notification{AppNotificationID: "task-7", GroupName: "tasks", ExpirationDateTime: exp,
		Payload: visual("Review due", "Today"), Priority: "High"})
	r.settled(n.ID, ios.ID, android.ID)
	if err := r.user.Do(context.Background(), http.MethodPatch, "/v1.0/me/notifications/"+n.ID,
		map[string]string{"userActionState": "dismissed"}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() (bool, string) {
		k := len(r.fcm.Sends(iosToken))
		return k == 2, fmt.Sprintf("%d sends to the iOS token", k)
	})

	wantExp := strconv.FormatInt(exp.Unix(), 10)
	sends := r.fcm.Sends(iosToken)
	for i, want := range []struct{ pushType, priority, collapse string }{
		{"alert", "10", "task-7"},
		{"background", "5", ""},
	} {
		a := sends[i].Message.APNs
		if a == nil {
			t.Fatalf("send %d to an iOS device has no apns block: FCM's defaults apply", i)
		}
		h := a.Headers
		if h["apns-push-type"] != want.pushType || h["apns-priority"] != want.priority ||
			h["apns-expiration"] != wantExp || h["apns-collapse-id"] != want.collapse {
			t.Errorf("send %d: apns headers %v, want %s, priority %s, expiration %s, collapse id %q",
				i, h, want.pushType, want.priority, wantExp, want.collapse)
		}
		aps, _ := a.Payload["aps"].(map[string]any)
		switch want.pushType {
		case "alert":
			if alert, _ := aps["alert"].(map[string]any); alert["title"] != "Review due" || aps["thread-id"] != "tasks" {
				t.Errorf("alert aps %v", aps)
			}
		case "background":
			if aps["content-available"] != float64(1) {
				t.Errorf("background aps %v", aps)
			}
		}
	}
	// Android's message is what it was: FCM ignores an apns block for an
	// Android token, but it would take room from the 4 KiB.
	for _, s := range r.fcm.Sends(androidToken) {
		if s.Message.APNs != nil {
			t.Errorf("android send with an apns block %+v", s.Message.APNs)
		}
	}
}

// The receiver docs/API-NOTES.md shows ("Receiving webhooks") takes what a
// node sends: the snippet a developer copies is one that works.
func TestWebhookReceiverFromTheDocsVerifiesDeliveries(t *testing.T) {
	r := newDeliveryRig(t, nil)
	var secret atomic.Pointer[string]
	got := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		s := secret.Load()
		if s == nil {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		webhookverify.Handler(*s, func(id string, body []byte) error {
			got <- id + " " + string(body)
			return nil
		}).ServeHTTP(w, q)
	}))
	defer srv.Close()
	sub := r.subscribe("windows", map[string]any{"type": "webhook", "url": srv.URL + "/hook"})
	secret.Store(&sub.Secret)

	n := r.send(client.Notification{Payload: visual("Verified", "by the docs' receiver")})
	d := r.settled(n.ID, sub.ID)[sub.ID]
	if d.State != resource.DeliveryDelivered {
		t.Fatalf("delivery %+v: the docs' receiver refused what the node sent", d)
	}
	select {
	case m := <-got:
		if !strings.HasPrefix(m, "msg_") || !strings.Contains(m, `"type":"notification.created"`) || !strings.Contains(m, n.ID) {
			t.Errorf("the receiver got %s", m)
		}
	default:
		t.Fatal("delivered, but the receiver's handler never ran")
	}
}

// A receiver that answers 429 with Retry-After asks for quiet, not for one
// message to wait: the next notification to the same subscription waits
// too. Each message kept its own schedule, so a second notification went
// out at once, into the throttle.
func TestRetryAfterHoldsEveryMessageToTheSubscription(t *testing.T) {
	r := newDeliveryRig(t, nil)
	s, url := r.webhook(webhooktest.Answer{Status: http.StatusTooManyRequests, RetryAfter: "2"}, webhooktest.Answer{})
	first := r.send(client.Notification{Payload: visual("First", "")})
	// Wait for the 429 to be recorded, not only received: the engine
	// holds the subscription once the answer is back, and a second send
	// made between the receiver's seeing the request and that could
	// go out at once and fail this test for no fault of the hold.
	eventually(t, func() (bool, string) {
		d := r.deliveries(first.ID)[s.ID]
		return d.Attempts >= 1, fmt.Sprintf("first delivery %+v", d)
	})
	second := r.send(client.Notification{Payload: visual("Second", "")})
	r.settled(first.ID, s.ID)
	r.settled(second.ID, s.ID)

	q := r.hooks.Requests(url)
	if len(q) != 3 || q[0].Status != http.StatusTooManyRequests {
		t.Fatalf("%d requests, the first answered %d; want 3, the first throttled", len(q), q[0].Status)
	}
	for _, later := range q[1:] {
		if gap := later.At.Sub(q[0].At); gap < 1950*time.Millisecond {
			t.Errorf("%s went %v after the answer asking for 2 s of quiet", later.Event.Type, gap)
		}
	}
}

// An application's backend keeps the UNSIDs its devices gave it. When a
// push service said a device is gone, the send with that UNSID is 403 as
// the contract says, and the answer says why, so that the backend drops
// the UNSID rather than retrying it or suspecting its own credentials: it
// cannot read the subscription itself.
func TestSendToADisabledSubscriptionSaysWhy(t *testing.T) {
	r := newDeliveryRig(t, nil)
	gone, _ := r.fcmDevice(fcmtest.Error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."))
	n := r.send(client.Notification{Payload: visual("To a phone that is gone", "")})
	r.settled(n.ID, gone.ID)
	if s := r.subscription(gone.ID); s.Status != resource.SubDisabled {
		t.Fatalf("subscription %s, want disabled", s.Status)
	}
	_, err := r.app.Send(context.Background(), gone.ID, &client.Notification{Payload: visual("Again", "")})
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden || apiErr.Code != "accessDenied" {
		t.Fatalf("send with a disabled UNSID: %v, want 403 accessDenied", err)
	}
	if !strings.Contains(apiErr.Message, "disabled") || !strings.Contains(apiErr.Message, "UNREGISTERED") ||
		!strings.Contains(apiErr.Message, "register again") {
		t.Errorf("the 403 says %q: not that the device is gone, nor why", apiErr.Message)
	}
}

// A webhook's receiver belongs to the user, and what its body said is not
// the application's to read: the 403 names the receiver's status alone.
func TestSendToADisabledWebhookKeepsTheReceiversWordsFromTheApp(t *testing.T) {
	r := newDeliveryRig(t, nil)
	gone, _ := r.webhook(webhooktest.Answer{Status: http.StatusGone, Body: "tenant 42 offboarded by ops"})
	n := r.send(client.Notification{Payload: visual("To a receiver that is gone", "")})
	r.settled(n.ID, gone.ID)
	if s := r.subscription(gone.ID); s.Status != resource.SubDisabled || s.StatusReason == nil ||
		!strings.Contains(*s.StatusReason, "offboarded") {
		t.Fatalf("subscription %s (%v), want disabled with the receiver's answer for its owner", s.Status, s.StatusReason)
	}
	_, err := r.app.Send(context.Background(), gone.ID, &client.Notification{Payload: visual("Again", "")})
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden {
		t.Fatalf("send with a disabled UNSID: %v, want 403", err)
	}
	if !strings.Contains(apiErr.Message, "410") || strings.Contains(apiErr.Message, "offboarded") {
		t.Errorf("the 403 says %q: want the receiver's status without its words", apiErr.Message)
	}
}
