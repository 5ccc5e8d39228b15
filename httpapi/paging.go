package httpapi

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"

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
