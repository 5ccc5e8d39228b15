package apns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/fanout/apns/apnstest"
	"github.com/herald-notify/herald/fanout/internal/pushcontent"
	"github.com/herald-notify/herald/resource"
)

const (
	testKeyID  = apnstest.DefaultKeyID
	testTeamID = apnstest.DefaultTeamID
	testTopic  = apnstest.DefaultTopic
	goodToken  = "00fc13adff785122b4ad28809a3420982341241421348097878e577c991de8f0"
)

func p8(t testing.TB, key any) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// clock is a settable time shared by a sender and its fake, so that token
// ages can be tested without waiting for them.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func last(t testing.TB, f *apnstest.Server) apnstest.Request {
	t.Helper()
	all := f.Requests("")
	if len(all) == 0 {
		t.Fatal("no request reached the fake")
	}
	return all[len(all)-1]
}

type rig struct {
	key   *ecdsa.PrivateKey
	clock *clock
	fake  *apnstest.Server
	s     *Sender
}

func newRig(t testing.TB) *rig {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{key: key, clock: newClock()}
	r.fake = apnstest.New(t, apnstest.Options{Key: key, Now: r.clock.Now})
	r.s, err = New(Options{KeyPEM: p8(t, key), KeyID: testKeyID, TeamID: testTeamID, Client: r.fake.Client(),
		ProductionURL: r.fake.URL, SandboxURL: r.fake.URL, Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func apnsSub(token, env string) *resource.SubscriptionRecord {
	return &resource.SubscriptionRecord{Subscription: resource.Subscription{
		ID: "sub-i", PlatformType: resource.PlatformIOS, Status: resource.SubActive,
		Channel: resource.Channel{Type: resource.ChannelAPNs, Token: token, Topic: testTopic, Environment: env},
	}}
}

func visual(now time.Time) *fanout.Message {
	return &fanout.Message{
		Type: resource.ChangeCreated, DeliveryID: "dlv-7",
		Notification: resource.Notification{
			ID: "n-1", AppNotificationID: "task-42", GroupName: "tasks",
			Payload:  resource.Payload{VisualContent: &resource.VisualContent{Title: "Review due", Body: "Today"}},
			Priority: resource.PriorityHigh, ExpirationDateTime: resource.At(now.Add(time.Hour)),
			ReadState: resource.ReadUnread, UserActionState: resource.ActionNone, Status: resource.StatusActive,
		},
	}
}

func TestAlertOverHTTP2WithProviderToken(t *testing.T) {
	r := newRig(t)
	msg := visual(r.clock.Now())
	if res := r.s.Send(context.Background(), apnsSub(goodToken, "production"), msg); res.Outcome != fanout.Delivered || res.Err != "" {
		t.Fatalf("result %+v", res)
	}
	got := last(t, r.fake)
	if got.Device != goodToken {
		t.Errorf("device %q", got.Device)
	}
	for k, want := range map[string]string{
		"apns-topic": testTopic, "apns-push-type": "alert", "apns-priority": "10",
		"apns-expiration":  strconv.FormatInt(msg.Notification.ExpirationDateTime.Unix(), 10),
		"apns-collapse-id": "task-42", "apns-id": apnsID("dlv-7"),
	} {
		if v := got.Header.Get(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	aps := got.Body["aps"].(map[string]any)
	alert := aps["alert"].(map[string]any)
	if alert["title"] != "Review due" || alert["body"] != "Today" || aps["thread-id"] != "tasks" {
		t.Errorf("aps %v", aps)
	}
	if got.Body["id"] != "n-1" || got.Body["type"] != "created" || got.Body["appNotificationId"] != "task-42" {
		t.Errorf("custom keys %v", got.Body)
	}
}

func TestDismissDeleteAndRawAreBackgroundPushes(t *testing.T) {
	r := newRig(t)
	now := r.clock.Now()
	dismissed := visual(now)
	dismissed.Type = resource.ChangeUpdated
	dismissed.Notification.UserActionState = resource.ActionDismissed
	read := visual(now)
	read.Type = resource.ChangeUpdated
	read.Notification.ReadState = resource.ReadRead
	deleted := &fanout.Message{Type: resource.ChangeDeleted, Reason: "expired", Notification: resource.Notification{ID: "n-1"}, DeliveryID: "d-2"}
	raw := `{"sync":1}`
	rawOnly := visual(now)
	rawOnly.Notification.Payload = resource.Payload{RawContent: &raw}

	for name, tc := range map[string]struct {
		msg  *fanout.Message
		keys map[string]string
	}{
		"dismissed": {dismissed, map[string]string{"type": "updated", "userActionState": "dismissed"}},
		"read":      {read, map[string]string{"type": "updated", "readState": "read"}},
		"deleted":   {deleted, map[string]string{"type": "deleted", "reason": "expired"}},
		"raw":       {rawOnly, map[string]string{"type": "created", "rawContent": raw}},
	} {
		if res := r.s.Send(context.Background(), apnsSub(goodToken, ""), tc.msg); res.Outcome != fanout.Delivered {
			t.Fatalf("%s: %+v", name, res)
		}
		got := last(t, r.fake)
		if got.Header.Get("apns-push-type") != "background" || got.Header.Get("apns-priority") != "5" || got.Header.Get("apns-collapse-id") != "" {
			t.Errorf("%s: headers %v", name, got.Header)
		}
		if got.Body["id"] != "n-1" {
			t.Errorf("%s: id %v", name, got.Body["id"])
		}
		for k, want := range tc.keys {
			if got.Body[k] != want {
				t.Errorf("%s: %s = %v, want %q", name, k, got.Body[k], want)
			}
		}
		// The cases run in map order, so the deletion is checked here.
		if e := got.Header.Get("apns-expiration"); tc.msg == deleted && e != "" {
			t.Errorf("deletion without an expiry sent apns-expiration %q", e)
		}
	}
}

func TestEnvironmentChoosesHost(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := newClock()
	prod, sandbox := apnstest.New(t, apnstest.Options{Key: key, Now: c.Now}), apnstest.New(t, apnstest.Options{Key: key, Now: c.Now})
	// Both fakes' certificates are trusted by one client.
	client := prod.Client()
	client.Transport.(*http.Transport).TLSClientConfig.RootCAs.AddCert(sandbox.Certificate())
	s, err := New(Options{KeyPEM: p8(t, key), KeyID: testKeyID, TeamID: testTeamID, Client: client,
		ProductionURL: prod.URL, SandboxURL: sandbox.URL + "/", Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"production", "sandbox", ""} {
		if res := s.Send(context.Background(), apnsSub(goodToken, env), visual(c.Now())); res.Outcome != fanout.Delivered {
			t.Fatalf("%s: %+v", env, res)
		}
	}
	if p, sb := len(prod.Requests("")), len(sandbox.Requests("")); p != 2 || sb != 1 {
		t.Fatalf("production got %d, sandbox %d; want 2 and 1", p, sb)
	}
}

func TestProviderTokenIsReusedAndRenewedAt40Minutes(t *testing.T) {
	r := newRig(t)
	send := func() {
		t.Helper()
		if res := r.s.Send(context.Background(), apnsSub(goodToken, ""), visual(r.clock.Now())); res.Outcome != fanout.Delivered {
			t.Fatalf("%+v", res)
		}
	}
	send()
	send()
	r.clock.Advance(39 * time.Minute)
	send()
	r.clock.Advance(2 * time.Minute)
	send()
	all := r.fake.Requests("")
	if all[0].JWT != all[1].JWT || all[1].JWT != all[2].JWT {
		t.Errorf("the token changed within 39 minutes")
	}
	if all[3].JWT == all[2].JWT || all[3].IssuedAt.Sub(all[0].IssuedAt) != 41*time.Minute {
		t.Errorf("at 41 minutes the token was not renewed (iat %v then %v)", all[0].IssuedAt, all[3].IssuedAt)
	}
}

func TestExpiredProviderTokenIsRenewedOnce(t *testing.T) {
	r := newRig(t)
	if res := r.s.Send(context.Background(), apnsSub(goodToken, ""), visual(r.clock.Now())); res.Outcome != fanout.Delivered {
		t.Fatal(res)
	}
	// APNs now calls the cached token expired (clocks disagree); the
	// sender's own clock says it is a minute old.
	r.clock.Advance(time.Minute)
	r.fake.ExpireTokensBefore(r.clock.Now().Truncate(time.Second)) // iat has whole seconds
	if res := r.s.Send(context.Background(), apnsSub(goodToken, ""), visual(r.clock.Now())); res.Outcome != fanout.Delivered {
		t.Fatalf("after ExpiredProviderToken: %+v, want delivered with a new token", res)
	}
	if all := r.fake.Requests(""); len(all) != 2 || all[0].JWT == all[1].JWT {
		t.Fatalf("%d accepted requests; want 2 with different tokens", len(all))
	}

	// When even a fresh token is called expired, the attempt is retried
	// later, after exactly one renewal.
	r.fake.ExpireTokensBefore(r.clock.Now().Add(time.Hour))
	res := r.s.Send(context.Background(), apnsSub(goodToken, ""), visual(r.clock.Now()))
	if res.Outcome != fanout.Retry || !strings.Contains(res.Err, "ExpiredProviderToken") {
		t.Fatalf("%+v", res)
	}
}

func TestAPNsAnswersLeadToOutcomes(t *testing.T) {
	r := newRig(t)
	tokens := map[string]struct {
		respond func(w http.ResponseWriter)
		want    fanout.Outcome
		retry   time.Duration
		words   string
	}{
		"unregistered": {apnstest.Error(410, "Unregistered"), fanout.Disable, 0, "410 Gone: Unregistered"},
		"expiredtoken": {apnstest.Error(410, "ExpiredToken"), fanout.Disable, 0, "ExpiredToken"},
		"baddevice":    {apnstest.Error(400, "BadDeviceToken"), fanout.Disable, 0, "BadDeviceToken"},
		"nottopic":     {apnstest.Error(400, "DeviceTokenNotForTopic"), fanout.Disable, 0, "DeviceTokenNotForTopic"},
		"badtopic":     {apnstest.Error(400, "BadTopic"), fanout.Failed, 0, "BadTopic"},
		"invalidauth":  {apnstest.Error(403, "InvalidProviderToken"), fanout.Retry, 0, "InvalidProviderToken"},
		"missingauth":  {apnstest.Error(403, "MissingProviderToken"), fanout.Retry, 0, "check the node's APNs key"},
		"toomany": {func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "60")
			apnstest.Error(429, "TooManyRequests")(w)
		}, fanout.Retry, time.Minute, "TooManyRequests"},
		"internal":    {apnstest.Error(500, "InternalServerError"), fanout.Retry, 0, "500"},
		"unavailable": {apnstest.Error(503, "ServiceUnavailable"), fanout.Retry, 0, "ServiceUnavailable"},
		"garbage": {func(w http.ResponseWriter) { w.WriteHeader(502); io.WriteString(w, "<html>\n\tbad gateway") },
			fanout.Retry, 0, "502 Bad Gateway: <html> bad gateway"},
		"redirect": {func(w http.ResponseWriter) { w.Header().Set("Location", "https://example.com/"); w.WriteHeader(307) },
			fanout.Retry, 0, "redirects are not followed"},
	}
	i := 0
	for name, tc := range tokens {
		// Device tokens are hex; each case gets its own.
		device := fmt.Sprintf("%064x", i)
		i++
		r.fake.Script(device, tc.respond)
		res := r.s.Send(context.Background(), apnsSub(device, ""), visual(r.clock.Now()))
		if res.Outcome != tc.want || res.RetryAfter != tc.retry || !strings.Contains(res.Err, tc.words) {
			t.Errorf("%s: %+v, want %v after %v with %q", name, res, tc.want, tc.retry, tc.words)
		}
	}
}

func TestOversizedPayloadAndLongCollapseID(t *testing.T) {
	r := newRig(t)
	msg := visual(r.clock.Now())
	big := strings.Repeat("x", 4000)
	msg.Notification.Payload.RawContent = &big
	// 4000 bytes of raw content pass the API's limit but not APNs' with
	// the rest: what fits goes, marked truncated, without the content.
	res := r.s.Send(context.Background(), apnsSub(goodToken, ""), msg)
	if res.Outcome != fanout.Delivered {
		t.Fatalf("oversized: %+v", res)
	}
	if req, err := Build(msg); err != nil || len(req.Body) > 4096 || !strings.Contains(string(req.Body), `"truncated":"true"`) ||
		strings.Contains(string(req.Body), big) {
		t.Fatalf("oversized body (%d bytes) is not the truncated form: %v", len(req.Body), err)
	}

	msg = visual(r.clock.Now())
	msg.Notification.AppNotificationID = strings.Repeat("a", 200)
	if res := r.s.Send(context.Background(), apnsSub(goodToken, ""), msg); res.Outcome != fanout.Delivered {
		t.Fatalf("long appNotificationId: %+v", res)
	}
	if c := last(t, r.fake).Header.Get("apns-collapse-id"); len(c) != 64 || c != pushcontent.CollapseID(&msg.Notification) {
		t.Errorf("collapse id %q", c)
	}
}

func TestHangingAPNsTimesOut(t *testing.T) {
	r := newRig(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	r.fake.Script(goodToken, func(w http.ResponseWriter) { <-release })
	r.s.timeout = 100 * time.Millisecond
	res := r.s.Send(context.Background(), apnsSub(goodToken, ""), visual(r.clock.Now()))
	if res.Outcome != fanout.Retry || !strings.Contains(res.Err, "timed out") {
		t.Fatalf("%+v", res)
	}
}

func TestAPNsIDIsStableUUID(t *testing.T) {
	a, b := apnsID("dlv-7"), apnsID("dlv-7")
	if a != b || !isUUID(a) || a[14] != '8' || !strings.ContainsRune("89ab", rune(a[19])) {
		t.Errorf("apnsID = %q, %q; want one stable version-8 UUID", a, b)
	}
	if u := "123E4567-E89B-12D3-A456-426614174000"; apnsID(u) != strings.ToLower(u) {
		t.Errorf("a UUID delivery id is not kept: %q", apnsID(u))
	}
}

func TestNewRejectsBadCredentials(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := Options{KeyPEM: p8(t, ec), KeyID: testKeyID, TeamID: testTeamID}
	if _, err := New(good); err != nil {
		t.Fatalf("good options: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(o *Options)
		want string
	}{
		{"no key", func(o *Options) { o.KeyPEM = nil }, "required"},
		{"not pem", func(o *Options) { o.KeyPEM = []byte("MIGTAgEAMBMG") }, "not PEM"},
		{"rsa key", func(o *Options) { o.KeyPEM = p8(t, rsaKey) }, "P-256"},
		{"p384 key", func(o *Options) { o.KeyPEM = p8(t, p384) }, "P-256"},
		{"no key id", func(o *Options) { o.KeyID = "" }, "key id"},
		{"bad team id", func(o *Options) { o.TeamID = "DEF 123" }, "team id"},
		{"bad host", func(o *Options) { o.SandboxURL = "api.sandbox.push.apple.com" }, "sandbox URL"},
	} {
		o := good
		tc.edit(&o)
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
}

func BenchmarkSend(b *testing.B) {
	r := newRig(b)
	sub := apnsSub(goodToken, "")
	msg := visual(r.clock.Now())
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := r.s.Send(context.Background(), sub, msg); res.Outcome != fanout.Delivered {
				b.Fatal(res)
			}
		}
	})
}

// A title may hold nearly all of the API's 4096 bytes of payload, and one
// of characters that JSON escapes (&, <, >) grows sixfold when encoded:
// dropping the raw content and the body is then not enough. The title is
// cut to fit instead of the push being refused as PayloadTooLarge, which
// failed the delivery for good.
func TestOversizedTitleIsCutToFit(t *testing.T) {
	r := newRig(t)
	for name, title := range map[string]string{
		"long":    strings.Repeat("é", 2000),
		"escaped": strings.Repeat("&", 1000),
	} {
		msg := visual(r.clock.Now())
		msg.Notification.Payload.VisualContent.Title = title
		if res := r.s.Send(context.Background(), apnsSub(goodToken, ""), msg); res.Outcome != fanout.Delivered {
			t.Errorf("%s title: %+v", name, res)
		}
		req, err := Build(msg)
		if err != nil || len(req.Body) > 4096 || !strings.Contains(string(req.Body), `"truncated":"true"`) {
			t.Errorf("%s title: body of %d bytes, %v", name, len(req.Body), err)
		}
	}
}

// iOS shows an alert itself, so the app cannot drop a repeat by id: a
// retry of a push APNs had taken (its answer lost to a timeout) must
// collapse into the one shown. Without an appNotificationId the alert
// had no collapse id, and such a repeat showed twice.
func TestAlertWithoutAppNotificationIDCollapsesByID(t *testing.T) {
	r := newRig(t)
	msg := visual(r.clock.Now())
	msg.Notification.AppNotificationID = ""
	for i := 0; i < 2; i++ {
		if res := r.s.Send(context.Background(), apnsSub(goodToken, "production"), msg); res.Outcome != fanout.Delivered {
			t.Fatalf("attempt %d: %+v", i, res)
		}
		if c := last(t, r.fake).Header.Get("apns-collapse-id"); c != msg.Notification.ID {
			t.Errorf("attempt %d: apns-collapse-id %q, want the notification's id %q", i, c, msg.Notification.ID)
		}
	}
}
