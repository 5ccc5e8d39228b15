// Package ui is the web UI bundled into the binary, served under /ui/: the
// admin console (/ui/) and the user inbox (/ui/inbox/). Both are plain
// HTML, CSS and JavaScript modules in static/, with no build step.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// csp allows nothing but this origin's own files: no inline scripts or
// styles, no eval, no framing. The pages set every style through classes
// or the CSSOM, which style-src does not restrict.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; worker-src 'self'; manifest-src 'self'; font-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// permissions turns off the powerful features the UI never uses, so that
// an injected script could not ask for them either. Notifications and push
// (the inbox's Web Push) are not policy-controlled and stay allowed.
const permissions = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), hid=()"

// Handler serves the UI's files under /ui/.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	etags := fileETags(sub)
	files := http.StripPrefix("/ui/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		SecurityHeaders(h)
		// Embedded files have no modification time, so the browser gets
		// an ETag to revalidate with; no-cache makes it ask every time,
		// so a new binary's UI is never mixed with an old one's modules.
		h.Set("Cache-Control", "no-cache")
		name := strings.TrimPrefix(r.URL.Path, "/ui/")
		if name == "" || strings.HasSuffix(name, "/") {
			name += "index.html"
		}
		if tag, ok := etags[path.Clean(name)]; ok {
			h.Set("ETag", tag)
		}
		files.ServeHTTP(w, r)
	})
}

// SecurityHeaders sets the headers every response under /ui/ carries: the
// pages and their files, and the session endpoints the API serves there.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	// For browsers older than CSP's frame-ancestors.
	h.Set("X-Frame-Options", "DENY")
	h.Set("Permissions-Policy", permissions)
}

// fileETags hashes every embedded file once.
func fileETags(fsys fs.FS) map[string]string {
	tags := map[string]string{}
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		tags[p] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	return tags
}
