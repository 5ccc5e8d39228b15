// Package webpushtest holds loopback stand-ins for the two other parties of
// Web Push, for tests: a Browser, which makes a push subscription's keys and
// reads what it receives, and a PushService, which checks every request as
// a real push service would (the VAPID token of RFC 8292, the headers of
// RFC 8030) and decrypts its body with the browser's key (RFC 8291).
//
// It is written from the RFCs apart from the sender in package webpush, and
// imports nothing of it, so that a round trip through it proves the sender
// right rather than consistent with itself.
package webpushtest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Browser is what a browser keeps for one push subscription: a P-256 key
// pair (p256dh) and a 16-byte authentication secret.
type Browser struct {
	Key  *ecdh.PrivateKey
	Auth []byte
}

// NewBrowser makes a browser's subscription keys.
func NewBrowser(t testing.TB) *Browser {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	return &Browser{Key: k, Auth: auth}
}

// P256dh is the public key as PushSubscription.toJSON() gives it: the
// uncompressed point in base64url without padding.
func (b *Browser) P256dh() string {
	return base64.RawURLEncoding.EncodeToString(b.Key.PublicKey().Bytes())
}

// AuthSecret is the authentication secret as toJSON() gives it.
func (b *Browser) AuthSecret() string { return base64.RawURLEncoding.EncodeToString(b.Auth) }

// SubscriptionJSON is the shape of PushSubscription.toJSON().
type SubscriptionJSON struct {
	Endpoint       string `json:"endpoint"`
	ExpirationTime *int64 `json:"expirationTime"`
	Keys           struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// ToJSON is what PushSubscription.toJSON() returns for a subscription of
// this browser at endpoint.
func (b *Browser) ToJSON(endpoint string) SubscriptionJSON {
	s := SubscriptionJSON{Endpoint: endpoint}
	s.Keys.P256dh, s.Keys.Auth = b.P256dh(), b.AuthSecret()
	return s
}

// Channel is the channel of POST /v1.0/me/notificationSubscriptions as a
// web app sends it: toJSON() with "type":"webPush" added.
func (b *Browser) Channel(endpoint string) map[string]any {
	return map[string]any{
		"type":           "webPush",
		"endpoint":       endpoint,
		"expirationTime": nil,
		"keys":           map[string]string{"p256dh": b.P256dh(), "auth": b.AuthSecret()},
	}
}

// Decrypt reads a push message body sent to this browser.
func (b *Browser) Decrypt(body []byte) ([]byte, error) { return Decrypt(body, b.Key, b.Auth) }

// Decrypt is the receiving side of RFC 8291 and the aes128gcm content
// coding of RFC 8188, as a browser does it: one record of at most 4096
// bytes, the sender's key in the keyid.
func Decrypt(body []byte, ua *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("short header")
	}
	salt := body[:16]
	rs := binary.BigEndian.Uint32(body[16:20])
	idlen := int(body[20])
	if rs != 4096 || idlen != 65 || len(body) < 21+idlen {
		return nil, fmt.Errorf("header rs=%d idlen=%d", rs, idlen)
	}
	asPub, err := ecdh.P256().NewPublicKey(body[21 : 21+idlen])
	if err != nil {
		return nil, fmt.Errorf("keyid: %w", err)
	}
	ct := body[21+idlen:]
	if len(ct) > int(rs) {
		return nil, errors.New("more than one record")
	}
	secret, err := ua.ECDH(asPub)
	if err != nil {
		return nil, err
	}
	info := "WebPush: info\x00" + string(ua.PublicKey().Bytes()) + string(asPub.Bytes())
	ikm, err := hkdf.Key(sha256.New, secret, auth, info, 32)
	if err != nil {
		return nil, err
	}
	prk, _ := hkdf.Extract(sha256.New, ikm, salt)
	cek, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	nonce, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	rec, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil {
		return nil, err
	}
	rec = []byte(strings.TrimRight(string(rec), "\x00"))
	if len(rec) == 0 || rec[len(rec)-1] != 0x02 {
		return nil, errors.New("no last-record delimiter")
	}
	return rec[:len(rec)-1], nil
}
