package resource

import (
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Platform types of a subscription.
const (
	PlatformWindows = "windows"
	PlatformIOS     = "ios"
	PlatformAndroid = "android"
	PlatformWeb     = "web"
)

// Channel types.
const (
	ChannelLive    = "live"
	ChannelWebPush = "webPush"
	ChannelWebhook = "webhook"
	ChannelFCM     = "fcm"
	ChannelAPNs    = "apns"
)

// Subscription statuses.
const (
	SubActive   = "active"
	SubExpired  = "expired"
	SubDisabled = "disabled"
)

// Subscription limits of API.md §4.
const (
	DefaultSubscriptionTTL = 30 * 24 * time.Hour
	MaxSubscriptionTTL     = 90 * 24 * time.Hour
)

// NormalizePlatform maps the accepted spellings to the stored one. Both
// subscriptions ("web", "webPush") and target policies ("webPush", "web")
// name the browser platform.
func NormalizePlatform(p string) (string, bool) {
	switch strings.ToLower(p) {
	case "windows":
		return PlatformWindows, true
	case "ios":
		return PlatformIOS, true
	case "android":
		return PlatformAndroid, true
	case "web", "webpush":
		return PlatformWeb, true
	}
	return "", false
}

// PushKeys are a browser push subscription's keys.
type PushKeys struct {
	P256dh string `json:"p256dh"`
	Auth   string `json:"auth"`
}

// Channel says how a device is reached.
type Channel struct {
	Type     string    `json:"type"`
	Endpoint string    `json:"endpoint,omitempty"`
	Keys     *PushKeys `json:"keys,omitempty"`
	// ExpirationTime is part of a browser's PushSubscription.toJSON(); it is
	// accepted so that object can be sent as it is, and otherwise ignored.
	ExpirationTime json.RawMessage `json:"expirationTime,omitempty"`
	URL            string          `json:"url,omitempty"`
	Token          string          `json:"token,omitempty"`
	Topic          string          `json:"topic,omitempty"`
	Environment    string          `json:"environment,omitempty"`
}

// Public returns the channel without key material or device tokens.
func (c Channel) Public() Channel {
	return Channel{Type: c.Type, Endpoint: c.Endpoint, URL: c.URL, Topic: c.Topic, Environment: c.Environment}
}

// Subscription is the API shape of a UNSID (API.md §4).
type Subscription struct {
	ID                 string  `json:"id"`
	UserID             string  `json:"userId"`
	TargetHostName     string  `json:"targetHostName"`
	PlatformType       string  `json:"platformType"`
	DeviceName         string  `json:"deviceName"`
	Channel            Channel `json:"channel"`
	Status             string  `json:"status"`
	StatusReason       *string `json:"statusReason"`
	CreatedDateTime    Time    `json:"createdDateTime"`
	ExpirationDateTime Time    `json:"expirationDateTime"`
}

// SubscriptionRecord is a subscription as stored, with its secrets.
type SubscriptionRecord struct {
	Subscription
	AppID         string `json:"appObjectId"`
	WebhookSecret string `json:"webhookSecret,omitempty"`
	// FailingSince is when deliveries to this subscription started failing
	// without a success since (Unix ns; 0: not failing). It is replicated so
	// that a webhook's disable-after clock survives restarts.
	FailingSince int64 `json:"failingSince,omitempty"`
	// FailingUntil is the latest time a failed attempt left a retry due
	// at, or ended at when none followed (Unix ns): a failure long after
	// it is a new outage, and the clock starts again
	// (DeliveryOutcome.FailingAgain).
	FailingUntil int64 `json:"failingUntil,omitempty"`
}

// View is the API shape at time now: key material removed, and a lapsed
// subscription shown as expired even before the purge marks it.
func (s *SubscriptionRecord) View(now time.Time) Subscription {
	v := s.Subscription
	v.Channel = v.Channel.Public()
	if v.Status == SubActive && !now.Before(v.ExpirationDateTime.Time) {
		v.Status = SubExpired
	}
	return v
}

// ActiveAt reports whether the subscription receives notifications at now.
func (s *SubscriptionRecord) ActiveAt(now time.Time) bool {
	return s.Status == SubActive && now.Before(s.ExpirationDateTime.Time)
}

// Host is the destination host of a webPush or webhook subscription, and
// the channel type for the others.
func (c *Channel) Host() string {
	raw := c.URL
	if c.Type == ChannelWebPush {
		raw = c.Endpoint
	}
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Host
	}
	return c.Type
}

// SubscriptionInput is the body of POST /me/notificationSubscriptions.
type SubscriptionInput struct {
	TargetHostName     string   `json:"targetHostName"`
	PlatformType       string   `json:"platformType"`
	DeviceName         string   `json:"deviceName"`
	Channel            *Channel `json:"channel"`
	ExpirationDateTime *Time    `json:"expirationDateTime"`
}

// Validate normalises in and checks it at time now.
func (in *SubscriptionInput) Validate(now time.Time) *Error {
	if in.TargetHostName == "" {
		return Invalid("targetHostName", "targetHostName is required.")
	}
	p, ok := NormalizePlatform(in.PlatformType)
	if !ok {
		return Invalid("platformType", "platformType must be windows, ios, android or web.")
	}
	in.PlatformType = p
	if err := ValidateDeviceName(in.DeviceName); err != nil {
		return err
	}
	exp, err := SubscriptionExpiry(in.ExpirationDateTime, now)
	if err != nil {
		return err
	}
	in.ExpirationDateTime = &exp
	if in.Channel == nil {
		return Invalid("channel", "channel is required.")
	}
	return in.Channel.Validate()
}

// SubscriptionExpiry applies the default and bounds of a subscription's
// expirationDateTime.
func SubscriptionExpiry(t *Time, now time.Time) (Time, *Error) {
	if t == nil { // year 1 is a past time, not an absent one
		return At(now.Add(DefaultSubscriptionTTL)), nil
	}
	if !t.After(now) {
		return Time{}, Invalid("expirationDateTime", "expirationDateTime must be in the future.")
	}
	if t.After(now.Add(MaxSubscriptionTTL)) {
		return Time{}, Invalid("expirationDateTime", "expirationDateTime must be at most 90 days from now.")
	}
	return *t, nil
}

// Validate checks the fields each channel type needs, and normalises the type.
func (c *Channel) Validate() *Error {
	switch strings.ToLower(c.Type) {
	case "live":
		c.Type = ChannelLive
		if c.Endpoint != "" || c.Keys != nil || c.URL != "" || c.Token != "" || c.Topic != "" || c.Environment != "" {
			return Invalid("channel", "a live channel takes no other properties.")
		}
	case "webpush":
		c.Type = ChannelWebPush
		if err := checkURL("channel.endpoint", c.Endpoint); err != nil {
			return err
		}
		if c.Keys == nil {
			return Invalid("channel.keys", "channel.keys with p256dh and auth is required for webPush.")
		}
		if b, err := decodeB64URL(c.Keys.P256dh); err != nil || len(b) != 65 || b[0] != 4 {
			return Invalid("channel.keys.p256dh", "p256dh must be an uncompressed P-256 public key (65 bytes) in base64url.")
		} else if _, err := ecdh.P256().NewPublicKey(b); err != nil {
			// Of the right shape but not a point on the curve: every
			// message to it would fail to encrypt.
			return Invalid("channel.keys.p256dh", "p256dh is not a point on the P-256 curve.")
		}
		if b, err := decodeB64URL(c.Keys.Auth); err != nil || len(b) != 16 {
			return Invalid("channel.keys.auth", "auth must be 16 bytes in base64url.")
		}
		if c.URL != "" || c.Token != "" || c.Topic != "" || c.Environment != "" {
			return Invalid("channel", "a webPush channel takes endpoint and keys only.")
		}
	case "webhook":
		c.Type = ChannelWebhook
		if err := checkURL("channel.url", c.URL); err != nil {
			return err
		}
		if c.Endpoint != "" || c.Keys != nil || c.Token != "" || c.Topic != "" || c.Environment != "" {
			return Invalid("channel", "a webhook channel takes url only.")
		}
	case "fcm":
		c.Type = ChannelFCM
		if c.Token == "" || len(c.Token) > 4096 {
			return Invalid("channel.token", "channel.token, the FCM registration token, is required.")
		}
		if c.Endpoint != "" || c.Keys != nil || c.URL != "" || c.Topic != "" || c.Environment != "" {
			return Invalid("channel", "an fcm channel takes token only.")
		}
	case "apns":
		c.Type = ChannelAPNs
		if !isHex(c.Token) || len(c.Token) < 32 || len(c.Token) > 200 {
			return Invalid("channel.token", "channel.token must be the APNs device token in hexadecimal.")
		}
		if c.Topic == "" || len(c.Topic) > 256 {
			return Invalid("channel.topic", "channel.topic, the app's bundle id, is required.")
		}
		switch c.Environment {
		case "":
			c.Environment = "production"
		case "production", "sandbox":
		default:
			return Invalid("channel.environment", "channel.environment must be production or sandbox.")
		}
		if c.Endpoint != "" || c.Keys != nil || c.URL != "" {
			return Invalid("channel", "an apns channel takes token, topic and environment only.")
		}
	default:
		return Invalid("channel.type", "channel.type must be live, webPush, webhook, fcm or apns.")
	}
	c.ExpirationTime = nil
	return nil
}

// checkURL accepts http and https URLs with a host. Whether http and private
// addresses may be used is the delivery policy's decision, made at send time.
func checkURL(field, s string) *Error {
	if s == "" {
		return Invalid(field, "%s is required.", field)
	}
	if len(s) > 2048 {
		return Invalid(field, "%s must have at most 2048 characters.", field)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return Invalid(field, "%s must be an absolute https URL.", field)
	}
	return nil
}

func decodeB64URL(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// ValidateDeviceName checks a subscription's deviceName: shown in lists and
// logs, so no control characters.
func ValidateDeviceName(name string) *Error {
	if utf8.RuneCountInString(name) > 256 {
		return Invalid("deviceName", "deviceName must have at most 256 characters.")
	}
	if hasControl(name) {
		return Invalid("deviceName", "deviceName may not hold control characters.")
	}
	return nil
}

// SubscriptionPatch is the body of PATCH .../notificationSubscriptions/{id}.
type SubscriptionPatch struct {
	DeviceName         *string `json:"deviceName"`
	ExpirationDateTime *Time   `json:"expirationDateTime"`
}
