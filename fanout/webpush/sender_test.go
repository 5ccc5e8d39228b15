package webpush

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/fanout/outbound"
	"github.com/herald-notify/herald/resource"
)

const subject = "mailto:ops@herald.example"

// clock is a settable time shared by the sender and the stand-in, so that
// TTL and token expiry are checked exactly, without waiting.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := new(clock)
	c.ns.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// pushed is what the stand-in push service saw of one request.
type pushed struct {
	path      string
	headers   http.Header
	jwt       string
	k         string
	plaintext map[string]any
	err       error // a check the request failed
}

// pushService is a loopback stand-in for a push service. It checks each
// request as a real one would: the VAPID token (ES256 signature with the
// key in k=, aud = its own origin, exp within 24 hours, sub), and the
// encryption, by decrypting with the browser's private key. The path
// scripts its answer:
//
//	/ok            201
//	/status/N      N, with ?ra=<Retry-After> if given
//	/hang          no answer until the client gives up
//	/redirect      307 to /ok
//	/huge?status=N N with an endless body
type pushService struct {
	*httptest.Server
	t       *testing.T
	clock   *clock
	browser *ecdh.PrivateKey
	auth    []byte

	mu    sync.Mutex
	got   []pushed
	hits  map[string]int
	hugeN chan int64 // bytes written before the client hung up
}

func newPushService(t *testing.T, c *clock) *pushService {
	ps := &pushService{t: t, clock: c, hits: map[string]int{}, hugeN: make(chan int64, 10)}
	ps.browser, ps.auth = newBrowser(t)
	release := make(chan struct{})
	ps.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := ps.check(r)
		ps.mu.Lock()
		ps.got = append(ps.got, p)
		ps.hits[r.URL.Path]++
		ps.mu.Unlock()
		if p.err != nil {
			http.Error(w, p.err.Error(), http.StatusBadRequest)
			return
		}
		ps.answer(w, r, release)
	}))
	// Cleanups run last-in first-out: release hung handlers, then close.
	t.Cleanup(ps.Close)
	t.Cleanup(func() { close(release) })
	return ps
}

func (ps *pushService) answer(w http.ResponseWriter, r *http.Request, release chan struct{}) {
	path := r.URL.Path
	switch {
	case path == "/ok":
		w.WriteHeader(http.StatusCreated)
	case strings.HasPrefix(path, "/status/"):
		code, _ := strconv.Atoi(strings.TrimPrefix(path, "/status/"))
		if ra := r.URL.Query().Get("ra"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(code)
		io.WriteString(w, "scripted\nanswer")
	case path == "/hang":
		select {
		case <-r.Context().Done():
		case <-release:
		}
	case path == "/redirect":
		http.Redirect(w, r, "/ok", http.StatusTemporaryRedirect)
	case path == "/huge":
		code, _ := strconv.Atoi(r.URL.Query().Get("status"))
		w.WriteHeader(code)
		chunk := []byte(strings.Repeat("garbage ", 4096))
		var n int64
		for {
			m, err := w.Write(chunk)
			n += int64(m)
			if err != nil {
				break
			}
		}
		ps.hugeN <- n
	}
}

func (ps *pushService) check(r *http.Request) pushed {
	p := pushed{path: r.URL.Path, headers: r.Header.Clone()}
	fail := func(format string, a ...any) pushed {
		p.err = fmt.Errorf(format, a...)
		return p
	}
	if r.Method != http.MethodPost {
		return fail("method %s", r.Method)
	}
	if ce, ct := r.Header.Get("Content-Encoding"), r.Header.Get("Content-Type"); ce != "aes128gcm" || ct != "application/octet-stream" {
		return fail("Content-Encoding %q, Content-Type %q", ce, ct)
	}
	authz, ok := strings.CutPrefix(r.Header.Get("Authorization"), "vapid ")
	if !ok {
		return fail("Authorization %q is not vapid", r.Header.Get("Authorization"))
	}
	for part := range strings.SplitSeq(authz, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			p.jwt = v
		case "k":
			p.k = v
		}
	}
	kb, err := base64.RawURLEncoding.DecodeString(p.k)
	if err != nil {
		return fail("k=: %v", err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), kb)
	if err != nil {
		return fail("k=: %v", err)
	}
	origin := "http://" + r.Host
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(p.jwt, claims, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(origin),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(ps.clock.Now))
	if err != nil {
		return fail("VAPID JWT: %v", err)
	}
	if aud, _ := claims["aud"].(string); aud != origin {
		return fail("aud %v is not the string %q", claims["aud"], origin)
	}
	exp, _ := claims.GetExpirationTime()
	if exp.After(ps.clock.Now().Add(24 * time.Hour)) {
		return fail("exp %v is more than 24 hours away", exp)
	}
	if claims["sub"] != subject {
		return fail("sub %v", claims["sub"])
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4097))
	if err != nil || len(body) > 4096 {
		return fail("body of %d bytes, %v", len(body), err)
	}
	pt, err := browserDecrypt(body, ps.browser, ps.auth)
	if err != nil {
		return fail("decrypt: %v", err)
	}
	if err := json.Unmarshal(pt, &p.plaintext); err != nil {
		return fail("plaintext %q: %v", pt, err)
	}
	return p
}

func (ps *pushService) last() pushed {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(ps.got) == 0 {
		ps.t.Fatal("the push service got no request")
	}
	return ps.got[len(ps.got)-1]
}

func (ps *pushService) hitsOf(path string) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.hits[path]
}

// sub is the subscription a browser would register with the service.
func (ps *pushService) sub(path string) *resource.SubscriptionRecord {
	return &resource.SubscriptionRecord{Subscription: resource.Subscription{
		ID: "unsid", Status: resource.SubActive, PlatformType: resource.PlatformWeb,
		Channel: resource.Channel{Type: resource.ChannelWebPush, Endpoint: ps.URL + path, Keys: &resource.PushKeys{
			P256dh: base64.RawURLEncoding.EncodeToString(ps.browser.PublicKey().Bytes()),
			Auth:   base64.RawURLEncoding.EncodeToString(ps.auth),
		}},
	}}
}

type fixture struct {
	clock  *clock
	keys   *KeyPair
	sender *Sender
	ps     *pushService
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clock: newClock()}
	var err error
	if f.keys, err = GenerateKeyPair(); err != nil {
		t.Fatal(err)
	}
	f.ps = newPushService(t, f.clock)
	client := outbound.NewClient(outbound.Policy{AllowPrivate: true, Timeout: 10 * time.Second})
	t.Cleanup(client.CloseIdleConnections)
	f.sender, err = New(Options{Keys: f.keys, Subject: subject, Client: client, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) created() *fanout.Message {
	n := notification()
	n.ExpirationDateTime = resource.At(f.clock.Now().Add(time.Hour))
	return &fanout.Message{Type: resource.ChangeCreated, Notification: n, DeliveryID: "d1"}
}

func (f *fixture) send(t *testing.T, path string, msg *fanout.Message) fanout.Result {
	t.Helper()
	return f.sender.Send(context.Background(), f.ps.sub(path), msg)
}

func TestSendDeliversWhatTheBrowserCanDecrypt(t *testing.T) {
	f := newFixture(t)
	res := f.send(t, "/ok", f.created())
	p := f.ps.last()
	if p.err != nil {
		t.Fatalf("push service refused the request: %v", p.err)
	}
	if res.Outcome != fanout.Delivered || res.Err != "" {
		t.Fatalf("result %+v, want delivered", res)
	}
	if p.k != f.keys.PublicKey() {
		t.Errorf("k= %s is not the server's public key", p.k)
	}
	want := map[string]any{"type": "created", "id": "n1", "title": "Build <4711> failed", "body": "3 tests & more",
		"rawContent": `{"build":4711}`, "readState": "unread", "userActionState": "noInteraction",
		"appNotificationId": "build-4711", "groupName": "ci"}
	if fmt.Sprint(p.plaintext) != fmt.Sprint(want) {
		t.Errorf("plaintext\n got %v\nwant %v", p.plaintext, want)
	}
	h := p.headers
	if h.Get("TTL") != "3600" || h.Get("Urgency") != "high" || h.Get("Topic") != Topic("build-4711") {
		t.Errorf("TTL %q, Urgency %q, Topic %q", h.Get("TTL"), h.Get("Urgency"), h.Get("Topic"))
	}
}

func TestSendHeadersFollowTheNotification(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name     string
		edit     func(*fanout.Message)
		ttl, urg string
		topic    bool
	}{
		{"low priority", func(m *fanout.Message) { m.Notification.Priority = resource.PriorityLow }, "3600", "low", true},
		{"no priority", func(m *fanout.Message) { m.Notification.Priority = resource.PriorityNone }, "3600", "normal", true},
		{"no appNotificationId", func(m *fanout.Message) { m.Notification.AppNotificationID = "" }, "3600", "high", false},
		{"expired already", func(m *fanout.Message) {
			m.Notification.ExpirationDateTime = resource.At(f.clock.Now().Add(-time.Minute))
		}, "0", "high", true},
		{"partial seconds round down", func(m *fanout.Message) {
			m.Notification.ExpirationDateTime = resource.At(f.clock.Now().Add(90*time.Second + 999*time.Millisecond))
		}, "90", "high", true},
		{"deletion", func(m *fanout.Message) { m.Type, m.Reason = resource.ChangeDeleted, "deleted" }, "604800", "high", true},
	} {
		msg := f.created()
		c.edit(msg)
		if res := f.send(t, "/ok", msg); res.Outcome != fanout.Delivered {
			t.Fatalf("%s: %+v (%v)", c.name, res, f.ps.last().err)
		}
		h := f.ps.last().headers
		if h.Get("TTL") != c.ttl || h.Get("Urgency") != c.urg || (h.Get("Topic") != "") != c.topic {
			t.Errorf("%s: TTL %q Urgency %q Topic %q", c.name, h.Get("TTL"), h.Get("Urgency"), h.Get("Topic"))
		}
	}
}

func TestSendDeletionIsCompact(t *testing.T) {
	f := newFixture(t)
	msg := &fanout.Message{Type: resource.ChangeDeleted, Reason: "deleted", Notification: resource.Notification{ID: "n9"}}
	if res := f.send(t, "/ok", msg); res.Outcome != fanout.Delivered {
		t.Fatalf("%+v (%v)", res, f.ps.last().err)
	}
	if got := fmt.Sprint(f.ps.last().plaintext); got != "map[id:n9 reason:deleted type:deleted]" {
		t.Fatalf("plaintext %s", got)
	}
}

func TestTopicIsShortURLSafeAndStable(t *testing.T) {
	for _, id := range []string{"x", "build-4711", strings.Repeat("é/+=", 64)} {
		tp := Topic(id)
		if len(tp) > 32 || strings.Trim(tp, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Errorf("Topic(%q) = %q", id, tp)
		}
		if Topic(id) != tp {
			t.Errorf("Topic(%q) not stable", id)
		}
	}
	if Topic("a") == Topic("b") {
		t.Error("different ids share a topic")
	}
}

func TestVAPIDTokenIsReusedUntilNearExpiry(t *testing.T) {
	f := newFixture(t)
	f.send(t, "/ok", f.created())
	first := f.ps.last().jwt
	f.clock.Advance(10 * time.Hour)
	f.send(t, "/ok", f.created())
	if f.ps.last().jwt != first {
		t.Fatal("token re-signed while it had 2 hours left")
	}
	f.clock.Advance(90 * time.Minute) // 30 minutes left: too close
	f.send(t, "/ok", f.created())
	p := f.ps.last()
	if p.jwt == first || p.err != nil {
		t.Fatalf("token not renewed near expiry (same %v, err %v)", p.jwt == first, p.err)
	}
}

func TestSendOutcomesOfScriptedAnswers(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		path    string
		outcome fanout.Outcome
		after   time.Duration
		err     string
	}{
		{"/status/202", fanout.Delivered, 0, ""},
		{"/status/404", fanout.Disable, 0, "push service answered 404 Not Found"},
		{"/status/410", fanout.Disable, 0, "push service answered 410 Gone"},
		{"/status/429?ra=120", fanout.Retry, 2 * time.Minute, "push service answered 429 Too Many Requests"},
		{"/status/503?ra=" + strings.ReplaceAll(f.clock.Now().Add(90*time.Second).Format(http.TimeFormat), " ", "%20"),
			fanout.Retry, 90 * time.Second, "push service answered 503 Service Unavailable"},
		{"/status/429?ra=soon", fanout.Retry, 0, "push service answered 429 Too Many Requests"},
		{"/status/500", fanout.Retry, 0, "push service answered 500 Internal Server Error"},
		{"/status/413", fanout.Failed, 0, "push service answered 413 Request Entity Too Large: scripted answer"},
		{"/status/400", fanout.Failed, 0, "push service answered 400 Bad Request: scripted answer"},
		{"/redirect", fanout.Failed, 0, "push service answered 307 Temporary Redirect; redirects are not followed"},
	} {
		res := f.send(t, c.path, f.created())
		if p := f.ps.last(); p.err != nil {
			t.Fatalf("%s: the push service refused the request: %v", c.path, p.err)
		}
		if res.Outcome != c.outcome || res.RetryAfter != c.after || res.Err != c.err {
			t.Errorf("%s: got %v/%v/%q, want %v/%v/%q", c.path, res.Outcome, res.RetryAfter, res.Err, c.outcome, c.after, c.err)
		}
	}
	if n := f.ps.hitsOf("/ok"); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

func TestSendRetriesWhenThePushServiceHangs(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res := f.sender.Send(ctx, f.ps.sub("/hang"), f.created())
	if res.Outcome != fanout.Retry || res.Err != "push service did not answer in time" {
		t.Fatalf("%+v", res)
	}
}

func TestSendRetriesWhenThePushServiceIsDown(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sub := f.ps.sub("/ok")
	sub.Channel.Endpoint = "http://" + addr + "/ok"
	res := f.sender.Send(context.Background(), sub, f.created())
	if res.Outcome != fanout.Retry || !strings.HasPrefix(res.Err, "push service unreachable: ") || strings.Contains(res.Err, "http://") {
		t.Fatalf("%+v", res)
	}
}

func TestSendReadsLittleOfAHugeAnswer(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		status  int
		outcome fanout.Outcome
	}{{201, fanout.Delivered}, {400, fanout.Failed}} {
		res := f.send(t, fmt.Sprintf("/huge?status=%d", c.status), f.created())
		if res.Outcome != c.outcome || len(res.Err) > 200 {
			t.Fatalf("status %d: %+v", c.status, res)
		}
		// The handler writes until the client hangs up; it returns only
		// because the sender closed the connection instead of reading on.
		<-f.ps.hugeN
	}
}

func TestSendRefusesLoopbackUnderTheDefaultPolicy(t *testing.T) {
	f := newFixture(t)
	s, err := New(Options{Keys: f.keys, Subject: subject}) // public-only client
	if err != nil {
		t.Fatal(err)
	}
	sub := f.ps.sub("/ok")
	sub.Channel.Endpoint = strings.Replace(sub.Channel.Endpoint, "http://", "https://", 1)
	res := s.Send(context.Background(), sub, f.created())
	if res.Outcome != fanout.Failed || res.Err != "endpoint refused: 127.0.0.1 is a loopback address" {
		t.Fatalf("%+v", res)
	}
	if f.ps.hitsOf("/ok") != 0 {
		t.Fatal("the push service was reached")
	}
}

func TestSendFailsOnBrokenSubscriptions(t *testing.T) {
	f := newFixture(t)
	for name, edit := range map[string]func(*resource.SubscriptionRecord){
		"live channel": func(s *resource.SubscriptionRecord) { s.Channel.Type = resource.ChannelLive },
		"no keys":      func(s *resource.SubscriptionRecord) { s.Channel.Keys = nil },
		"bad base64":   func(s *resource.SubscriptionRecord) { s.Channel.Keys.Auth = "!!" },
		"short auth":   func(s *resource.SubscriptionRecord) { s.Channel.Keys.Auth = "AAAA" },
		"bad point":    func(s *resource.SubscriptionRecord) { s.Channel.Keys.P256dh = "BAAA" },
	} {
		sub := f.ps.sub("/ok")
		edit(sub)
		if res := f.sender.Send(context.Background(), sub, f.created()); res.Outcome != fanout.Failed || res.Err == "" {
			t.Errorf("%s: %+v", name, res)
		}
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"0":                             0,
		"-5":                            0,
		"30":                            30 * time.Second,
		"99999999999999":                maxRetryAfter,
		"Fri, 01 May 2026 12:01:00 GMT": time.Minute,
		"Fri, 01 May 2026 11:00:00 GMT": 0,
		"tomorrow":                      0,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestOriginIsTheASCIISerialization(t *testing.T) {
	for in, want := range map[string]string{
		"https://FCM.googleapis.com/fcm/send/abc": "https://fcm.googleapis.com",
		"https://push.example:443/x":              "https://push.example",
		"https://push.example:8443/x":             "https://push.example:8443",
		"http://[::1]:8080/x":                     "http://[::1]:8080",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := origin(u); got != want {
			t.Errorf("origin(%s) = %s, want %s", in, got, want)
		}
	}
}

func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	keys, _ := GenerateKeyPair()
	client := outbound.NewClient(outbound.Policy{AllowPrivate: true})
	defer client.CloseIdleConnections()
	s, _ := New(Options{Keys: keys, Subject: subject, Client: client})
	browser, auth := newBrowser(b)
	sub := &resource.SubscriptionRecord{Subscription: resource.Subscription{Channel: resource.Channel{
		Type: resource.ChannelWebPush, Endpoint: srv.URL + "/push/abc", Keys: &resource.PushKeys{
			P256dh: base64.RawURLEncoding.EncodeToString(browser.PublicKey().Bytes()),
			Auth:   base64.RawURLEncoding.EncodeToString(auth),
		}}}}
	msg := &fanout.Message{Type: resource.ChangeCreated, Notification: notification()}
	msg.Notification.ExpirationDateTime = resource.At(time.Now().Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		if res := s.Send(context.Background(), sub, msg); res.Outcome != fanout.Delivered {
			b.Fatalf("%+v", res)
		}
	}
}
