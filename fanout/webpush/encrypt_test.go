package webpush

import (
	"bytes"
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

// The example of RFC 8291 (section 5, values in Appendix A).
const (
	rfcPlaintext = "When I grow up, I want to be a watermelon"
	rfcASPrivate = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
	rfcASPublic  = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
	rfcUAPrivate = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
	rfcUAPublic  = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
	rfcSalt      = "DGv6ra1nlYgDCS1FRnbzlw"
	rfcAuth      = "BTBZMqHH6r4Tts7J_aSIgg"
	rfcBody      = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)

func b64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEncryptReproducesRFC8291Example(t *testing.T) {
	as, err := ecdh.P256().NewPrivateKey(b64(t, rfcASPrivate))
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.RawURLEncoding.EncodeToString(as.PublicKey().Bytes()); got != rfcASPublic {
		t.Fatalf("as public key %s, want %s", got, rfcASPublic)
	}
	ua, err := ecdh.P256().NewPublicKey(b64(t, rfcUAPublic))
	if err != nil {
		t.Fatal(err)
	}
	body, err := encrypt([]byte(rfcPlaintext), ua, b64(t, rfcAuth), as, b64(t, rfcSalt))
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.RawURLEncoding.EncodeToString(body); got != rfcBody {
		t.Fatalf("encrypted body\n got %s\nwant %s", got, rfcBody)
	}
}

// The browser side used by the tests must itself be right, or a round trip
// through it proves nothing.
func TestBrowserDecryptReadsRFC8291Example(t *testing.T) {
	ua, err := ecdh.P256().NewPrivateKey(b64(t, rfcUAPrivate))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := browserDecrypt(b64(t, rfcBody), ua, b64(t, rfcAuth))
	if err != nil || string(pt) != rfcPlaintext {
		t.Fatalf("decrypted %q, %v", pt, err)
	}
}

func TestEncryptRoundTripsAndVariesPerMessage(t *testing.T) {
	ua, auth := newBrowser(t)
	msg := []byte(`{"type":"created","id":"n1"}`)
	a, err := Encrypt(msg, ua.PublicKey().Bytes(), auth)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Encrypt(msg, ua.PublicKey().Bytes(), auth)
	if bytes.Equal(a[:headerLen], b[:headerLen]) {
		t.Fatal("salt and ephemeral key repeated across messages")
	}
	for _, body := range [][]byte{a, b} {
		pt, err := browserDecrypt(body, ua, auth)
		if err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("decrypted %q, %v", pt, err)
		}
	}
}

func TestEncryptSizeLimit(t *testing.T) {
	ua, auth := newBrowser(t)
	body, err := Encrypt(bytes.Repeat([]byte{'x'}, MaxPlaintext), ua.PublicKey().Bytes(), auth)
	if err != nil || len(body) != 4096 {
		t.Fatalf("largest message: %d bytes, %v; want exactly 4096", len(body), err)
	}
	if _, err := Encrypt(bytes.Repeat([]byte{'x'}, MaxPlaintext+1), ua.PublicKey().Bytes(), auth); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestEncryptRejectsBadSubscriptionKeys(t *testing.T) {
	ua, auth := newBrowser(t)
	bad := ua.PublicKey().Bytes()
	bad[10] ^= 0xff // no longer on the curve
	if _, err := Encrypt([]byte("x"), bad, auth); err == nil {
		t.Error("a point off the curve was accepted")
	}
	if _, err := Encrypt([]byte("x"), ua.PublicKey().Bytes(), auth[:8]); err == nil {
		t.Error("an 8-byte auth secret was accepted")
	}
}

func BenchmarkEncrypt(b *testing.B) {
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	msg := []byte(`{"type":"created","id":"AAMkAGI2TG93AAA=","title":"Build 4711 failed","body":"3 tests failed in fanout/webpush","readState":"unread","userActionState":"noInteraction","appNotificationId":"build-4711"}`)
	pub := ua.PublicKey().Bytes()
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Encrypt(msg, pub, auth); err != nil {
			b.Fatal(err)
		}
	}
}

// newBrowser makes what a browser makes for a push subscription: a P-256
// key pair (p256dh) and a 16-byte authentication secret.
func newBrowser(t testing.TB) (*ecdh.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	return k, auth
}

// browserDecrypt is the receiving side of RFC 8291 and RFC 8188, written
// from the RFCs apart from the sender's code, as a browser would do it.
func browserDecrypt(body []byte, ua *ecdh.PrivateKey, auth []byte) ([]byte, error) {
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
	ikm, _ := hkdf.Key(sha256.New, secret, auth, info, 32)
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
