// Package webpush delivers notifications to browsers through their push
// services: RFC 8030 requests, encrypted as RFC 8291 says (aes128gcm) and
// signed with VAPID (RFC 8292), on the standard library's crypto/ecdh and
// crypto/hkdf and on golang-jwt for the ES256 token.
package webpush

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/fanout/outbound"
	"github.com/herald-notify/herald/resource"
)

// Options configure a Sender.
type Options struct {
	// Keys is the server's VAPID key pair. Required.
	Keys *KeyPair
	// Subject is the VAPID sub claim, how a push service operator
	// reaches the server's operator: a mailto: or https: URL. Required.
	Subject string
	// Client sends the requests. Nil means outbound.NewClient with the
	// default, public-only policy. It must not follow redirects.
	Client *http.Client
	// Now is the clock for TTL and token expiry; nil means time.Now.
	Now func() time.Time
}

// Sender is the fanout.Sender of channel type webPush. It is safe for
// concurrent use.
type Sender struct {
	client *http.Client
	now    func() time.Time
	vapid  vapidCache
}

var _ fanout.Sender = (*Sender)(nil)

const (
	// errBodyLimit is how much of a push service's answer is read: enough
	// for the reason a push service gives in a 400, and no more.
	errBodyLimit = 512
	// dismissTTL is the TTL of a deletion, whose notification's expiry
	// may be unknown or past: the device should still close what it
	// shows when it comes back online within a week.
	dismissTTL = resource.DefaultNotificationTTL
	// maxRetryAfter caps a push service's Retry-After, which could
	// otherwise overflow a Duration; no notification lives longer.
	maxRetryAfter = resource.MaxNotificationTTL
)

// New returns a Sender, or an error if o lacks keys or a valid subject.
func New(o Options) (*Sender, error) {
	if o.Keys == nil || o.Keys.priv == nil {
		return nil, errors.New("webpush: Options.Keys is required")
	}
	if !validSubject(o.Subject) {
		return nil, fmt.Errorf("webpush: subject %q must be a mailto: or https: URL", o.Subject)
	}
	s := &Sender{client: o.Client, now: o.Now}
	if s.client == nil {
		s.client = outbound.NewClient(outbound.Policy{})
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.vapid = vapidCache{keys: o.Keys, subject: o.Subject, tokens: map[string]cachedToken{}}
	return s, nil
}

func validSubject(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "mailto":
		return u.Opaque != ""
	case "https":
		return u.Host != ""
	}
	return false
}

// Send encrypts msg for sub and posts it to the subscription's push service.
//
// Outcomes: any 2xx is Delivered (201 is what RFC 8030 specifies, 202 what
// some services send). 404 and 410 mean the subscription is gone: Disable.
// 429 and 5xx are Retry, with the service's Retry-After. A 3xx is Failed:
// RFC 8030 has no redirects, the client never follows them, and resending
// the same request to the same URL would get the same answer. Other 4xx are
// Failed. A network error or timeout is Retry; a destination the outbound
// policy refuses is Failed, since retrying changes nothing.
func (s *Sender) Send(ctx context.Context, sub *resource.SubscriptionRecord, msg *fanout.Message) fanout.Result {
	ch := &sub.Channel
	if ch.Type != resource.ChannelWebPush || ch.Endpoint == "" || ch.Keys == nil {
		return failed("subscription has no webPush endpoint and keys")
	}
	endpoint, err := url.Parse(ch.Endpoint)
	if err != nil || endpoint.Host == "" {
		return failed("subscription endpoint is not a valid URL")
	}
	p256dh, err1 := decodeB64(ch.Keys.P256dh)
	auth, err2 := decodeB64(ch.Keys.Auth)
	if err1 != nil || err2 != nil {
		return failed("subscription keys are not base64url")
	}

	pt, err := plaintext(msg)
	if err != nil {
		return failed("cannot encode message: " + err.Error())
	}
	body, err := Encrypt(pt, p256dh, auth)
	if err != nil {
		return failed("cannot encrypt message: " + err.Error())
	}

	now := s.now()
	authz, err := s.vapid.authorization(origin(endpoint), now)
	if err != nil {
		return failed("cannot sign VAPID token: " + err.Error())
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ch.Endpoint, bytes.NewReader(body))
	if err != nil {
		return failed("cannot build request: " + err.Error())
	}
	h := req.Header
	h["Authorization"] = []string{authz}
	h["Content-Encoding"] = []string{"aes128gcm"}
	h["Content-Type"] = []string{"application/octet-stream"}
	h["Ttl"] = []string{strconv.FormatInt(ttl(msg, now), 10)}
	h["Urgency"] = []string{urgency(msg.Notification.Priority)}
	if app := msg.Notification.AppNotificationID; app != "" {
		h["Topic"] = []string{Topic(app, msg.Notification.ID)}
	}

	resp, err := s.client.Do(req)
	if err != nil {
		return transportError(ctx, err)
	}
	answer, _ := outbound.ReadLimited(resp, errBodyLimit)
	return classify(resp, answer, now)
}

// ttl is the seconds until the notification expires (RFC 8030 §5.2), so a
// push service keeps an undelivered message exactly as long as it matters.
func ttl(msg *fanout.Message, now time.Time) int64 {
	if msg.Type == resource.ChangeDeleted || msg.Type == resource.ChangeExpired {
		return int64(dismissTTL / time.Second)
	}
	exp := msg.Notification.ExpirationDateTime.Time
	if exp.IsZero() || !exp.After(now) {
		return 0
	}
	return int64(exp.Sub(now) / time.Second)
}

// urgency maps a notification's priority to RFC 8030 §5.3.
func urgency(priority string) string {
	switch priority {
	case resource.PriorityHigh:
		return "high"
	case resource.PriorityLow:
		return "low"
	}
	return "normal"
}

// Topic is the RFC 8030 §5.4 Topic for a notification's appNotificationId:
// at most 32 characters of the URL-safe base64 alphabet. A hash, because
// the id may be longer and hold any character, and because the push
// service need not learn it. A later message with the same topic replaces
// an undelivered one, so a device that was offline gets only the latest
// state. The notification's id is in it too: once a notification is
// deleted its appNotificationId makes a new one, whose messages must not
// replace the old one's deletion, nor be replaced by it.
func Topic(appNotificationID, id string) string {
	sum := sha256.Sum256([]byte(appNotificationID + "\x00" + id))
	return base64.RawURLEncoding.EncodeToString(sum[:24]) // 24 bytes → 32 chars
}

func classify(resp *http.Response, answer []byte, now time.Time) fanout.Result {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return fanout.Result{Outcome: fanout.Delivered}
	case code == http.StatusNotFound || code == http.StatusGone:
		return fanout.Result{Outcome: fanout.Disable, Err: answered(code, nil)}
	case code == http.StatusTooManyRequests || code >= 500:
		return fanout.Result{Outcome: fanout.Retry, Err: answered(code, nil),
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), now)}
	case code >= 300 && code < 400:
		return failed(answered(code, nil) + "; redirects are not followed")
	}
	return failed(answered(code, answer))
}

// answered is "push service answered 410 Gone", with the start of the
// service's own explanation when it gave one.
func answered(code int, answer []byte) string {
	s := "push service answered " + strconv.Itoa(code)
	if t := http.StatusText(code); t != "" {
		s += " " + t
	}
	if r := reason(answer); r != "" {
		s += ": " + r
	}
	return s
}

// reason makes a push service's answer fit a delivery record: one line of
// printable text, at most 120 bytes.
func reason(b []byte) string {
	s := strings.ToValidUTF8(string(b), "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = strings.ToValidUTF8(s[:120], "") + "…"
	}
	return s
}

// retryAfter reads Retry-After as seconds or an HTTP date (RFC 9110
// §10.2.3); zero when absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, maxRetryAfter))
}

func transportError(ctx context.Context, err error) fanout.Result {
	var re *outbound.RefusedError
	if errors.As(err, &re) {
		return failed("endpoint refused: " + re.Reason)
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return fanout.Result{Outcome: fanout.Retry, Err: "delivery was cancelled"}
	}
	var ne net.Error
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fanout.Result{Outcome: fanout.Retry, Err: "push service did not answer in time"}
	}
	// url.Error's text repeats the endpoint, which is long and says
	// nothing new; keep what went wrong.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fanout.Result{Outcome: fanout.Retry, Err: "push service unreachable: " + outbound.WithoutResolver(err).Error()}
}

func failed(s string) fanout.Result { return fanout.Result{Outcome: fanout.Failed, Err: s} }

// decodeB64 accepts what browsers send (base64url without padding) and
// what hand-written clients sometimes send (with padding, or standard
// base64), as the subscription validation does.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}
