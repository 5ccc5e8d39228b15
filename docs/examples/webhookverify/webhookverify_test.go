package webhookverify

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/herald-notify/herald/fanout/webhook"
)

// The docs' verifier agrees with the signer Herald delivers with, and
// refuses what a receiver must refuse.
func TestVerifyAgreesWithHeraldsSigner(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	now := time.Now()
	body := []byte(`{"type":"notification.created","subscriptionId":"s","notification":{"id":"n"}}`)
	good := signed(t, secret, "msg_1", now, body)
	if err := Verify(secret, good, body, now); err != nil {
		t.Fatalf("a genuine request: %v", err)
	}
	rotated := good.Clone()
	rotated.Set("webhook-signature", "v1,b2xkIHNpZ25hdHVyZQ== "+good.Get("webhook-signature"))
	if err := Verify(secret, rotated, body, now); err != nil {
		t.Errorf("a second signature in the list: %v", err)
	}
	for name, tc := range map[string]struct {
		h    http.Header
		body []byte
		now  time.Time
	}{
		"changed body":   {good, []byte(`{"type":"notification.deleted"}`), now},
		"other secret":   {signed(t, "whsec_b3RoZXIgc2VjcmV0IGtleSBieXRlcw==", "msg_1", now, body), body, now},
		"replayed later": {good, body, now.Add(6 * time.Minute)},
		"no id":          {without(good, "webhook-id"), body, now},
		"no signature":   {without(good, "webhook-signature"), body, now},
	} {
		if err := Verify(secret, tc.h, tc.body, tc.now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A secret of an earlier Herald version may be base64url (with - or _),
// which Herald still signs with: the docs' receiver, which says it takes
// either, must verify with it too.
func TestVerifyTakesABase64URLSecret(t *testing.T) {
	const secret = "whsec_-_-_aGVsbG8gd29ybGQgc2VjcmV0IGtleSE_-w"
	now := time.Now()
	body := []byte(`{"type":"notification.created"}`)
	if err := Verify(secret, signed(t, secret, "msg_2", now, body), body, now); err != nil {
		t.Errorf("a base64url secret Herald signs with: %v", err)
	}
}

func signed(t *testing.T, secret, id string, at time.Time, body []byte) http.Header {
	t.Helper()
	sig, err := webhook.Sign(secret, id, at, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	h.Set("webhook-signature", sig)
	return h
}

func without(h http.Header, name string) http.Header {
	c := h.Clone()
	c.Del(name)
	return c
}
