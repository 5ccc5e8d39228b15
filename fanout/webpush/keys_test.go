package webpush

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
)

func TestKeyPairSurvivesMarshalling(t *testing.T) {
	k, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	pub := b64(t, k.PublicKey())
	if len(pub) != 65 || pub[0] != 4 {
		t.Fatalf("public key is %d bytes starting %#x; want an uncompressed P-256 point", len(pub), pub[0])
	}
	raw, err := k.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKeyPair(raw)
	if err != nil {
		t.Fatal(err)
	}
	if back.PublicKey() != k.PublicKey() || !back.priv.Equal(k.priv) {
		t.Fatal("key pair changed through MarshalBinary and ParseKeyPair")
	}
}

func TestParseKeyPairRejectsOtherKeys(t *testing.T) {
	if _, err := ParseKeyPair([]byte("not a key")); err == nil {
		t.Error("garbage accepted")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	raw, _ := x509.MarshalPKCS8PrivateKey(p384)
	if _, err := ParseKeyPair(raw); err == nil {
		t.Error("a P-384 key accepted")
	}
	var empty KeyPair
	if _, err := empty.MarshalBinary(); err == nil {
		t.Error("an empty key pair marshalled")
	}
}

func TestNewChecksOptions(t *testing.T) {
	k, _ := GenerateKeyPair()
	for _, o := range []Options{
		{Subject: "mailto:ops@example.com"},
		{Keys: k},
		{Keys: k, Subject: "ops@example.com"},
		{Keys: k, Subject: "http://example.com/contact"},
		{Keys: k, Subject: "https://"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	for _, sub := range []string{"mailto:ops@example.com", "https://example.com/contact"} {
		if _, err := New(Options{Keys: k, Subject: sub}); err != nil {
			t.Errorf("subject %s: %v", sub, err)
		}
	}
}
