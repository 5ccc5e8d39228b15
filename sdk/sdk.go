// Package sdk holds Herald's browser SDK (herald.js), served at
// /sdk/herald.js as an ES module that pages import as it is.
package sdk

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed herald.js
var source []byte

var etag = func() string {
	sum := sha256.Sum256(source)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}()

// Handler serves GET /sdk/herald.js.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		// Revalidated on every load, so a new binary's SDK is used at once.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		// A module imported by another site's page is fetched with CORS.
		h.Set("Access-Control-Allow-Origin", "*")
		http.ServeContent(w, r, "herald.js", time.Time{}, bytes.NewReader(source))
	})
}
