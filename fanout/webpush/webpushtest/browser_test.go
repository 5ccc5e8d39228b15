package webpushtest

import (
	"crypto/ecdh"
	"encoding/base64"
	"testing"
)

// The browser side must itself be right, or a round trip through it proves
// nothing: it reads the example of RFC 8291 (section 5, Appendix A).
func TestDecryptReadsRFC8291Example(t *testing.T) {
	const (
		plaintext = "When I grow up, I want to be a watermelon"
		uaPrivate = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
		auth      = "BTBZMqHH6r4Tts7J_aSIgg"
		body      = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
	)
	b64 := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ua, err := ecdh.P256().NewPrivateKey(b64(uaPrivate))
	if err != nil {
		t.Fatal(err)
	}
	b := &Browser{Key: ua, Auth: b64(auth)}
	pt, err := b.Decrypt(b64(body))
	if err != nil || string(pt) != plaintext {
		t.Fatalf("decrypted %q, %v", pt, err)
	}
	tampered := b64(body)
	tampered[len(tampered)-1] ^= 1
	if _, err := b.Decrypt(tampered); err == nil {
		t.Fatal("a tampered body decrypted")
	}
}

func TestUnknownEndpointIs404(t *testing.T) {
	ps := NewPushService(t, Options{})
	b := NewBrowser(t)
	ep := ps.Subscribe(b, "")
	ps.Unsubscribe(ep)
	resp, err := ps.Client().Post(ep, "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || len(ps.Messages(ep)) != 1 {
		t.Fatalf("status %d, %d messages", resp.StatusCode, len(ps.Messages(ep)))
	}
}
