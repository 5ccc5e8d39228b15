package webpush

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/herald-notify/herald/fanout/webpush/webpushtest"
)

// The example of RFC 8291 (section 5, values in Appendix A).
const (
	rfcPlaintext = "When I grow up, I want to be a watermelon"
	rfcASPrivate = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
	rfcASPublic  = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
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

func TestEncryptRoundTripsAndVariesPerMessage(t *testing.T) {
	browser := webpushtest.NewBrowser(t)
	ua, auth := browser.Key, browser.Auth
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
		pt, err := browser.Decrypt(body)
		if err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("decrypted %q, %v", pt, err)
		}
	}
}

func TestEncryptSizeLimit(t *testing.T) {
	b := webpushtest.NewBrowser(t)
	ua, auth := b.Key, b.Auth
	body, err := Encrypt(bytes.Repeat([]byte{'x'}, MaxPlaintext), ua.PublicKey().Bytes(), auth)
	if err != nil || len(body) != 4096 {
		t.Fatalf("largest message: %d bytes, %v; want exactly 4096", len(body), err)
	}
	if _, err := Encrypt(bytes.Repeat([]byte{'x'}, MaxPlaintext+1), ua.PublicKey().Bytes(), auth); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestEncryptRejectsBadSubscriptionKeys(t *testing.T) {
	b := webpushtest.NewBrowser(t)
	ua, auth := b.Key, b.Auth
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
