package webpush

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
)

// KeyPair is the server's VAPID key pair (RFC 8292): a P-256 ECDSA key that
// signs the JWT of every push request. Browsers bind a subscription to its
// public key (applicationServerKey), so the pair is made once, on first
// start, and kept in the replicated state: every node must sign with the
// same key, and losing it orphans every webPush subscription.
type KeyPair struct {
	priv   *ecdsa.PrivateKey
	pub    []byte // uncompressed point, 65 bytes
	pubB64 string
}

// GenerateKeyPair makes a new VAPID key pair from crypto/rand.
func GenerateKeyPair() (*KeyPair, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("webpush: generate VAPID key: %w", err)
	}
	return newKeyPair(priv)
}

func newKeyPair(priv *ecdsa.PrivateKey) (*KeyPair, error) {
	pub, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("webpush: VAPID public key: %w", err)
	}
	return &KeyPair{priv: priv, pub: pub, pubB64: base64.RawURLEncoding.EncodeToString(pub)}, nil
}

// ParseKeyPair reads a key pair written by MarshalBinary.
func ParseKeyPair(b []byte) (*KeyPair, error) {
	k := new(KeyPair)
	if err := k.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return k, nil
}

// MarshalBinary encodes the pair as PKCS#8 DER: a standard, self-describing
// format that openssl and other tools read, should an operator ever need to
// move the key to another push sender.
func (k *KeyPair) MarshalBinary() ([]byte, error) {
	if k == nil || k.priv == nil {
		return nil, errors.New("webpush: empty VAPID key pair")
	}
	return x509.MarshalPKCS8PrivateKey(k.priv)
}

// UnmarshalBinary decodes what MarshalBinary wrote, and refuses anything but
// a P-256 ECDSA key, the only curve VAPID uses.
func (k *KeyPair) UnmarshalBinary(b []byte) error {
	key, err := x509.ParsePKCS8PrivateKey(b)
	if err != nil {
		return fmt.Errorf("webpush: parse VAPID key: %w", err)
	}
	priv, ok := key.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return errors.New("webpush: VAPID key is not a P-256 ECDSA key")
	}
	nk, err := newKeyPair(priv)
	if err != nil {
		return err
	}
	*k = *nk
	return nil
}

// PublicKey is the public key as browsers take it for applicationServerKey
// and as it goes in the k= parameter: the uncompressed point, base64url
// without padding. It is what GET /v1.0/webPush/vapidPublicKey answers.
func (k *KeyPair) PublicKey() string { return k.pubB64 }
