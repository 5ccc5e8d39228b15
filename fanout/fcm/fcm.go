// Package fcm delivers notifications to Android (and other Firebase)
// devices through the FCM HTTP v1 API. It authenticates as a Google service
// account: a JWT signed with the account's key is exchanged for an OAuth2
// access token (RFC 7523 JWT-bearer grant), which is cached until shortly
// before it expires.
package fcm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
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
	DefaultEndpoint = "https://fcm.googleapis.com"
	DefaultTokenURL = "https://oauth2.googleapis.com/token"
	DefaultTimeout  = 10 * time.Second
	// Scope is the OAuth2 scope of FCM sends.
	Scope = "https://www.googleapis.com/auth/firebase.messaging"
	// MaxTTL is the longest android.ttl FCM accepts: 28 days.
	MaxTTL = 28 * 24 * time.Hour
)

// assertionLifetime is the JWT's exp - iat; Google accepts at most an hour.
const assertionLifetime = time.Hour

// Options configure a Sender.
type Options struct {
	// ServiceAccountJSON is the service-account key file as Google issues
	// it: client_email, private_key (PEM), project_id, token_uri.
	ServiceAccountJSON []byte
	// Client makes the requests; a plain client when nil. FCM's hosts are
	// fixed, so the outbound address policy of webhooks does not apply.
	Client *http.Client
	// Endpoint is the FCM API base URL; DefaultEndpoint when empty.
	Endpoint string
	// TokenURL overrides the key's token_uri (DefaultTokenURL when the key
	// has none). The JWT's audience follows it.
	TokenURL string
	// Timeout bounds one Send, token exchange included; DefaultTimeout
	// when zero.
	Timeout time.Duration
	// Now is the clock for JWTs and token expiry; time.Now when nil.
	Now func() time.Time
}

// serviceAccount is the part of a key file that is used.
type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// Sender sends to FCM subscriptions. It is safe for concurrent use.
type Sender struct {
	client   *http.Client
	sendURL  string
	tokenURL string
	email    string
	keyID    string
	key      *rsa.PrivateKey
	project  string
	timeout  time.Duration
	now      func() time.Time

	// fetching admits one token exchange at a time, so that a burst of
	// sends after expiry costs one round trip to Google, not one each; a
	// channel rather than a mutex so that waiters give up with their ctx.
	fetching chan struct{}
	mu       sync.Mutex
	token    string
	renewAt  time.Time // refresh from here on, a margin before expiry
}

var _ fanout.Sender = (*Sender)(nil)

// New checks the service-account key and returns a Sender. It does not
// contact Google: a key is only proved good by the first send.
func New(o Options) (*Sender, error) {
	var sa serviceAccount
	if len(bytes.TrimSpace(o.ServiceAccountJSON)) == 0 {
		return nil, errors.New("fcm: the service-account key (JSON) is required")
	}
	if err := json.Unmarshal(o.ServiceAccountJSON, &sa); err != nil {
		return nil, fmt.Errorf("fcm: the service-account key is not valid JSON: %w", err)
	}
	if sa.Type != "" && sa.Type != "service_account" {
		return nil, fmt.Errorf("fcm: the key's type is %q; a service_account key is needed", sa.Type)
	}
	for _, f := range []struct{ name, v string }{
		{"project_id", sa.ProjectID}, {"client_email", sa.ClientEmail}, {"private_key", sa.PrivateKey},
	} {
		if strings.TrimSpace(f.v) == "" {
			return nil, fmt.Errorf("fcm: the service-account key has no %s", f.name)
		}
	}
	if strings.ContainsAny(sa.ProjectID, "/?#% ") {
		return nil, fmt.Errorf("fcm: project_id %q is not a project id", sa.ProjectID)
	}
	key, err := parseRSAKey(sa.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("fcm: private_key: %w", err)
	}
	s := &Sender{
		client: o.Client, email: sa.ClientEmail, keyID: sa.PrivateKeyID, key: key, project: sa.ProjectID,
		timeout: o.Timeout, now: o.Now, fetching: make(chan struct{}, 1),
	}
	if s.client == nil {
		s.client = &http.Client{}
	}
	s.client = pushhttp.NoRedirects(s.client)
	if s.timeout < 0 {
		return nil, errors.New("fcm: Options.Timeout must not be negative")
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.tokenURL = firstOf(o.TokenURL, sa.TokenURI, DefaultTokenURL)
	if err := checkBaseURL(s.tokenURL); err != nil {
		return nil, fmt.Errorf("fcm: token URL: %w", err)
	}
	endpoint := strings.TrimRight(firstOf(o.Endpoint, DefaultEndpoint), "/")
	if err := checkBaseURL(endpoint); err != nil {
		return nil, fmt.Errorf("fcm: endpoint: %w", err)
	}
	s.sendURL = endpoint + "/v1/projects/" + url.PathEscape(sa.ProjectID) + "/messages:send"
	return s, nil
}

func firstOf(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

func parseRSAKey(p string) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		return nil, errors.New("not a PEM block (expected -----BEGIN PRIVATE KEY-----)")
	}
	var parsed any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, not a private key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, but service-account keys are RSA", parsed)
	}
	if key.N.BitLen() < 2048 {
		return nil, fmt.Errorf("an RSA key of %d bits; at least 2048 are needed", key.N.BitLen())
	}
	return key, nil
}

// The wire shape of a v1 send (firebase.google.com/docs/reference/fcm/rest/v1/projects.messages).
type sendRequest struct {
	Message message `json:"message"`
}

type message struct {
	Token        string            `json:"token"`
	Data         map[string]string `json:"data"`
	Notification *notification     `json:"notification,omitempty"`
	Android      android           `json:"android"`
	APNs         *apnsConfig       `json:"apns,omitempty"`
}

// apnsConfig is what FCM passes on to APNs for an iOS token. Without it
// FCM sends with its own defaults (priority 10, a 30-day expiration),
// which neither end a notification at its expiry nor let a silent
// message wake the app.
type apnsConfig struct {
	Headers map[string]string `json:"headers"`
	Payload apnsPayload       `json:"payload"`
}

type apnsPayload struct {
	APS aps `json:"aps"`
}

type aps struct {
	Alert            *notification `json:"alert,omitempty"`
	ThreadID         string        `json:"thread-id,omitempty"`
	ContentAvailable int           `json:"content-available,omitempty"`
}

type notification struct {
	Title string `json:"title"`
	Body  string `json:"body,omitempty"`
}

type android struct {
	Priority     string               `json:"priority"`
	TTL          string               `json:"ttl,omitempty"`
	Notification *androidNotification `json:"notification,omitempty"`
}

type androidNotification struct {
	Tag string `json:"tag"`
}

// Body encodes the FCM send request of msg to device token at time now.
// ios adds the apns block that an iOS app's token needs (a subscription
// with platformType ios).
func Body(token string, ios bool, msg *fanout.Message, now time.Time) ([]byte, error) {
	b, err := body(token, ios, msg, now, false)
	if err == nil && len(b) > pushcontent.MaxPayload {
		// FCM takes 4 KiB of message; a notification may hold 4 KiB of
		// content alone. Send what fits and let the app fetch the rest.
		small := pushcontent.Shrink(msg)
		if b, err = body(token, ios, small, now, true); err == nil && len(b) > pushcontent.MaxPayload {
			over := len(b) - pushcontent.MaxPayload
			if ios {
				over = (over + 1) / 2 // the title is there twice: FCM's and the aps alert's
			}
			return body(token, ios, pushcontent.CutTitle(small, over), now, true)
		}
	}
	return b, err
}

func body(token string, ios bool, msg *fanout.Message, now time.Time, truncated bool) ([]byte, error) {
	m := message{Token: token, Data: pushcontent.Data(msg), Android: android{Priority: "normal"}}
	if truncated {
		m.Data["truncated"] = "true"
	}
	if a := pushcontent.Alert(msg); a != nil {
		m.Notification = &notification{Title: a.Title, Body: a.Body}
		// Android shows it without the app, which can then drop no
		// repeat: the tag makes a retry, or a replace (same id), take
		// the place of what the tray shows, and lets the app cancel it
		// by id when it is read or deleted elsewhere.
		m.Android.Notification = &androidNotification{Tag: msg.Notification.ID}
	}
	if pushcontent.Urgent(msg) {
		m.Android.Priority = "high"
	}
	// Not kept by FCM past the notification's own expiry; a deletion
	// whose notification is unknown gets FCM's default.
	if exp := msg.Notification.ExpirationDateTime; !exp.IsZero() {
		ttl := min(max(exp.Sub(now), 0), MaxTTL)
		m.Android.TTL = strconv.FormatInt(int64(ttl/time.Second), 10) + "s"
	}
	if ios {
		m.APNs = apnsBlock(msg)
	}
	return json.Marshal(&sendRequest{Message: m})
}

// apnsBlock shapes msg for APNs as the apns sender does: an alert push
// for what the device shows, a background push (priority 5, as Apple
// requires) for the rest, ending at the notification's expiry. The data
// keys reach the app anyway: FCM adds them to the APNs payload.
func apnsBlock(msg *fanout.Message) *apnsConfig {
	n := &msg.Notification
	a := &apnsConfig{Headers: map[string]string{"apns-push-type": "background", "apns-priority": "5"},
		Payload: apnsPayload{APS: aps{ContentAvailable: 1}}}
	if v := pushcontent.Alert(msg); v != nil {
		a.Headers["apns-push-type"] = "alert"
		if pushcontent.Urgent(msg) {
			a.Headers["apns-priority"] = "10"
		}
		a.Headers["apns-collapse-id"] = pushcontent.CollapseID(n)
		// The payload's aps takes the place of the notification's title
		// and body for APNs, so it carries them itself.
		a.Payload.APS = aps{Alert: &notification{Title: v.Title, Body: v.Body}, ThreadID: n.GroupName}
	}
	if !n.ExpirationDateTime.IsZero() {
		a.Headers["apns-expiration"] = strconv.FormatInt(n.ExpirationDateTime.Unix(), 10)
	}
	return a
}

// Send makes one delivery attempt.
func (s *Sender) Send(ctx context.Context, sub *resource.SubscriptionRecord, msg *fanout.Message) fanout.Result {
	if sub.Channel.Token == "" {
		return fanout.Result{Outcome: fanout.Failed, Err: "the subscription has no FCM registration token"}
	}
	body, err := Body(sub.Channel.Token, sub.PlatformType == resource.PlatformIOS, msg, s.now())
	if err != nil {
		return fanout.Result{Outcome: fanout.Failed, Err: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	tok, err := s.accessToken(ctx, "")
	if err != nil {
		// Our credentials, not the device, are at fault: retry, never
		// disable the subscription.
		return fanout.Result{Outcome: fanout.Retry, Err: "fcm access token: " + err.Error()}
	}
	res, unauthorized := s.post(ctx, tok, body)
	if !unauthorized {
		return res
	}
	// A 401 means Google no longer takes the cached token (revoked, or
	// clocks disagree). Get a fresh one and try once more; a second 401
	// is a credentials problem for the retry schedule.
	tok, err = s.accessToken(ctx, tok)
	if err != nil {
		return fanout.Result{Outcome: fanout.Retry, Err: "fcm access token: " + err.Error()}
	}
	res, _ = s.post(ctx, tok, body)
	return res
}

// post sends one request; unauthorized reports a 401.
func (s *Sender) post(ctx context.Context, token string, body []byte) (res fanout.Result, unauthorized bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.sendURL, bytes.NewReader(body))
	if err != nil {
		return fanout.Result{Outcome: fanout.Failed, Err: err.Error()}, false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Herald")
	resp, err := s.client.Do(req)
	if err != nil {
		return fanout.Result{Outcome: fanout.Retry, Err: "fcm: " + pushhttp.TransportError(ctx, err)}, false
	}
	defer resp.Body.Close()
	rb := pushhttp.ReadBody(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return fanout.Result{Outcome: fanout.Delivered}, false
	}
	res = classify(resp.StatusCode, rb)
	if res.Outcome == fanout.Retry {
		res.RetryAfter = pushhttp.RetryAfter(resp.Header, s.now())
	}
	return res, resp.StatusCode == http.StatusUnauthorized
}

// apiError is Google's error body.
type apiError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type      string `json:"@type"`
			ErrorCode string `json:"errorCode"`
			// google.rpc.BadRequest's: which request field was wrong.
			FieldViolations []struct {
				Field string `json:"field"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
}

// classify maps a non-200 answer to an outcome, following the FCM v1
// error codes (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode).
func classify(code int, body []byte) fanout.Result {
	var e apiError
	_ = json.Unmarshal(body, &e) // a garbage body leaves only the status to go by
	fcmCode := ""
	for _, d := range e.Error.Details {
		if d.ErrorCode != "" {
			fcmCode = d.ErrorCode
			break
		}
	}
	words := "FCM " + pushhttp.StatusError(code, nil)
	for _, w := range []string{e.Error.Status, fcmCode} {
		if w != "" && !strings.Contains(words, w) {
			words += " " + w
		}
	}
	if e.Error.Message != "" {
		words += ": " + pushhttp.Snippet([]byte(e.Error.Message))
	} else if e.Error.Status == "" && len(body) > 0 {
		words += ": " + pushhttp.Snippet(body)
	}
	out := fanout.Failed
	switch {
	case fcmCode == "UNREGISTERED", badToken(&e):
		// The app was uninstalled or the token expired: the token will
		// never work again. Only FCM's own error code says so: a bare 404
		// may be a wrong endpoint or a proxy, which must not disable every
		// device of the server.
		out = fanout.Disable
	case code == http.StatusUnauthorized, code == http.StatusForbidden && fcmCode != "SENDER_ID_MISMATCH",
		code == http.StatusTooManyRequests, code >= 500, code >= 300 && code < 400:
		// 401 once the refresh failed too, 403 (the node's service
		// account may not send: its configuration, which the operator
		// fixes, and then these go out), quota, Google's own trouble,
		// and redirects (not followed): all worth another attempt later.
		out = fanout.Retry
		if code < 400 {
			words += ": redirects are not followed"
		}
	default:
		// INVALID_ARGUMENT of the message (one FCM will never take, such
		// as one over 4 KB), SENDER_ID_MISMATCH (a token of another project,
		// such as an old install's: retried, it would be tried for the
		// notification's whole life) and other 4xx. A sender-id mismatch
		// is not taken as "unregistered": a misconfigured project would
		// otherwise disable every subscription at once.
		out = fanout.Failed
	}
	return fanout.Result{Outcome: out, Err: words}
}

// badToken reports whether an INVALID_ARGUMENT answer is about the
// registration token rather than the message: a token that is not one
// (cut short, another service's, an old format) will never work. FCM's
// guide to managing tokens says to delete such a token when the message
// is certainly valid; what stands in for that certainty here is FCM's own
// sentence about the token ("The registration token is not a valid FCM
// registration token", as it answers a malformed token), or a BadRequest
// detail whose only field is message.token. FCM's messages repeat request
// values ("Invalid value at 'message.data[0].value' …"), so only that
// sentence at the start counts, and a violation on any other field says
// the message is at fault. Any other INVALID_ARGUMENT, such as a message
// too big, stays a failure of that one message: taken for a bad token, a
// fault of the sender's would disable every device at once.
func badToken(e *apiError) bool {
	if e.Error.Status != "INVALID_ARGUMENT" {
		return false
	}
	token := false
	for _, d := range e.Error.Details {
		for _, v := range d.FieldViolations {
			if v.Field != "message.token" {
				return false
			}
			token = true
		}
	}
	return token || strings.HasPrefix(strings.ToLower(e.Error.Message), "the registration token is not a valid fcm registration token")
}

// accessToken returns a cached token, or exchanges a new JWT for one. A
// token equal to stale was refused by FCM and is not reused.
func (s *Sender) accessToken(ctx context.Context, stale string) (string, error) {
	if t := s.cached(stale); t != "" {
		return t, nil
	}
	select {
	case s.fetching <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-s.fetching }()
	if t := s.cached(stale); t != "" {
		return t, nil // fetched by whoever held the slot before us
	}
	tok, lifetime, err := s.exchange(ctx)
	if err != nil {
		return "", err
	}
	// Renew five minutes early (or halfway, for a short-lived token) so a
	// token never expires between being read here and reaching Google.
	margin := min(5*time.Minute, lifetime/2)
	s.mu.Lock()
	s.token, s.renewAt = tok, s.now().Add(lifetime-margin)
	s.mu.Unlock()
	return tok, nil
}

func (s *Sender) cached(stale string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.token != stale && s.now().Before(s.renewAt) {
		return s.token
	}
	return ""
}

// exchange performs the JWT-bearer grant.
func (s *Sender) exchange(ctx context.Context) (string, time.Duration, error) {
	assertion, err := s.assertion(s.now())
	if err != nil {
		return "", 0, err
	}
	form := url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"assertion":  {assertion},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "Herald")
	resp, err := s.client.Do(req)
	if err != nil {
		return "", 0, errors.New(pushhttp.TransportError(ctx, err))
	}
	defer resp.Body.Close()
	rb := pushhttp.ReadBody(resp.Body)
	if resp.StatusCode != http.StatusOK {
		// e.g. 400 invalid_grant: a deleted key, or a clock far off.
		return "", 0, errors.New("token endpoint answered " + pushhttp.StatusError(resp.StatusCode, rb))
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(rb, &tr); err != nil || tr.AccessToken == "" {
		return "", 0, errors.New("token endpoint gave no access_token: " + pushhttp.Snippet(rb))
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		return "", 0, fmt.Errorf("token endpoint gave a %q token, not Bearer", tr.TokenType)
	}
	lifetime := time.Duration(tr.ExpiresIn) * time.Second
	if tr.ExpiresIn <= 0 || lifetime > 24*time.Hour {
		lifetime = time.Hour // Google's documented lifetime, when unsaid or implausible
	}
	return tr.AccessToken, lifetime, nil
}

// assertion is the RS256 JWT of the grant (RFC 7523; Google's "Using
// OAuth 2.0 for server to server applications").
func (s *Sender) assertion(now time.Time) (string, error) {
	header := map[string]string{"alg": "RS256", "typ": "JWT"}
	if s.keyID != "" {
		header["kid"] = s.keyID
	}
	claims := map[string]any{
		"iss":   s.email,
		"scope": Scope,
		"aud":   s.tokenURL,
		"iat":   now.Unix(),
		"exp":   now.Add(assertionLifetime).Unix(),
	}
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + enc.EncodeToString(sig), nil
}
