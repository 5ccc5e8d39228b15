package apns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/resource"
)

const (
	testKeyID  = "ABC123DEFG"
	testTeamID = "DEF123GHIJ"
	testTopic  = "com.contoso.tasks"
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

type seen struct {
	header   http.Header
	device   string
	jwt      string
	issuedAt time.Time
	body     map[string]any
}

// fakeAPNs is an HTTP/2 APNs stand-in. It checks what Apple checks: the
// provider JWT against the team's public key, its age, the headers and
// their combinations, and the payload; then it answers by the device
// token's script.
type fakeAPNs struct {
	t     testing.TB
	srv   *httptest.Server
	pub   *ecdsa.PublicKey
	clock func() time.Time

	mu            sync.Mutex
	seen          []seen
	expiredBefore time.Time // tokens issued before this are ExpiredProviderToken
	script        map[string]func(w http.ResponseWriter)
}

func newFake(t testing.TB, pub *ecdsa.PublicKey, clock func() time.Time) *fakeAPNs {
	f := &fakeAPNs{t: t, pub: pub, clock: clock, script: map[string]func(http.ResponseWriter){}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.EnableHTTP2 = true
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func apnsError(code int, reason string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code == http.StatusGone {
			fmt.Fprintf(w, `{"reason":%q,"timestamp":%d}`, reason, time.Now().UnixMilli())
			return
		}
		fmt.Fprintf(w, `{"reason":%q}`, reason)
	}
}

func (f *fakeAPNs) serve(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		f.t.Errorf("request over HTTP/%d.%d; APNs speaks HTTP/2 only", r.ProtoMajor, r.ProtoMinor)
		apnsError(400, "BadRequest")(w)
		return
	}
	device, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if r.Method != http.MethodPost {
		apnsError(405, "MethodNotAllowed")(w)
		return
	}
	if !ok || device == "" {
		apnsError(404, "BadPath")(w)
		return
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("authorization"), "bearer ")
	if !ok {
		apnsError(403, "MissingProviderToken")(w)
		return
	}
	var claims jwt.RegisteredClaims
	tok, err := jwt.ParseWithClaims(bearer, &claims, func(*jwt.Token) (any, error) { return f.pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(testTeamID), jwt.WithIssuedAt(),
		jwt.WithTimeFunc(f.clock))
	if err != nil || tok.Header["kid"] != testKeyID || claims.IssuedAt == nil {
		f.t.Logf("provider token refused: %v, header %v", err, tok)
		apnsError(403, "InvalidProviderToken")(w)
		return
	}
	iat := claims.IssuedAt.Time
	f.mu.Lock()
	expired := f.clock().Sub(iat) > time.Hour || iat.Before(f.expiredBefore)
	f.mu.Unlock()
	if expired {
		apnsError(403, "ExpiredProviderToken")(w)
		return
	}
	h := r.Header
	pushType, prio := h.Get("apns-push-type"), h.Get("apns-priority")
	switch {
	case h.Get("apns-topic") == "":
		apnsError(400, "MissingTopic")(w)
		return
	case h.Get("apns-topic") != testTopic:
		apnsError(400, "DeviceTokenNotForTopic")(w)
		return
	case pushType != "alert" && pushType != "background":
		apnsError(400, "InvalidPushType")(w)
		return
	case prio != "5" && prio != "10", pushType == "background" && prio != "5":
		apnsError(400, "BadPriority")(w)
		return
	case len(h.Get("apns-collapse-id")) > 64:
		apnsError(400, "BadCollapseId")(w)
		return
	case h.Get("apns-id") != "" && !isUUID(h.Get("apns-id")):
		apnsError(400, "BadMessageId")(w)
		return
	}
	if e := h.Get("apns-expiration"); e != "" {
		if _, err := strconv.ParseInt(e, 10, 64); err != nil {
			apnsError(400, "BadExpirationDate")(w)
			return
		}
	}
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 8192))
	if len(raw) > 4096 {
		apnsError(413, "PayloadTooLarge")(w)
		return
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		apnsError(400, "PayloadEmpty")(w)
		return
	}
	aps, _ := body["aps"].(map[string]any)
	if _, hasAlert := aps["alert"]; aps == nil || (pushType == "alert") != hasAlert ||
		(pushType == "background") != (aps["content-available"] == float64(1)) {
		f.t.Errorf("push type %s with aps %v", pushType, aps)
		apnsError(400, "PayloadEmpty")(w)
		return
	}
	f.mu.Lock()
	f.seen = append(f.seen, seen{header: h.Clone(), device: device, jwt: bearer, issuedAt: iat, body: body})
	script := f.script[device]
	f.mu.Unlock()
	if script != nil {
		script(w)
		return
	}
	w.Header().Set("apns-id", h.Get("apns-id"))
	w.WriteHeader(http.StatusOK)
}

func (f *fakeAPNs) all() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.seen...)
}

func (f *fakeAPNs) last() seen {
	s := f.all()
	if len(s) == 0 {
		f.t.Fatal("no request reached the fake")
	}
	return s[len(s)-1]
}

type rig struct {
	key   *ecdsa.PrivateKey
	clock *clock
	fake  *fakeAPNs
	s     *Sender
}

func newRig(t testing.TB) *rig {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{key: key, clock: newClock()}
	r.fake = newFake(t, &key.PublicKey, r.clock.Now)
	r.s, err = New(Options{KeyPEM: p8(t, key), KeyID: testKeyID, TeamID: testTeamID, Client: r.fake.srv.Client(),
		ProductionURL: r.fake.srv.URL, SandboxURL: r.fake.srv.URL, Now: r.clock.Now})
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
	got := r.fake.last()
	if got.device != goodToken {
		t.Errorf("device %q", got.device)
	}
	for k, want := range map[string]string{
		"apns-topic": testTopic, "apns-push-type": "alert", "apns-priority": "10",
		"apns-expiration":  strconv.FormatInt(msg.Notification.ExpirationDateTime.Unix(), 10),
		"apns-collapse-id": "task-42", "apns-id": apnsID("dlv-7"),
	} {
		if v := got.header.Get(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	aps := got.body["aps"].(map[string]any)
	alert := aps["alert"].(map[string]any)
	if alert["title"] != "Review due" || alert["body"] != "Today" || aps["thread-id"] != "tasks" {
		t.Errorf("aps %v", aps)
	}
	if got.body["id"] != "n-1" || got.body["type"] != "created" || got.body["appNotificationId"] != "task-42" {
		t.Errorf("custom keys %v", got.body)
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
		got := r.fake.last()
		if got.header.Get("apns-push-type") != "background" || got.header.Get("apns-priority") != "5" || got.header.Get("apns-collapse-id") != "" {
			t.Errorf("%s: headers %v", name, got.header)
		}
		if got.body["id"] != "n-1" {
			t.Errorf("%s: id %v", name, got.body["id"])
		}
		for k, want := range tc.keys {
			if got.body[k] != want {
				t.Errorf("%s: %s = %v, want %q", name, k, got.body[k], want)
			}
		}
	}
	if h := r.fake.all()[2].header; h.Get("apns-expiration") != "" {
		t.Errorf("deletion without an expiry sent apns-expiration %q", h.Get("apns-expiration"))
	}
}

func TestEnvironmentChoosesHost(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := newClock()
	prod, sandbox := newFake(t, &key.PublicKey, c.Now), newFake(t, &key.PublicKey, c.Now)
	// Both fakes' certificates are trusted by one client.
	client := prod.srv.Client()
	client.Transport.(*http.Transport).TLSClientConfig.RootCAs.AddCert(sandbox.srv.Certificate())
	s, err := New(Options{KeyPEM: p8(t, key), KeyID: testKeyID, TeamID: testTeamID, Client: client,
		ProductionURL: prod.srv.URL, SandboxURL: sandbox.srv.URL + "/", Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"production", "sandbox", ""} {
		if res := s.Send(context.Background(), apnsSub(goodToken, env), visual(c.Now())); res.Outcome != fanout.Delivered {
			t.Fatalf("%s: %+v", env, res)
		}
	}
	if p, sb := len(prod.all()), len(sandbox.all()); p != 2 || sb != 1 {
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
	all := r.fake.all()
	if all[0].jwt != all[1].jwt || all[1].jwt != all[2].jwt {
		t.Errorf("the token changed within 39 minutes")
	}
	if all[3].jwt == all[2].jwt || all[3].issuedAt.Sub(all[0].issuedAt) != 41*time.Minute {
		t.Errorf("at 41 minutes the token was not renewed (iat %v then %v)", all[0].issuedAt, all[3].issuedAt)
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
	r.fake.mu.Lock()
	r.fake.expiredBefore = r.clock.Now().Truncate(time.Second) // iat has whole seconds
	r.fake.mu.Unlock()
	if res := r.s.Send(context.Background(), apnsSub(goodToken, ""), visual(r.clock.Now())); res.Outcome != fanout.Delivered {
		t.Fatalf("after ExpiredProviderToken: %+v, want delivered with a new token", res)
	}
	if all := r.fake.all(); len(all) != 2 || all[0].jwt == all[1].jwt {
		t.Fatalf("%d accepted requests; want 2 with different tokens", len(all))
	}

	// When even a fresh token is called expired, the attempt is retried
	// later, after exactly one renewal.
	r.fake.mu.Lock()
	r.fake.expiredBefore = r.clock.Now().Add(time.Hour)
	r.fake.mu.Unlock()
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
		"unregistered": {apnsError(410, "Unregistered"), fanout.Disable, 0, "410 Gone: Unregistered"},
		"expiredtoken": {apnsError(410, "ExpiredToken"), fanout.Disable, 0, "ExpiredToken"},
		"baddevice":    {apnsError(400, "BadDeviceToken"), fanout.Disable, 0, "BadDeviceToken"},
		"nottopic":     {apnsError(400, "DeviceTokenNotForTopic"), fanout.Disable, 0, "DeviceTokenNotForTopic"},
		"badtopic":     {apnsError(400, "BadTopic"), fanout.Failed, 0, "BadTopic"},
		"invalidauth":  {apnsError(403, "InvalidProviderToken"), fanout.Failed, 0, "InvalidProviderToken"},
		"toomany": {func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "60")
			apnsError(429, "TooManyRequests")(w)
		}, fanout.Retry, time.Minute, "TooManyRequests"},
		"internal":    {apnsError(500, "InternalServerError"), fanout.Retry, 0, "500"},
		"unavailable": {apnsError(503, "ServiceUnavailable"), fanout.Retry, 0, "ServiceUnavailable"},
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
		r.fake.script[device] = tc.respond
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
	res := r.s.Send(context.Background(), apnsSub(goodToken, ""), msg)
	if res.Outcome != fanout.Failed || !strings.Contains(res.Err, "PayloadTooLarge") {
		t.Fatalf("oversized: %+v", res)
	}

	msg = visual(r.clock.Now())
	msg.Notification.AppNotificationID = strings.Repeat("a", 200)
	if res := r.s.Send(context.Background(), apnsSub(goodToken, ""), msg); res.Outcome != fanout.Delivered {
		t.Fatalf("long appNotificationId: %+v", res)
	}
	if c := r.fake.last().header.Get("apns-collapse-id"); len(c) != 64 || c != collapseID(msg.Notification.AppNotificationID) {
		t.Errorf("collapse id %q", c)
	}
}

func TestHangingAPNsTimesOut(t *testing.T) {
	r := newRig(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	r.fake.script[goodToken] = func(w http.ResponseWriter) { <-release }
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
