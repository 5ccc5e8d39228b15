package pushhttp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"9999999999999", MaxRetryAfter},
		{now.Add(30 * 24 * time.Hour).Format(http.TimeFormat), MaxRetryAfter},
	} {
		h := http.Header{}
		if tc.v != "" {
			h.Set("Retry-After", tc.v)
		}
		if got := RetryAfter(h, now); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestSnippetIsShortAndPrintable(t *testing.T) {
	if got := Snippet([]byte("a\x00b\n\tc\xff d")); got != "a b c d" {
		t.Errorf("got %q", got)
	}
	long := Snippet([]byte(strings.Repeat("é", 1000)))
	if len(long) > 210 || !strings.HasSuffix(long, "…") {
		t.Errorf("long snippet of %d bytes: %q", len(long), long)
	}
}

func TestTransportErrorSaysTimeoutAndHidesURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-ctx.Done()
	if got := TransportError(ctx, context.DeadlineExceeded); got != "timed out waiting for the endpoint" {
		t.Errorf("got %q", got)
	}
	_, err := http.Get("http://127.0.0.1:1/secret?token=abc")
	if got := TransportError(context.Background(), err); strings.Contains(got, "secret") || !strings.HasPrefix(got, "request failed: ") {
		t.Errorf("got %q", got)
	}
	if got := TransportError(context.Background(), errors.New("boom")); got != "request failed: boom" {
		t.Errorf("got %q", got)
	}
}

// A delivery's lastError reaches the subscription's owner: a DNS failure
// names the host looked up, not the server's resolver.
func TestTransportErrorHidesTheResolver(t *testing.T) {
	dns := &net.DNSError{Err: "no such host", Name: "db.corp.example", Server: "10.255.255.53:53", IsNotFound: true}
	err := &url.Error{Op: "Post", URL: "https://db.corp.example/hook", Err: &net.OpError{Op: "dial", Net: "tcp", Err: dns}}
	got := TransportError(context.Background(), err)
	if strings.Contains(got, "10.255.255.53") || !strings.Contains(got, "db.corp.example") || !strings.Contains(got, "no such host") {
		t.Errorf("got %q, want the host and what failed without the resolver", got)
	}
	if dns.Server == "" {
		t.Error("the caller's error was changed")
	}
}
