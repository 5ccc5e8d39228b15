package webpush

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/fanout/outbound"
	"github.com/herald-notify/herald/fanout/webpush/webpushtest"
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

type fixture struct {
	clock   *clock
	keys    *KeyPair
	sender  *Sender
	ps      *webpushtest.PushService
	browser *webpushtest.Browser
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clock: newClock()}
	var err error
	if f.keys, err = GenerateKeyPair(); err != nil {
		t.Fatal(err)
	}
	f.ps = webpushtest.NewPushService(t, webpushtest.Options{Subject: subject, Now: f.clock.Now})
	f.browser = webpushtest.NewBrowser(t)
	client := outbound.NewClient(outbound.Policy{AllowPrivate: true, Timeout: 10 * time.Second})
	t.Cleanup(client.CloseIdleConnections)
	f.sender, err = New(Options{Keys: f.keys, Subject: subject, Client: client, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// sub subscribes the browser with the server's key, as PushManager.subscribe
// does, scripts the push service's answers to it, and returns the record
// the server keeps.
func (f *fixture) sub(answers ...webpushtest.Answer) *resource.SubscriptionRecord {
	endpoint := f.ps.Subscribe(f.browser, f.keys.PublicKey())
	f.ps.Script(endpoint, answers...)
	return &resource.SubscriptionRecord{Subscription: resource.Subscription{
		ID: "unsid", Status: resource.SubActive, PlatformType: resource.PlatformWeb,
		Channel: resource.Channel{Type: resource.ChannelWebPush, Endpoint: endpoint,
			Keys: &resource.PushKeys{P256dh: f.browser.P256dh(), Auth: f.browser.AuthSecret()}},
	}}
}

func (f *fixture) created() *fanout.Message {
	n := notification()
	n.ExpirationDateTime = resource.At(f.clock.Now().Add(time.Hour))
	return &fanout.Message{Type: resource.ChangeCreated, Notification: n, DeliveryID: "d1"}
}

func (f *fixture) send(t *testing.T, msg *fanout.Message, answers ...webpushtest.Answer) fanout.Result {
	t.Helper()
	return f.sender.Send(context.Background(), f.sub(answers...), msg)
}

// last is the last request the push service saw.
func (f *fixture) last(t *testing.T) webpushtest.Message {
	t.Helper()
	all := f.ps.Messages("")
	if len(all) == 0 {
		t.Fatal("the push service got no request")
	}
	return all[len(all)-1]
}

func TestSendDeliversWhatTheBrowserCanDecrypt(t *testing.T) {
	f := newFixture(t)
	res := f.send(t, f.created())
	p := f.last(t)
	if p.Err != nil {
		t.Fatalf("push service refused the request: %v", p.Err)
	}
	if res.Outcome != fanout.Delivered || res.Err != "" {
		t.Fatalf("result %+v, want delivered", res)
	}
	if p.K != f.keys.PublicKey() {
		t.Errorf("k= %s is not the server's public key", p.K)
	}
	want := map[string]any{"type": "created", "id": "n1", "title": "Build <4711> failed", "body": "3 tests & more",
		"rawContent": `{"build":4711}`, "readState": "unread", "userActionState": "noInteraction",
		"appNotificationId": "build-4711", "groupName": "ci"}
	if fmt.Sprint(p.JSON()) != fmt.Sprint(want) {
		t.Errorf("plaintext\n got %v\nwant %v", p.JSON(), want)
	}
	if p.TTL != 3600 || p.Urgency != "high" || p.Topic != Topic("build-4711", "n1") {
		t.Errorf("TTL %d, Urgency %q, Topic %q", p.TTL, p.Urgency, p.Topic)
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
		if res := f.send(t, msg); res.Outcome != fanout.Delivered {
			t.Fatalf("%s: %+v (%v)", c.name, res, f.last(t).Err)
		}
		h := f.last(t).Header
		if h.Get("TTL") != c.ttl || h.Get("Urgency") != c.urg || (h.Get("Topic") != "") != c.topic {
			t.Errorf("%s: TTL %q Urgency %q Topic %q", c.name, h.Get("TTL"), h.Get("Urgency"), h.Get("Topic"))
		}
	}
}

func TestSendDeletionIsCompact(t *testing.T) {
	f := newFixture(t)
	msg := &fanout.Message{Type: resource.ChangeDeleted, Reason: "deleted", Notification: resource.Notification{ID: "n9"}}
	if res := f.send(t, msg); res.Outcome != fanout.Delivered {
		t.Fatalf("%+v (%v)", res, f.last(t).Err)
	}
	if got := fmt.Sprint(f.last(t).JSON()); got != "map[id:n9 reason:deleted type:deleted]" {
		t.Fatalf("plaintext %s", got)
	}
}

func TestTopicIsShortURLSafeAndStable(t *testing.T) {
	for _, id := range []string{"x", "build-4711", strings.Repeat("é/+=", 64)} {
		tp := Topic(id, "n1")
		if len(tp) > 32 || strings.Trim(tp, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Errorf("Topic(%q) = %q", id, tp)
		}
		if Topic(id, "n1") != tp {
			t.Errorf("Topic(%q) not stable", id)
		}
	}
	if Topic("a", "n1") == Topic("b", "n1") {
		t.Error("different appNotificationIds share a topic")
	}
	if Topic("a", "n1") == Topic("a", "n2") {
		t.Error("two notifications that took the same appNotificationId in turn share a topic")
	}
}

func TestVAPIDTokenIsReusedUntilNearExpiry(t *testing.T) {
	f := newFixture(t)
	f.send(t, f.created())
	first := f.last(t).JWT
	f.clock.Advance(10 * time.Hour)
	f.send(t, f.created())
	if f.last(t).JWT != first {
		t.Fatal("token re-signed while it had 2 hours left")
	}
	f.clock.Advance(90 * time.Minute) // 30 minutes left: too close
	f.send(t, f.created())
	p := f.last(t)
	if p.JWT == first || p.Err != nil {
		t.Fatalf("token not renewed near expiry (same %v, err %v)", p.JWT == first, p.Err)
	}
}

func TestSendIsRefusedWithAnotherServerKey(t *testing.T) {
	f := newFixture(t)
	other, _ := GenerateKeyPair()
	sub := f.sub()
	f.ps.Unsubscribe(sub.Channel.Endpoint)
	sub.Channel.Endpoint = f.ps.Subscribe(f.browser, other.PublicKey())
	res := f.sender.Send(context.Background(), sub, f.created())
	if p := f.last(t); res.Outcome != fanout.Failed || p.Status != http.StatusForbidden || p.Err == nil {
		t.Fatalf("result %+v, push service answered %d (%v); want 403 for a key the browser did not subscribe with", res, p.Status, p.Err)
	}
}

func TestSendOutcomesOfScriptedAnswers(t *testing.T) {
	f := newFixture(t)
	elsewhere := f.sub()
	const body = "scripted\nanswer"
	for _, c := range []struct {
		answer  webpushtest.Answer
		outcome fanout.Outcome
		after   time.Duration
		err     string
	}{
		{webpushtest.Answer{Status: 202}, fanout.Delivered, 0, ""},
		{webpushtest.Answer{Status: 404, Body: body}, fanout.Disable, 0, "push service answered 404 Not Found"},
		{webpushtest.Answer{Status: 410, Body: body}, fanout.Disable, 0, "push service answered 410 Gone"},
		{webpushtest.Answer{Status: 429, RetryAfter: "120", Body: body}, fanout.Retry, 2 * time.Minute, "push service answered 429 Too Many Requests"},
		{webpushtest.Answer{Status: 503, RetryAfter: f.clock.Now().Add(90 * time.Second).Format(http.TimeFormat), Body: body},
			fanout.Retry, 90 * time.Second, "push service answered 503 Service Unavailable"},
		{webpushtest.Answer{Status: 429, RetryAfter: "soon", Body: body}, fanout.Retry, 0, "push service answered 429 Too Many Requests"},
		{webpushtest.Answer{Status: 500, Body: body}, fanout.Retry, 0, "push service answered 500 Internal Server Error"},
		{webpushtest.Answer{Status: 413, Body: body}, fanout.Failed, 0, "push service answered 413 Request Entity Too Large: scripted answer"},
		{webpushtest.Answer{Status: 400, Body: body}, fanout.Failed, 0, "push service answered 400 Bad Request: scripted answer"},
		{webpushtest.Answer{Status: 307, Location: elsewhere.Channel.Endpoint}, fanout.Failed, 0,
			"push service answered 307 Temporary Redirect; redirects are not followed"},
	} {
		res := f.send(t, f.created(), c.answer)
		if p := f.last(t); p.Err != nil {
			t.Fatalf("%d: the push service refused the request: %v", c.answer.Status, p.Err)
		}
		if res.Outcome != c.outcome || res.RetryAfter != c.after || res.Err != c.err {
			t.Errorf("%d: got %v/%v/%q, want %v/%v/%q", c.answer.Status, res.Outcome, res.RetryAfter, res.Err, c.outcome, c.after, c.err)
		}
	}
	if n := len(f.ps.Messages(elsewhere.Channel.Endpoint)); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

func TestSendRetriesWhenThePushServiceHangs(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res := f.sender.Send(ctx, f.sub(webpushtest.Answer{Hang: true}), f.created())
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
	sub := f.sub()
	sub.Channel.Endpoint = "http://" + addr + "/push/x"
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
		res := f.send(t, f.created(), webpushtest.Answer{Status: c.status, Endless: true})
		if res.Outcome != c.outcome || len(res.Err) > 200 {
			t.Fatalf("status %d: %+v", c.status, res)
		}
		// The handler writes until the client hangs up; it returns only
		// because the sender closed the connection instead of reading on.
		<-f.ps.EndlessWritten()
	}
}

func TestSendRefusesLoopbackUnderTheDefaultPolicy(t *testing.T) {
	f := newFixture(t)
	s, err := New(Options{Keys: f.keys, Subject: subject}) // public-only client
	if err != nil {
		t.Fatal(err)
	}
	sub := f.sub()
	sub.Channel.Endpoint = strings.Replace(sub.Channel.Endpoint, "http://", "https://", 1)
	res := s.Send(context.Background(), sub, f.created())
	if res.Outcome != fanout.Failed || res.Err != "endpoint refused: its host's address is a loopback address" {
		t.Fatalf("%+v", res)
	}
	if n := len(f.ps.Messages("")); n != 0 {
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
		sub := f.sub()
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
	browser := webpushtest.NewBrowser(b)
	sub := &resource.SubscriptionRecord{Subscription: resource.Subscription{Channel: resource.Channel{
		Type: resource.ChannelWebPush, Endpoint: srv.URL + "/push/abc",
		Keys: &resource.PushKeys{P256dh: browser.P256dh(), Auth: browser.AuthSecret()}}}}
	msg := &fanout.Message{Type: resource.ChangeCreated, Notification: notification()}
	msg.Notification.ExpirationDateTime = resource.At(time.Now().Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		if res := s.Send(context.Background(), sub, msg); res.Outcome != fanout.Delivered {
			b.Fatalf("%+v", res)
		}
	}
}
