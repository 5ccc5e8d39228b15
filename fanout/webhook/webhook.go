// Package webhook delivers notifications to webhook subscriptions as
// Standard Webhooks (https://www.standardwebhooks.com): a signed JSON POST
// whose webhook-id stays the same across retries, so that receivers can
// drop duplicates, and whose timestamp is that of the attempt, so that
// receivers can refuse replays.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/fanout/internal/pushhttp"
	"github.com/herald-notify/herald/fanout/outbound"
	"github.com/herald-notify/herald/resource"
)

// Header names of Standard Webhooks.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every webhook signing secret.
const SecretPrefix = "whsec_"

// Tolerance is how far a webhook-timestamp may be from the receiver's
// clock for Verify to accept it: the Standard Webhooks libraries' default.
const Tolerance = 5 * time.Minute

// DefaultTimeout bounds one attempt when the caller's context has no
// earlier deadline; Standard Webhooks recommends 15 to 30 seconds.
const DefaultTimeout = 15 * time.Second

// Errors of Verify and Sign, for errors.Is.
var (
	ErrSecret         = errors.New("webhook: the secret is not whsec_ followed by base64")
	ErrMissingHeaders = errors.New("webhook: webhook-id, webhook-timestamp or webhook-signature missing")
	ErrTimestamp      = errors.New("webhook: webhook-timestamp is not within tolerance")
	ErrSignature      = errors.New("webhook: no matching v1 signature")
)

// Options configure a Sender.
type Options struct {
	// Client makes the requests. Required: it is the caller's outbound
	// client, which decides which addresses may be dialled. The Sender uses
	// a copy that never follows redirects.
	Client *http.Client
	// Timeout bounds one attempt; DefaultTimeout when zero.
	Timeout time.Duration
	// UserAgent is sent with every request; "Herald" when empty.
	UserAgent string
	// Now is the clock for webhook-timestamp; time.Now when nil.
	Now func() time.Time
}

// Sender posts to webhook subscriptions. It is safe for concurrent use.
type Sender struct {
	client    *http.Client
	timeout   time.Duration
	userAgent string
	now       func() time.Time
}

var _ fanout.Sender = (*Sender)(nil)

// New returns a Sender.
func New(o Options) (*Sender, error) {
	if o.Client == nil {
		return nil, errors.New("webhook: Options.Client is required (the outbound client that enforces the address policy)")
	}
	if o.Timeout < 0 {
		return nil, errors.New("webhook: Options.Timeout must not be negative")
	}
	s := &Sender{client: pushhttp.NoRedirects(o.Client), timeout: o.Timeout, userAgent: o.UserAgent, now: o.Now}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.userAgent == "" {
		s.userAgent = "Herald"
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Event is the body of a webhook request.
type Event struct {
	// Type is notification.created, notification.updated or
	// notification.deleted.
	Type           string `json:"type"`
	SubscriptionID string `json:"subscriptionId"`
	// Notification is the whole notification, or {"id","@removed":{"reason"}}
	// for a deletion.
	Notification any `json:"notification"`
}

// Body encodes the webhook body of msg for subscription subID.
func Body(subID string, msg *fanout.Message) ([]byte, error) {
	ev := Event{SubscriptionID: subID}
	switch msg.Type {
	case resource.ChangeCreated, resource.ChangeUpdated:
		ev.Type = "notification." + msg.Type
		ev.Notification = &msg.Notification
	case resource.ChangeDeleted, resource.ChangeExpired:
		// An expiry reaches receivers as a deletion, as on the live stream.
		reason := msg.Reason
		if reason == "" {
			reason = msg.Type
		}
		ev.Type = "notification.deleted"
		ev.Notification = resource.Removed{ID: msg.Notification.ID, Removed: resource.RemovedReason{Reason: reason}}
	default:
		return nil, fmt.Errorf("webhook: unknown message type %q", msg.Type)
	}
	return json.Marshal(&ev)
}

// Send makes one delivery attempt.
func (s *Sender) Send(ctx context.Context, sub *resource.SubscriptionRecord, msg *fanout.Message) fanout.Result {
	key, err := DecodeSecret(sub.WebhookSecret)
	if err != nil {
		// The stored secret is unusable for every message, but that is our
		// record's fault, not the receiver's: fail the message, keep the
		// subscription.
		return fanout.Result{Outcome: fanout.Failed, Err: "the subscription's webhook secret is unusable: " + err.Error()}
	}
	if msg.DeliveryID == "" || strings.ContainsAny(msg.DeliveryID, ". \t\r\n") {
		// The spec forbids a '.' in the id: it is the field separator of
		// the signed content.
		return fanout.Result{Outcome: fanout.Failed, Err: fmt.Sprintf("delivery id %q cannot be a webhook-id", msg.DeliveryID)}
	}
	body, err := Body(sub.ID, msg)
	if err != nil {
		return fanout.Result{Outcome: fanout.Failed, Err: err.Error()}
	}

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.Channel.URL, bytes.NewReader(body))
	if err != nil {
		return fanout.Result{Outcome: fanout.Failed, Err: "bad webhook url: " + err.Error()}
	}
	// The timestamp is this attempt's, not the first one's: receivers
	// refuse timestamps older than a few minutes, and retries go on for
	// hours. The id is what stays the same.
	ts := s.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.userAgent)
	req.Header.Set(HeaderID, msg.DeliveryID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, sign(key, msg.DeliveryID, ts, body))

	resp, err := s.client.Do(req)
	if err != nil {
		// A destination the outbound policy refuses (a name that resolves
		// to a private address) will be refused every time: fail it now.
		var refused *outbound.RefusedError
		if errors.As(err, &refused) {
			return fanout.Result{Outcome: fanout.Failed, Err: "webhook URL refused: " + refused.Reason}
		}
		return fanout.Result{Outcome: fanout.Retry, Err: pushhttp.TransportError(ctx, err)}
	}
	defer resp.Body.Close()
	rbody := pushhttp.ReadBody(resp.Body)
	return classify(resp, rbody, s.now())
}

func classify(resp *http.Response, body []byte, now time.Time) fanout.Result {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return fanout.Result{Outcome: fanout.Delivered}
	case code == http.StatusGone:
		// Standard Webhooks: 410 means the receiver wants no more.
		return fanout.Result{Outcome: fanout.Disable, Err: pushhttp.StatusError(code, body)}
	case code >= 300 && code < 400:
		msg := pushhttp.StatusError(code, nil) + ": redirects are not followed; register the final URL"
		if loc := resp.Header.Get("Location"); loc != "" {
			msg += " (Location: " + pushhttp.Snippet([]byte(loc)) + ")"
		}
		return fanout.Result{Outcome: fanout.Retry, Err: msg}
	default:
		// Everything else, 4xx included, is retried until the notification
		// expires: a receiver's 404 or 401 is as often a deployment in
		// progress as a permanent refusal, and the engine disables endpoints
		// that keep failing.
		return fanout.Result{Outcome: fanout.Retry, RetryAfter: pushhttp.RetryAfter(resp.Header, now), Err: pushhttp.StatusError(code, body)}
	}
}

// DecodeSecret returns the HMAC key of a whsec_ secret. Standard Webhooks
// encodes it in standard base64, as Herald issues it; base64url is
// accepted too, padded or not, for secrets of earlier Herald versions.
func DecodeSecret(secret string) ([]byte, error) {
	s, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, ErrSecret
	}
	s = strings.TrimRight(s, "=")
	key, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		key, err = base64.RawURLEncoding.DecodeString(s)
	}
	if err != nil || len(key) == 0 {
		return nil, ErrSecret
	}
	return key, nil
}

// Sign returns the webhook-signature value, "v1,<base64>", of a message:
// HMAC-SHA256 of "id.timestamp.body" keyed by the decoded secret.
func Sign(secret, id string, timestamp time.Time, body []byte) (string, error) {
	key, err := DecodeSecret(secret)
	if err != nil {
		return "", err
	}
	return sign(key, id, timestamp.Unix(), body), nil
}

func sign(key []byte, id string, ts int64, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, ts, body))
}

func mac(key []byte, id string, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	var num [20]byte
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(num[:0], ts, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a webhook request as a receiver should: one of the v1
// signatures in webhook-signature (a space-separated list, so that secrets
// can be rotated) matches body under secret, and webhook-timestamp is
// within Tolerance of the local clock. body must be the raw request body,
// not a re-encoding of it. Receivers should still drop webhook-ids they
// have seen.
func Verify(secret string, headers http.Header, body []byte) error {
	key, err := DecodeSecret(secret)
	if err != nil {
		return err
	}
	id, tsText, sigs := headers.Get(HeaderID), headers.Get(HeaderTimestamp), headers.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	now := time.Now()
	if t := time.Unix(ts, 0); t.Before(now.Add(-Tolerance)) || t.After(now.Add(Tolerance)) {
		return ErrTimestamp
	}
	want := mac(key, id, ts, body)
	for _, vs := range strings.Fields(sigs) {
		v, sig, ok := strings.Cut(vs, ",")
		if !ok || v != "v1" {
			continue // v1a (asymmetric) and future schemes are not ours
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrSignature
}
