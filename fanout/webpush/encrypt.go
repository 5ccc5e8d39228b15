package webpush

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sizes of the aes128gcm content coding (RFC 8188) as Web Push uses it
// (RFC 8291 §4).
const (
	saltLen   = 16
	keyLen    = 65 // uncompressed P-256 point, the keyid
	headerLen = saltLen + 4 + 1 + keyLen
	tagLen    = 16
	authLen   = 16
	// recordSize is the rs field. RFC 8291 §4 says a push message is one
	// record, and 4096 is the record size every implementation uses.
	recordSize = 4096
	// MaxPlaintext is the largest plaintext Encrypt takes. A push service
	// must accept 4096 bytes of body (RFC 8030 §7.2, RFC 8291 §4); less
	// the 86-byte header, the tag and the one delimiter byte, 3993 remain.
	MaxPlaintext = 4096 - headerLen - tagLen - 1
)

// ErrTooLarge is returned for a plaintext over MaxPlaintext.
var ErrTooLarge = errors.New("webpush: plaintext exceeds 3993 bytes")

// Encrypt encrypts plaintext for a push subscription as RFC 8291 describes:
// an ephemeral ECDH key pair and a random salt per message, the result in
// the aes128gcm content coding. p256dh is the subscription's public key
// (65 bytes, uncompressed) and auth its 16-byte authentication secret.
func Encrypt(plaintext, p256dh, auth []byte) ([]byte, error) {
	ua, err := ecdh.P256().NewPublicKey(p256dh)
	if err != nil {
		return nil, fmt.Errorf("webpush: subscription key p256dh: %w", err)
	}
	as, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var salt [saltLen]byte
	rand.Read(salt[:])
	return encrypt(plaintext, ua, auth, as, salt[:])
}

// encrypt is Encrypt with the ephemeral key and salt given, so that the
// RFC 8291 example can be reproduced exactly.
func encrypt(plaintext []byte, ua *ecdh.PublicKey, auth []byte, as *ecdh.PrivateKey, salt []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintext {
		return nil, ErrTooLarge
	}
	if len(auth) != authLen {
		return nil, fmt.Errorf("webpush: subscription secret auth is %d bytes, want %d", len(auth), authLen)
	}
	cek, nonce, err := deriveKeys(ua, auth, as, salt)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}

	// One buffer for header, record and tag: the record is sealed in
	// place after the header.
	out := make([]byte, headerLen, headerLen+len(plaintext)+1+tagLen)
	copy(out, salt)
	binary.BigEndian.PutUint32(out[saltLen:], recordSize)
	out[saltLen+4] = keyLen
	copy(out[saltLen+5:], as.PublicKey().Bytes())

	// The record is the plaintext and the 0x02 delimiter of a last record
	// (RFC 8188 §2), with no padding: padding hides the length, but the
	// length of a notification reveals little and push services bill and
	// limit by size. With a single record, the sequence number is 0 and
	// the nonce is used as derived.
	rec := append(out[headerLen:], plaintext...)
	rec = append(rec, 0x02)
	sealed := gcm.Seal(rec[:0], nonce, rec, nil)
	return out[:headerLen+len(sealed)], nil
}

// deriveKeys is the key schedule of RFC 8291 §3.3-3.4 and RFC 8188 §2.2.
func deriveKeys(ua *ecdh.PublicKey, auth []byte, as *ecdh.PrivateKey, salt []byte) (cek, nonce []byte, err error) {
	secret, err := as.ECDH(ua)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: ECDH: %w", err)
	}
	// key_info = "WebPush: info" || 0x00 || ua_public || as_public
	uaPub, asPub := ua.Bytes(), as.PublicKey().Bytes()
	info := make([]byte, 0, 14+2*keyLen)
	info = append(info, "WebPush: info\x00"...)
	info = append(info, uaPub...)
	info = append(info, asPub...)
	// IKM = HKDF(salt=auth_secret, ikm=ecdh_secret, info=key_info, L=32)
	ikm, err := hkdf.Key(sha256.New, secret, auth, string(info), 32)
	if err != nil {
		return nil, nil, err
	}
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		return nil, nil, err
	}
	if cek, err = hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16); err != nil {
		return nil, nil, err
	}
	if nonce, err = hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12); err != nil {
		return nil, nil, err
	}
	return cek, nonce, nil
}
