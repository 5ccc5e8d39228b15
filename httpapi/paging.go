package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// collection is the Graph collection shape.
type collection struct {
	Value     any    `json:"value"`
	NextLink  string `json:"@odata.nextLink,omitempty"`
	DeltaLink string `json:"@odata.deltaLink,omitempty"`
}

// top reads $top: 1 to 1000, default def.
func top(r *http.Request, def int) (int, error) {
	v := r.URL.Query().Get("$top")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, resource.Invalid("$top", "$top must be a whole number from 1 to 1000.")
	}
	return n, nil
}

// skipToken decodes the opaque $skiptoken: a base64url key to continue after.
func skipToken(r *http.Request) (string, error) {
	v := r.URL.Query().Get("$skiptoken")
	if v == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || !isKey(string(b)) {
		// Any base64 decodes to something, and continuing after a key no
		// listing holds would answer an empty page as if the end had come.
		return "", resource.Invalid("$skiptoken", "$skiptoken is not one this server made.")
	}
	return string(b), nil
}

// isKey reports whether k could be a key a listing continues after: the
// ids this server makes (GUIDs, sortable and random ids) are short and
// use letters, digits, '-' and '_' only.
func isKey(k string) bool {
	if k == "" || len(k) > 128 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func encodeToken(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// link builds an absolute URL to this request's path with one query
// parameter set (and $skiptoken/$deltatoken cleared), for nextLink and
// deltaLink.
func (s *Server) link(r *http.Request, key, value string) string {
	q := r.URL.Query()
	q.Del("$skiptoken")
	q.Del("$deltatoken")
	q.Del("access_token")
	q.Set(key, value)
	base := strings.TrimRight(s.opts.PublicURL, "/")
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	// Graph writes $skiptoken and $deltatoken with a literal '$'.
	return base + strings.ReplaceAll(u.String(), "%24", "$")
}

func decodeToken(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return string(b), err
}

// writePage answers a paged listing: $top and $skiptoken in, a collection
// with @odata.nextLink out while more items exist.
func writePage[T, V any](s *Server, w http.ResponseWriter, r *http.Request,
	list func(after string, n int) (raft.Page[T], error), view func(*T) V) error {
	n, err := top(r, 100)
	if err != nil {
		return err
	}
	after, err := skipToken(r)
	if err != nil {
		return err
	}
	if after != "" && !resource.IsGUID(after) {
		// These listings continue after an id, a GUID.
		return resource.Invalid("$skiptoken", "$skiptoken is not one this server made.")
	}
	page, err := list(after, n)
	if err != nil {
		return err
	}
	out := collection{Value: views(page.Items, view)}
	if page.Next != "" {
		out.NextLink = s.link(r, "$skiptoken", encodeToken(page.Next))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// writeViews answers a collection of notification views: the bytes
// writeJSON would write for collection{Value: their notifications, ...}.
func writeViews(w http.ResponseWriter, items []*raft.NotificationView, nextLink, deltaLink string) {
	writeEncoded(w, items, func(v *raft.NotificationView) []byte { return v.JSON }, nextLink, deltaLink)
}

// writeRaw answers a collection of items already encoded as JSON.
func writeRaw(w http.ResponseWriter, items [][]byte, nextLink, deltaLink string) {
	writeEncoded(w, items, func(b []byte) []byte { return b }, nextLink, deltaLink)
}

// bodyPool recycles the buffers pages are assembled in; a page of 100
// notifications is about 50 KiB.
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody keeps the rare huge page ($top=1000 of large payloads)
// from pinning its buffer.
const maxPooledBody = 1 << 20

// writeEncoded writes a collection by concatenating its items' encodings,
// byte for byte what json.Marshal of the collection writes (the encoder
// writes each element as it would alone, and escapes the links the same
// way), without encoding the items again.
func writeEncoded[T any](w http.ResponseWriter, items []T, enc func(T) []byte, nextLink, deltaLink string) {
	bp := bodyPool.Get().(*[]byte)
	b := append((*bp)[:0], `{"value":[`...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, enc(it)...)
	}
	b = append(b, ']')
	b = appendLink(b, `,"@odata.nextLink":`, nextLink)
	b = appendLink(b, `,"@odata.deltaLink":`, deltaLink)
	b = append(b, '}')
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	if cap(b) <= maxPooledBody {
		*bp = b
		bodyPool.Put(bp)
	}
}

func appendLink(b []byte, name, link string) []byte {
	if link == "" {
		return b // omitempty
	}
	q, err := json.Marshal(link)
	if err != nil {
		return b // a string always encodes
	}
	return append(append(b, name...), q...)
}
