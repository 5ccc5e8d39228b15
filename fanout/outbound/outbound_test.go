package outbound

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func okServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Do(req)
}

func TestLoopbackRefusedWithoutAllowPrivate(t *testing.T) {
	srv, hits := okServer(t)
	// The test server speaks http; ask over https so the scheme check
	// passes and the address check is what refuses. Nothing is dialled,
	// so the TLS mismatch never matters.
	u := strings.Replace(srv.URL, "http://", "https://", 1)
	_, err := get(t, NewClient(Policy{}), u)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "loopback") {
		t.Fatalf("err = %v, want a loopback reason", err)
	}
	if hits.Load() != 0 {
		t.Fatalf("server was reached %d times", hits.Load())
	}
}

func TestLoopbackReachedWithAllowPrivate(t *testing.T) {
	srv, hits := okServer(t)
	resp, err := get(t, NewClient(Policy{AllowPrivate: true}), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := ReadLimited(resp, 100)
	if err != nil || string(body) != "ok" || hits.Load() != 1 {
		t.Fatalf("body %q, err %v, hits %d", body, err, hits.Load())
	}
}

func TestHTTPRefusedWithoutAllowPrivate(t *testing.T) {
	_, err := get(t, NewClient(Policy{}), "http://example.com/")
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "http://") {
		t.Fatalf("err = %v, want the http:// refusal", err)
	}
}

func TestOtherSchemesRefused(t *testing.T) {
	// net/http itself has no transport for these; the refusal must come
	// from the policy with a readable reason, even with AllowPrivate.
	for _, u := range []string{"ftp://example.com/x", "file:///etc/passwd"} {
		req := &http.Request{Method: "GET", URL: mustURL(t, u), Header: http.Header{}}
		_, err := NewClient(Policy{AllowPrivate: true}).Transport.RoundTrip(req)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: err = %v, want ErrRefused", u, err)
		}
	}
}

func TestHostnameResolvingToLoopbackRefusedAtDial(t *testing.T) {
	srv, hits := okServer(t)
	// "localhost" passes any check on the URL text; only the dial-time
	// check sees that it resolves to 127.0.0.1 (or ::1).
	port := mustURL(t, srv.URL).Port()
	_, err := get(t, NewClient(Policy{}), "https://localhost:"+port+"/")
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "loopback") {
		t.Fatalf("err = %v, want a loopback refusal", err)
	}
	if hits.Load() != 0 {
		t.Fatalf("server was reached")
	}
}

func TestPrivateIPLiteralsRefused(t *testing.T) {
	c := NewClient(Policy{})
	// Port 9 (discard) on addresses that must never be dialled; the
	// refusal comes before any packet is sent, so no test depends on
	// what the network does with them.
	for _, host := range []string{
		"10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
		"100.64.0.1", "0.0.0.0", "[::1]", "[fd00::1]", "[fe80::1]",
		"[::ffff:127.0.0.1]", "[64:ff9b::a00:1]", "224.0.0.1",
	} {
		_, err := get(t, c, "https://"+host+":9/")
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: err = %v, want ErrRefused", host, err)
		}
	}
}

func TestBlockedClassifiesAddresses(t *testing.T) {
	for a, want := range map[string]bool{
		"8.8.8.8": false, "1.1.1.1": false, "2606:4700:4700::1111": false,
		"2002:808:808::1": false, // 6to4 of a public address
		"127.0.0.1":       true, "10.1.2.3": true, "172.31.255.255": true, "192.168.0.1": true,
		"169.254.1.1": true, "100.127.255.254": true, "255.255.255.255": true,
		"::": true, "::1": true, "fc00::1": true, "fe80::1%eth0": true, "ff02::1": true,
		"::ffff:10.0.0.1": true, "2002:7f00:1::1": true, "64:ff9b::7f00:1": true,
	} {
		got := Blocked(netip.MustParseAddr(a)) != ""
		if got != want {
			t.Errorf("Blocked(%s) = %q, want blocked=%v", a, Blocked(netip.MustParseAddr(a)), want)
		}
	}
}

func TestRedirectsNotFollowed(t *testing.T) {
	var followed atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		followed.Add(1)
	}))
	t.Cleanup(target.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)

	resp, err := get(t, NewClient(Policy{AllowPrivate: true}), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ReadLimited(resp, 0)
	if resp.StatusCode != http.StatusTemporaryRedirect || followed.Load() != 0 {
		t.Fatalf("status %d, redirect target reached %d times", resp.StatusCode, followed.Load())
	}
}

func TestReadLimitedStopsAtLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 10000))
	}))
	t.Cleanup(srv.Close)
	resp, err := get(t, NewClient(Policy{AllowPrivate: true}), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ReadLimited(resp, 100)
	if err != nil || len(b) != 100 {
		t.Fatalf("read %d bytes, err %v; want 100", len(b), err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
