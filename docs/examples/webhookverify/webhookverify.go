// Package webhookverify is a webhook receiver's side of Herald's
// deliveries, as docs/API-NOTES.md shows it ("Receiving webhooks"). It
// uses the standard library only, so that it can be copied; a test sends
// through a real node to it, so that the copy in the docs is one that
// works.
package webhookverify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Verify checks that body and its headers came from Herald, signed with
// the subscription's secret ("whsec_..."), less than five minutes ago.
// body must be the request body exactly as received.
func Verify(secret string, h http.Header, body []byte, now time.Time) error {
	// Herald issues standard base64; secrets of its earlier versions
	// may be base64url, padded or not.
	enc := strings.TrimRight(strings.TrimPrefix(secret, "whsec_"), "=")
	key, err := base64.RawStdEncoding.DecodeString(enc)
	if err != nil {
		key, err = base64.RawURLEncoding.DecodeString(enc)
	}
	if err != nil || len(key) == 0 {
		return errors.New("the secret is not whsec_ and base64")
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil {
		return errors.New("webhook-id or webhook-timestamp missing")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("webhook-timestamp is more than five minutes off")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	// The header may list several signatures, space-separated.
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

// Handler verifies each request and passes it to handle with its
// webhook-id, which stays the same across Herald's retries of one
// message: handle drops an id it has already handled.
func Handler(secret string, handle func(id string, body []byte) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "cannot read the body", http.StatusBadRequest)
			return
		}
		if err := Verify(secret, r.Header, body, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if err := handle(r.Header.Get("webhook-id"), body); err != nil {
			// Any answer but 2xx and 410 makes Herald try again later.
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
