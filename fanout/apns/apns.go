// Package apns delivers notifications to Apple devices through the APNs
// HTTP/2 provider API with token-based authentication: a .p8 signing key
// signs an ES256 JWT that is reused for tens of minutes, as Apple asks
// (it refuses tokens older than an hour and throttles tokens renewed more
// often than every 20 minutes).
package apns

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/fanout/internal/pushcontent"
	"github.com/herald-notify/herald/fanout/internal/pushhttp"
	"github.com/herald-notify/herald/resource"
)

// Defaults.
const (
	ProductionURL  = "https://api.push.apple.com"
	SandboxURL     = "https://api.sandbox.push.apple.com"
	DefaultTimeout = 10 * time.Second
	// TokenRefresh is the age at which the provider token is renewed:
	// inside Apple's window of 20 to 60 minutes, with room for clock skew.
	TokenRefresh = 40 * time.Minute
	// MaxCollapseID is the longest apns-collapse-id Apple accepts, in bytes.
	MaxCollapseID = pushcontent.MaxCollapseID
)

// Options configure a Sender.
type Options struct {
	// KeyPEM is the .p8 file: a PKCS#8 P-256 private key in PEM.
	KeyPEM []byte
	// KeyID is the key's 10-character id from the developer account.
	KeyID string
	// TeamID is the 10-character team id the key belongs to.
	TeamID string
	// Client makes the requests; when nil, an HTTP/2-only client. APNs
	// hosts are fixed, so the outbound address policy of webhooks does
	// not apply.
	Client *http.Client
	// RootCAs, when set, are trusted for the APNs hosts instead of the
	// system's roots: for a TLS-inspecting proxy, or a test stand-in. Only
	// used when Client is nil.
	RootCAs *x509.CertPool
	// ProductionURL and SandboxURL are the API base URLs for subscriptions
	// of each environment; the package constants when empty.
	ProductionURL string
	SandboxURL    string
	// Timeout bounds one Send; DefaultTimeout when zero.
	Timeout time.Duration
	// Now is the clock for tokens and expirations; time.Now when nil.
	Now func() time.Time
}

// Sender sends to APNs subscriptions. It is safe for concurrent use.
type Sender struct {
	client              *http.Client
	key                 *ecdsa.PrivateKey
	keyID, teamID       string
	production, sandbox string
	timeout             time.Duration
	now                 func() time.Time

	mu          sync.Mutex
	token       string
	tokenIssued time.Time
}

var _ fanout.Sender = (*Sender)(nil)

// New checks the key and ids and returns a Sender. It does not contact
// Apple: a key is only proved good by the first send.
func New(o Options) (*Sender, error) {
	key, err := parseKey(o.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("apns: signing key (.p8): %w", err)
	}
	if err := checkID("key id", o.KeyID); err != nil {
		return nil, err
	}
	if err := checkID("team id", o.TeamID); err != nil {
		return nil, err
	}
	if o.Timeout < 0 {
		return nil, errors.New("apns: Options.Timeout must not be negative")
	}
	s := &Sender{client: o.Client, key: key, keyID: o.KeyID, teamID: o.TeamID, timeout: o.Timeout, now: o.Now}
	if s.client == nil {
		s.client = defaultClient(o.RootCAs)
	}
	s.client = pushhttp.NoRedirects(s.client)
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, u := range []struct {
		dst       *string
		name, val string
		def       string
	}{
		{&s.production, "production URL", o.ProductionURL, ProductionURL},
		{&s.sandbox, "sandbox URL", o.SandboxURL, SandboxURL},
	} {
		v := u.val
		if v == "" {
			v = u.def
		}
		p, err := url.Parse(v)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return nil, fmt.Errorf("apns: %s %q is not an absolute http(s) URL", u.name, v)
		}
		*u.dst = strings.TrimRight(v, "/")
	}
	return s, nil
}

// defaultClient speaks HTTP/2 only, which is all APNs speaks. Nil roots
// are the system's.
func defaultClient(roots *x509.CertPool) *http.Client {
	var protos http.Protocols
	protos.SetHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           &protos,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     10 * time.Minute, // Apple asks providers to keep connections open
	}}
}

func checkID(name, v string) error {
	if v == "" {
		return fmt.Errorf("apns: the %s is required", name)
	}
	for _, c := range v {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("apns: the %s %q must be letters and digits only (10 characters from the developer account)", name, v)
		}
	}
	return nil
}

func parseKey(p []byte) (*ecdsa.PrivateKey, error) {
	if len(bytes.TrimSpace(p)) == 0 {
		return nil, errors.New("the key is required")
	}
	block, _ := pem.Decode(p)
	if block == nil {
		return nil, errors.New("not PEM (expected -----BEGIN PRIVATE KEY-----)")
	}
	var parsed any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, not a private key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("a %T, but APNs keys are ECDSA P-256", parsed)
	}
	return key, nil
}

// providerToken returns the current JWT, signing a new one when it has
// reached TokenRefresh, or when stale (a token APNs called expired) is
// still the current one.
func (s *Sender) providerToken(stale string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.token != "" && s.token != stale && now.Sub(s.tokenIssued) < TokenRefresh && !now.Before(s.tokenIssued) {
		return s.token, nil
	}
	tok, err := s.sign(now)
	if err != nil {
		return "", err
	}
	s.token, s.tokenIssued = tok, now
	return tok, nil
}

// sign makes the provider JWT: {"alg":"ES256","kid"} {"iss":team,"iat"},
// signed as JWS wants ECDSA signatures: r and s, 32 bytes each, not ASN.1.
func (s *Sender) sign(now time.Time) (string, error) {
	h, _ := json.Marshal(map[string]string{"alg": "ES256", "kid": s.keyID})
	c, _ := json.Marshal(map[string]any{"iss": s.teamID, "iat": now.Unix()})
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	sum := sha256.Sum256([]byte(signing))
	r, ss, err := ecdsa.Sign(rand.Reader, s.key, sum[:])
	if err != nil {
		return "", err
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return signing + "." + enc.EncodeToString(sig[:]), nil
}

// Request is what is sent for one message: headers and body, apart from
// authorization.
type Request struct {
	PushType   string // alert or background
	Priority   string // 10 or 5
	Expiration string // unix seconds, or empty
	CollapseID string
	ID         string // apns-id
	Body       []byte
}

type alert struct {
	Title string `json:"title"`
	Body  string `json:"body,omitempty"`
}

type aps struct {
	Alert            *alert `json:"alert,omitempty"`
	ThreadID         string `json:"thread-id,omitempty"`
	ContentAvailable int    `json:"content-available,omitempty"`
}

// Build shapes msg for APNs. A visible notification is an alert push; the
// rest (dismissals, deletions, raw content) are background pushes that
// wake the app to act on the custom keys. Apple takes background pushes
// at priority 5 only, and throttles them.
func Build(msg *fanout.Message) (*Request, error) {
	r, err := build(msg, false)
	if err == nil && len(r.Body) > pushcontent.MaxPayload {
		// A notification may hold 4 KiB of content, which with the rest
		// does not fit APNs' 4 KiB: send what fits and let the app fetch.
		small := pushcontent.Shrink(msg)
		if r, err = build(small, true); err == nil && len(r.Body) > pushcontent.MaxPayload {
			return build(pushcontent.CutTitle(small, len(r.Body)-pushcontent.MaxPayload), true)
		}
	}
	return r, err
}

func build(msg *fanout.Message, truncated bool) (*Request, error) {
	n := &msg.Notification
	payload := make(map[string]any, 10)
	for k, v := range pushcontent.Data(msg) {
		payload[k] = v
	}
	if truncated {
		payload["truncated"] = "true"
	}
	r := &Request{PushType: "background", Priority: "5", ID: apnsID(msg.DeliveryID)}
	a := aps{ContentAvailable: 1}
	if v := pushcontent.Alert(msg); v != nil {
		r.PushType = "alert"
		a = aps{Alert: &alert{Title: v.Title, Body: v.Body}, ThreadID: n.GroupName}
		if pushcontent.Urgent(msg) {
			r.Priority = "10"
		}
		r.CollapseID = pushcontent.CollapseID(n)
	}
	payload["aps"] = a
	if !n.ExpirationDateTime.IsZero() {
		r.Expiration = strconv.FormatInt(n.ExpirationDateTime.Unix(), 10)
	}
	var err error
	r.Body, err = json.Marshal(payload)
	return r, err
}

// apnsID is DeliveryID as a UUID, so that APNs' own logs and answers name
// the same delivery on every retry: the id itself when it is a UUID,
// otherwise a UUIDv8 (RFC 9562) made of its SHA-256.
func apnsID(deliveryID string) string {
	if deliveryID == "" {
		return ""
	}
	if isUUID(deliveryID) {
		return strings.ToLower(deliveryID)
	}
	sum := sha256.Sum256([]byte(deliveryID))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Send makes one delivery attempt.
func (s *Sender) Send(ctx context.Context, sub *resource.SubscriptionRecord, msg *fanout.Message) fanout.Result {
	ch := &sub.Channel
	if ch.Token == "" || strings.ContainsAny(ch.Token, "/?#% ") || ch.Topic == "" {
		return fanout.Result{Outcome: fanout.Failed, Err: "the subscription has no usable APNs device token and topic"}
	}
	base := s.production
	if ch.Environment == "sandbox" {
		base = s.sandbox
	}
	r, err := Build(msg)
	if err != nil {
		return fanout.Result{Outcome: fanout.Failed, Err: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	tok, err := s.providerToken("")
	if err != nil {
		return fanout.Result{Outcome: fanout.Retry, Err: "apns provider token: " + err.Error()}
	}
	res, expired := s.post(ctx, base+"/3/device/"+ch.Token, ch.Topic, tok, r)
	if !expired {
		return res
	}
	// APNs says the token is too old (clocks disagree, or a host slept):
	// sign a new one and try once more. Only the first sender to see the
	// expiry renews; the rest pick up its token.
	if tok, err = s.providerToken(tok); err != nil {
		return fanout.Result{Outcome: fanout.Retry, Err: "apns provider token: " + err.Error()}
	}
	res, _ = s.post(ctx, base+"/3/device/"+ch.Token, ch.Topic, tok, r)
	return res
}

func (s *Sender) post(ctx context.Context, u, topic, token string, r *Request) (res fanout.Result, expiredToken bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(r.Body))
	if err != nil {
		return fanout.Result{Outcome: fanout.Failed, Err: err.Error()}, false
	}
	h := req.Header
	h.Set("authorization", "bearer "+token)
	h.Set("apns-topic", topic)
	h.Set("apns-push-type", r.PushType)
	h.Set("apns-priority", r.Priority)
	if r.Expiration != "" {
		h.Set("apns-expiration", r.Expiration)
	}
	if r.CollapseID != "" {
		h.Set("apns-collapse-id", r.CollapseID)
	}
	if r.ID != "" {
		h.Set("apns-id", r.ID)
	}
	h.Set("content-type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fanout.Result{Outcome: fanout.Retry, Err: "apns: " + pushhttp.TransportError(ctx, err)}, false
	}
	defer resp.Body.Close()
	body := pushhttp.ReadBody(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return fanout.Result{Outcome: fanout.Delivered}, false
	}
	var e struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(body, &e) // a garbage body leaves only the status to go by
	res = classify(resp.StatusCode, e.Reason, body)
	if res.Outcome == fanout.Retry {
		res.RetryAfter = pushhttp.RetryAfter(resp.Header, s.now())
	}
	return res, resp.StatusCode == http.StatusForbidden && e.Reason == "ExpiredProviderToken"
}

// classify maps an APNs error answer to an outcome, after Apple's table of
// status codes and reasons ("Handling notification responses from APNs").
func classify(code int, reason string, body []byte) fanout.Result {
	words := "APNs " + pushhttp.StatusError(code, nil)
	if reason != "" {
		words += ": " + pushhttp.Snippet([]byte(reason))
	} else if len(body) > 0 {
		words += ": " + pushhttp.Snippet(body)
	}
	switch {
	case code == http.StatusGone,
		code == http.StatusBadRequest && (reason == "BadDeviceToken" || reason == "Unregistered" || reason == "DeviceTokenNotForTopic"):
		// The app is gone from the device, or the token was never this
		// app's in this environment: the subscription cannot work again.
		return fanout.Result{Outcome: fanout.Disable, Err: words}
	case code == http.StatusForbidden && reason == "ExpiredProviderToken",
		code == http.StatusTooManyRequests, code >= 500:
		return fanout.Result{Outcome: fanout.Retry, Err: words}
	case code == http.StatusForbidden && (reason == "InvalidProviderToken" || reason == "MissingProviderToken"):
		// The node's own key is wrong (key id, team id, a revoked key):
		// every message fails alike until the operator fixes it. Kept
		// for retries, they go out once the node has a working key.
		return fanout.Result{Outcome: fanout.Retry, Err: words + " (check the node's APNs key, key id and team id)"}
	case code >= 300 && code < 400:
		return fanout.Result{Outcome: fanout.Retry, Err: words + ": redirects are not followed"}
	}
	// Other 4xx: this message as sent will never be taken (PayloadTooLarge,
	// BadTopic, TopicDisallowed...).
	return fanout.Result{Outcome: fanout.Failed, Err: words}
}
