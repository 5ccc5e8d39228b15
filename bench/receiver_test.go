package bench

import (
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/herald-notify/herald/fanout/webpush"
)

// The bench's browser side reads what Herald's sender encrypts, and
// refuses a body altered in transit: the receiver counts only messages it
// could read.
func TestDecryptPushReadsTheSender(t *testing.T) {
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	msg := []byte(`{"type":"created","rawContent":"b:7:1700000000000000000"}`)
	body, err := webpush.Encrypt(msg, ua.PublicKey().Bytes(), auth)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decryptPush(body, ua, auth)
	if err != nil || string(got) != string(msg) {
		t.Fatalf("decrypted %q, %v", got, err)
	}
	if seq, sent, ok := parseMark(got); !ok || seq != 7 || sent != 1700000000000000000 {
		t.Fatalf("mark: %d %d %v", seq, sent, ok)
	}
	body[len(body)-1] ^= 1
	if _, err := decryptPush(body, ua, auth); err == nil {
		t.Fatal("a tampered body decrypted")
	}
}

func TestVerifyWebhookChecksTheSignature(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	body := []byte(`{"type":"notification.created"}`)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("msg_1." + ts + "."))
	mac.Write(body)
	sig := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	h := http.Header{"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {"v1,bm9wZQ== " + sig}}
	if err := verifyWebhook(key, h, body); err != nil {
		t.Fatalf("a good signature: %v", err)
	}
	if err := verifyWebhook(key, h, append(body, ' ')); err == nil {
		t.Fatal("an altered body verified")
	}
	old := h.Clone()
	old.Set("Webhook-Timestamp", strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10))
	if err := verifyWebhook(key, old, body); err == nil {
		t.Fatal("an hour-old timestamp verified")
	}
}
