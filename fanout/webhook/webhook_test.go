package webhook

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/fanout/internal/pushhttp"
	"github.com/herald-notify/herald/fanout/outbound"
	"github.com/herald-notify/herald/resource"
)

// newSecret makes a secret the way httpapi issues them: whsec_ and 24
// random bytes in standard base64.
func newSecret(t testing.TB) string {
	b := make([]byte, 24)
	rand.Read(b)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// libraryVerifier builds the Standard Webhooks reference library's
// verifier for a Herald secret, which it reads as it comes.
func libraryVerifier(t testing.TB, secret string) *standardwebhooks.Webhook {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

type received struct {
	header http.Header
	body   []byte
	err    error // the library's verdict on the signature
}

// receiver is a webhook endpoint that verifies every request with the
// reference library and answers with the scripted responses in order (the
// last one repeats).
type receiver struct {
	t      testing.TB
	wh     *standardwebhooks.Webhook
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	script []func(w http.ResponseWriter)
}

func newReceiver(t testing.TB, secret string, script ...func(w http.ResponseWriter)) *receiver {
	rc := &receiver{t: t, wh: libraryVerifier(t, secret), script: script}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	n := len(rc.got)
	rc.got = append(rc.got, received{header: r.Header.Clone(), body: body, err: rc.wh.Verify(body, r.Header)})
	rc.mu.Unlock()
	if len(rc.script) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc.script[min(n, len(rc.script)-1)](w)
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func status(code int, header ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		io.WriteString(w, `{"error":"scripted"}`)
	}
}

func sub(secret, url string) *resource.SubscriptionRecord {
	return &resource.SubscriptionRecord{
		Subscription: resource.Subscription{
			ID: "sub-1", UserID: "u1", TargetHostName: "tasks.contoso.com", PlatformType: resource.PlatformWeb,
			Channel: resource.Channel{Type: resource.ChannelWebhook, URL: url}, Status: resource.SubActive,
		},
		WebhookSecret: secret,
	}
}

func created() *fanout.Message {
	title := "Review due"
	raw := `{"task":42}`
	now := time.Now()
	return &fanout.Message{
		Type: resource.ChangeCreated,
		Notification: resource.Notification{
			ID: "n-1", TargetHostName: "tasks.contoso.com", AppNotificationID: "task-42",
			Payload:  resource.Payload{RawContent: &raw, VisualContent: &resource.VisualContent{Title: title, Body: "Today"}},
			Priority: resource.PriorityHigh, ExpirationDateTime: resource.At(now.Add(time.Hour)),
			CreatedDateTime: resource.At(now), LastModifiedDateTime: resource.At(now),
			ReadState: resource.ReadUnread, UserActionState: resource.ActionNone, Status: resource.StatusActive,
			TargetPolicy: resource.TargetPolicy{PlatformTypes: []string{}},
		},
		DeliveryID: "dlv_2KWPBgLlAfxdpx2AI54pPJ85f4W",
	}
}

func newSender(t testing.TB, o Options) *Sender {
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSendIsVerifiedByStandardWebhooksLibrary(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	s := newSender(t, Options{})
	msg := created()

	res := s.Send(context.Background(), sub(secret, rc.srv.URL+"/hooks/herald"), msg)
	if res.Outcome != fanout.Delivered || res.Err != "" {
		t.Fatalf("result %+v, want delivered", res)
	}
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("%d requests, want 1", len(got))
	}
	r := got[0]
	if r.err != nil {
		t.Fatalf("reference library rejected the signature: %v", r.err)
	}
	for k, want := range map[string]string{
		"webhook-id": msg.DeliveryID, "Content-Type": "application/json", "User-Agent": "Herald",
	} {
		if v := r.header.Get(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	var body struct {
		Type           string                `json:"type"`
		SubscriptionID string                `json:"subscriptionId"`
		Notification   resource.Notification `json:"notification"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Type != "notification.created" || body.SubscriptionID != "sub-1" || body.Notification.ID != "n-1" ||
		body.Notification.Payload.VisualContent.Title != "Review due" || *body.Notification.Payload.RawContent != `{"task":42}` {
		t.Errorf("body %s", r.body)
	}
}

func TestDeletionsCarryOnlyIDAndReason(t *testing.T) {
	for _, tc := range []struct{ typ, reason, want string }{
		{resource.ChangeDeleted, "deleted", "deleted"},
		{resource.ChangeDeleted, "expired", "expired"},
		{resource.ChangeExpired, "", "expired"},
	} {
		msg := &fanout.Message{Type: tc.typ, Reason: tc.reason, Notification: resource.Notification{ID: "n-9"}, DeliveryID: "d9"}
		b, err := Body("sub-1", msg)
		if err != nil {
			t.Fatal(err)
		}
		want := `{"type":"notification.deleted","subscriptionId":"sub-1","notification":{"id":"n-9","@removed":{"reason":"` + tc.want + `"}}}`
		if string(b) != want {
			t.Errorf("%s/%s: body %s, want %s", tc.typ, tc.reason, b, want)
		}
	}
	msg := created()
	msg.Type = resource.ChangeUpdated
	if b, _ := Body("s", msg); !strings.HasPrefix(string(b), `{"type":"notification.updated","subscriptionId":"s","notification":{"id":"n-1",`) {
		t.Errorf("update body %s", b)
	}
}

func TestRetryKeepsWebhookIDAndSignsNewTimestamp(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret, status(503), status(200))
	clock := time.Now().Add(-2 * time.Minute)
	s := newSender(t, Options{Now: func() time.Time { return clock }})
	msg := created()

	if res := s.Send(context.Background(), sub(secret, rc.srv.URL), msg); res.Outcome != fanout.Retry {
		t.Fatalf("first attempt %+v, want retry", res)
	}
	clock = clock.Add(90 * time.Second)
	if res := s.Send(context.Background(), sub(secret, rc.srv.URL), msg); res.Outcome != fanout.Delivered {
		t.Fatalf("second attempt %+v, want delivered", res)
	}
	got := rc.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests", len(got))
	}
	for i, r := range got {
		if r.err != nil {
			t.Errorf("attempt %d: library rejected signature: %v", i, r.err)
		}
		if id := r.header.Get("webhook-id"); id != msg.DeliveryID {
			t.Errorf("attempt %d: webhook-id %q, want %q", i, id, msg.DeliveryID)
		}
	}
	t0, t1 := got[0].header.Get("webhook-timestamp"), got[1].header.Get("webhook-timestamp")
	if t1 == t0 {
		t.Errorf("both attempts have webhook-timestamp %s; want the time of each attempt", t0)
	}
	if want := strconv.FormatInt(clock.Unix(), 10); t1 != want {
		t.Errorf("second webhook-timestamp %s, want %s", t1, want)
	}
}

func TestStatusOutcomes(t *testing.T) {
	date := time.Now().Add(3 * time.Minute).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name      string
		respond   func(w http.ResponseWriter)
		want      fanout.Outcome
		minRetry  time.Duration
		maxRetry  time.Duration
		errSubstr string
	}{
		{"200", status(200), fanout.Delivered, 0, 0, ""},
		{"202", status(202), fanout.Delivered, 0, 0, ""},
		{"410 disables", status(410), fanout.Disable, 0, 0, "410"},
		{"429 retry-after seconds", status(429, "Retry-After", "120"), fanout.Retry, 120 * time.Second, 120 * time.Second, "429"},
		{"429 retry-after date", status(429, "Retry-After", date), fanout.Retry, 2 * time.Minute, 3 * time.Minute, "429"},
		{"500", status(500), fanout.Retry, 0, 0, "HTTP 500 Internal Server Error: {\"error\":\"scripted\"}"},
		{"503 retry-after", status(503, "Retry-After", "7"), fanout.Retry, 7 * time.Second, 7 * time.Second, "503"},
		{"404 is retried", status(404), fanout.Retry, 0, 0, "404"},
		{"absurd retry-after is capped", status(429, "Retry-After", "99999999999"), fanout.Retry, pushhttp.MaxRetryAfter, pushhttp.MaxRetryAfter, "429"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret := newSecret(t)
			rc := newReceiver(t, secret, tc.respond)
			res := newSender(t, Options{}).Send(context.Background(), sub(secret, rc.srv.URL), created())
			if res.Outcome != tc.want {
				t.Fatalf("outcome %v (%+v), want %v", res.Outcome, res, tc.want)
			}
			if res.RetryAfter < tc.minRetry || res.RetryAfter > tc.maxRetry {
				t.Errorf("RetryAfter %v, want %v..%v", res.RetryAfter, tc.minRetry, tc.maxRetry)
			}
			if !strings.Contains(res.Err, tc.errSubstr) || (tc.want == fanout.Delivered) != (res.Err == "") {
				t.Errorf("Err %q, want it to contain %q", res.Err, tc.errSubstr)
			}
			if r := rc.requests(); len(r) != 1 || r[0].err != nil {
				t.Errorf("receiver saw %d requests, verify %v", len(r), r)
			}
		})
	}
}

func TestHangingReceiverTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: frees the handler so Close can return

	s := newSender(t, Options{Timeout: 100 * time.Millisecond})
	res := s.Send(context.Background(), sub(newSecret(t), srv.URL), created())
	if res.Outcome != fanout.Retry || !strings.Contains(res.Err, "timed out") {
		t.Fatalf("result %+v, want retry after a timeout", res)
	}

	// The caller's deadline counts as well as the sender's own.
	s = newSender(t, Options{Timeout: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if res := s.Send(ctx, sub(newSecret(t), srv.URL), created()); res.Outcome != fanout.Retry || !strings.Contains(res.Err, "timed out") {
		t.Fatalf("result %+v, want retry after the caller's deadline", res)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	// A client that would follow redirects: the sender must not rely on the
	// caller having configured it.
	s := newSender(t, Options{Client: &http.Client{}})
	res := s.Send(context.Background(), sub(newSecret(t), srv.URL+"/hook"), created())
	if res.Outcome != fanout.Retry || !strings.Contains(res.Err, "redirects are not followed") || !strings.Contains(res.Err, "/elsewhere") {
		t.Fatalf("result %+v, want retry saying redirects are not followed", res)
	}
	if n := followed.Load(); n != 0 {
		t.Fatalf("redirect target was requested %d times", n)
	}
}

// countingTransport counts the response body bytes the sender reads.
type countingTransport struct {
	read atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.read}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func TestEndlessResponseBodyIsReadOnlyInPart(t *testing.T) {
	for _, code := range []int{200, 500} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			chunk := []byte(strings.Repeat("garbage ", 4096))
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return // the sender hung up, as it should
				}
			}
		}))
		ct := &countingTransport{}
		s := newSender(t, Options{Client: &http.Client{Transport: ct}})
		res := s.Send(context.Background(), sub(newSecret(t), srv.URL), created())
		srv.Close()
		want := fanout.Delivered
		if code == 500 {
			want = fanout.Retry
		}
		if res.Outcome != want {
			t.Fatalf("HTTP %d: outcome %+v, want %v", code, res, want)
		}
		if n := ct.read.Load(); n > pushhttp.MaxBody {
			t.Errorf("HTTP %d: read %d body bytes, want at most %d", code, n, pushhttp.MaxBody)
		}
		if len(res.Err) > 300 {
			t.Errorf("HTTP %d: error of %d bytes", code, len(res.Err))
		}
	}
}

func TestUnreachableReceiverIsRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	res := newSender(t, Options{}).Send(context.Background(), sub(newSecret(t), url), created())
	if res.Outcome != fanout.Retry || !strings.HasPrefix(res.Err, "request failed: ") || strings.Contains(res.Err, url) {
		t.Fatalf("result %+v, want retry with the error but not the URL", res)
	}
}

func TestUnusableSecretOrIDFailsTheMessage(t *testing.T) {
	rc := newReceiver(t, newSecret(t))
	s := newSender(t, Options{})
	if res := s.Send(context.Background(), sub("not-a-secret", rc.srv.URL), created()); res.Outcome != fanout.Failed {
		t.Errorf("bad secret: %+v", res)
	}
	msg := created()
	msg.DeliveryID = "a.b"
	if res := s.Send(context.Background(), sub(newSecret(t), rc.srv.URL), msg); res.Outcome != fanout.Failed {
		t.Errorf("id with a dot: %+v", res)
	}
	if n := len(rc.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestNewNeedsAClient(t *testing.T) {
	if _, err := New(Options{}); err == nil || !strings.Contains(err.Error(), "Client") {
		t.Fatalf("New without a client: %v", err)
	}
}

func TestVerify(t *testing.T) {
	secret := newSecret(t)
	body := []byte(`{"type":"notification.created"}`)
	now := time.Now()
	headers := func(ts time.Time, sig string) http.Header {
		h := http.Header{}
		h.Set(HeaderID, "msg_1")
		h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(HeaderSignature, sig)
		return h
	}
	good, err := Sign(secret, "msg_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	// The reference library accepts what Sign makes.
	if err := libraryVerifier(t, secret).Verify(body, headers(now, good)); err != nil {
		t.Fatalf("library rejects Sign's output: %v", err)
	}
	old, _ := Sign(secret, "msg_1", now.Add(-10*time.Minute), body)
	other, _ := Sign(newSecret(t), "msg_1", now, body)
	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
		want error
	}{
		{"good", headers(now, good), body, nil},
		{"rotation list", headers(now, "v1a,AAAA "+other+" "+good), body, nil},
		{"tampered body", headers(now, good), []byte(`{"type":"notification.deleted"}`), ErrSignature},
		{"other secret", headers(now, other), body, ErrSignature},
		{"too old", headers(now.Add(-10*time.Minute), old), body, ErrTimestamp},
		{"too new", headers(now.Add(10*time.Minute), good), body, ErrTimestamp},
		{"missing", http.Header{}, body, ErrMissingHeaders},
	} {
		if err := Verify(secret, tc.h, tc.body); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := Verify("whsec_!!!", headers(now, good), body); !errors.Is(err, ErrSecret) {
		t.Errorf("bad secret: %v", err)
	}
}

// Earlier Herald versions issued base64url secrets, which the library's
// NewWebhook does not read; the sender still signs with them, and the
// library verifies with the same key in standard base64.
func TestBase64URLSecretStillSigns(t *testing.T) {
	var key []byte
	for {
		key = make([]byte, 24)
		rand.Read(key)
		if u := base64.RawURLEncoding.EncodeToString(key); strings.ContainsAny(u, "-_") {
			break // an encoding that differs from standard base64
		}
	}
	urlSecret := SecretPrefix + base64.RawURLEncoding.EncodeToString(key)
	rc := newReceiver(t, SecretPrefix+base64.StdEncoding.EncodeToString(key))
	if res := newSender(t, Options{}).Send(context.Background(), sub(urlSecret, rc.srv.URL), created()); res.Outcome != fanout.Delivered {
		t.Fatalf("%+v", res)
	}
	r := rc.requests()[0]
	if r.err != nil {
		t.Fatalf("library with the standard-base64 secret: %v", r.err)
	}
	if err := Verify(urlSecret, r.header, r.body); err != nil {
		t.Fatalf("Verify with the base64url secret: %v", err)
	}
}

func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	s := newSender(b, Options{Client: srv.Client()})
	rec := sub(newSecret(b), srv.URL)
	msg := created()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := s.Send(context.Background(), rec, msg); res.Outcome != fanout.Delivered {
				b.Fatal(res)
			}
		}
	})
}

// A name that resolves to a private address is refused at dial time by the
// outbound policy; that will not change, so the message fails at once.
func TestRefusedDestinationFails(t *testing.T) {
	s, err := New(Options{Client: outbound.NewClient(outbound.Policy{})})
	if err != nil {
		t.Fatal(err)
	}
	res := s.Send(context.Background(), sub(newSecret(t), "https://localhost:1/hook"), created())
	if res.Outcome != fanout.Failed || !strings.Contains(res.Err, "refused") {
		t.Fatalf("result %+v, want failed: refused", res)
	}
}
