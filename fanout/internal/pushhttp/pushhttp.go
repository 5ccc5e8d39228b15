// Package pushhttp holds what the webhook, FCM and APNs senders share about
// talking to a remote HTTP endpoint: a client that never follows redirects,
// a bounded read of the answer, Retry-After, and errors worded for a
// delivery record's lastError.
package pushhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/herald-notify/herald/fanout/outbound"
)

// MaxBody is how much of any response a sender reads. A push service or
// webhook receiver may answer with anything, of any size; what matters is
// the status and, for the push services, a small JSON error. 4 KiB holds
// every documented error body.
const MaxBody = 4 << 10

// MaxRetryAfter caps a Retry-After. An endpoint that asks for a week is
// asking to be ignored; the engine's own schedule and the notification's
// expiry take over beyond a day.
const MaxRetryAfter = 24 * time.Hour

// NoRedirects returns a copy of c that hands 3xx answers back instead of
// following them. The contract says redirects are not followed, and a
// sender must not rely on every caller to configure that: following one
// would send a signed body, or a provider token, to a place nobody
// registered. The copy shares c's Transport, so connection pools are
// shared too.
func NoRedirects(c *http.Client) *http.Client {
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}

// ReadBody reads at most MaxBody bytes of r. The caller closes the body;
// whatever was not read is dropped with the connection, which is cheaper
// than draining an endless answer.
func ReadBody(r io.Reader) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, MaxBody))
	return b
}

// RetryAfter parses a Retry-After header, in delay-seconds or HTTP-date
// form (RFC 9110 section 10.2.3), relative to now. It is zero when absent
// or unusable, and at most MaxRetryAfter.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	return min(d, MaxRetryAfter)
}

// TransportError words a failed round trip. It drops the URL that
// net/http puts in front (a webhook URL may carry a token in its query, and
// the record names the subscription anyway) and says plainly when the
// deadline ran out.
func TransportError(ctx context.Context, err error) string {
	var ue *url.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded),
		errors.As(err, &ue) && ue.Timeout():
		return "timed out waiting for the endpoint"
	case errors.Is(err, context.Canceled):
		return "canceled before the endpoint answered"
	}
	if ue != nil {
		err = ue.Err
	}
	return "request failed: " + outbound.WithoutResolver(err).Error()
}

// Snippet returns the start of a response body as printable text for an
// error message: at most 200 bytes, control characters replaced, invalid
// UTF-8 dropped.
func Snippet(b []byte) string {
	const limit = 200
	var sb strings.Builder
	for len(b) > 0 && sb.Len() < limit {
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		switch {
		case r == utf8.RuneError && n == 1:
			continue
		case unicode.IsControl(r) || unicode.IsSpace(r):
			r = ' '
		}
		sb.WriteRune(r)
	}
	s := strings.Join(strings.Fields(sb.String()), " ")
	if len(b) > 0 {
		s += "…"
	}
	return s
}

// StatusError words a non-success answer: "HTTP 500: <snippet>".
func StatusError(code int, body []byte) string {
	s := "HTTP " + strconv.Itoa(code)
	if t := http.StatusText(code); t != "" {
		s += " " + t
	}
	if sn := Snippet(body); sn != "" {
		s += ": " + sn
	}
	return s
}
