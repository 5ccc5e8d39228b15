// Package outbound makes the HTTP clients that reach destinations chosen by
// users: Web Push endpoints and webhook URLs (API.md §7).
//
// Such a URL is attacker-controlled input, so a client from NewClient refuses
// to reach the server's own network unless the policy allows it. The check is
// made on the address actually dialled, inside the net.Dialer's Control
// function, after name resolution: a host name that resolves to a public
// address when the URL is validated and to 127.0.0.1 when it is dialled (DNS
// rebinding) is still refused. Redirects are never followed, since a public
// endpoint could otherwise point the client at an internal one, and proxies
// from the environment are ignored, since through a proxy the dialled
// address would be the proxy's and the check would see nothing.
package outbound

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Policy says which destinations a client may reach.
type Policy struct {
	// AllowPrivate permits loopback, private, link-local and other
	// non-public addresses, and plain http://, for closed networks and
	// tests (webPush.allowPrivate, webhook.allowPrivate).
	AllowPrivate bool
	// Timeout bounds a whole exchange, from dial to the last byte of the
	// body read. Zero means DefaultTimeout.
	Timeout time.Duration
}

// Defaults of a client. A delivery worker is held for at most Timeout, so
// these are short: a push service or webhook that cannot answer in this time
// is retried later rather than waited for.
const (
	DefaultTimeout        = 30 * time.Second
	dialTimeout           = 10 * time.Second
	tlsHandshakeTimeout   = 10 * time.Second
	responseHeaderTimeout = 15 * time.Second
	idleConnTimeout       = 90 * time.Second
	// Push services are few hosts (FCM, Mozilla, Apple, Microsoft) that
	// receive most of the traffic, so keep more idle connections per host
	// than net/http's default of 2, but bound the pool as a whole.
	maxIdleConns        = 128
	maxIdleConnsPerHost = 32
	// Headers are read before any body limit applies; bound them too.
	maxResponseHeaderBytes = 64 << 10
)

// ErrRefused is wrapped by every error of a request that the policy
// refused: a scheme other than http(s), http without AllowPrivate, or an
// address outside the public internet. Retrying such a request is pointless
// while the policy and the destination stay as they are.
var ErrRefused = errors.New("outbound: destination refused")

// RefusedError says why a destination was refused. It matches ErrRefused
// with errors.Is.
type RefusedError struct {
	// Reason is short and readable, for a delivery record's lastError:
	// "its host's address is a loopback address".
	Reason string
}

func (e *RefusedError) Error() string        { return "destination refused: " + e.Reason }
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// NewClient returns a client for user-chosen destinations under p. Clients
// are safe for concurrent use and hold a connection pool: make one per
// policy and keep it.
func NewClient(p Policy) *http.Client {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	// A client given a longer time limit waits that long for headers
	// too: a receiver that takes 20 s to answer is not slow to start.
	headerTimeout := max(responseHeaderTimeout, p.Timeout)
	dialer := &net.Dialer{
		Timeout:   dialTimeout,
		KeepAlive: 30 * time.Second,
	}
	if !p.AllowPrivate {
		dialer.Control = controlPublicOnly
	}
	tr := &http.Transport{
		// No Proxy: see the package comment.
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		ResponseHeaderTimeout:  headerTimeout,
		ExpectContinueTimeout:  time.Second,
		IdleConnTimeout:        idleConnTimeout,
		MaxIdleConns:           maxIdleConns,
		MaxIdleConnsPerHost:    maxIdleConnsPerHost,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		// A custom DialContext turns HTTP/2 off unless asked for; push
		// services speak it and multiplexing saves connections.
		ForceAttemptHTTP2: true,
	}
	return &http.Client{
		Transport: &schemeCheck{next: tr, allowHTTP: p.AllowPrivate},
		// Never follow: the 3xx response itself is returned, and the
		// caller treats it as the destination's answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       timeout,
	}
}

// schemeCheck refuses requests whose scheme the policy does not allow,
// before anything is dialled.
type schemeCheck struct {
	next      *http.Transport
	allowHTTP bool
}

func (s *schemeCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.URL.Scheme {
	case "https":
	case "http":
		if !s.allowHTTP {
			closeBody(req)
			return nil, &RefusedError{Reason: "http:// is not allowed; use https://"}
		}
	default:
		closeBody(req)
		return nil, &RefusedError{Reason: fmt.Sprintf("scheme %q is not allowed", req.URL.Scheme)}
	}
	return s.next.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool.
func (s *schemeCheck) CloseIdleConnections() { s.next.CloseIdleConnections() }

// closeBody honours the RoundTripper contract: the body is closed even when
// the request is not sent.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// controlPublicOnly runs after resolution, once per address tried, with
// the address about to be dialled.
func controlPublicOnly(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// The dialer always passes a numeric address; anything else is
		// not something we can vouch for.
		return &RefusedError{Reason: fmt.Sprintf("cannot check address %q", address)}
	}
	if reason := Blocked(ap.Addr()); reason != "" {
		// Not the address itself: the reason reaches the user who owns
		// the subscription, to whom what the server's DNS says of an
		// internal name is none of their business.
		return &RefusedError{Reason: "its host's address is " + reason}
	}
	return nil
}

// WithoutResolver returns err with the resolver's address dropped from a
// DNS failure in it ("lookup x.example: no such host"): a delivery's
// lastError is shown to the user who owns the subscription, and the
// server's resolver is not theirs to know. Other errors come back as
// they are.
func WithoutResolver(err error) error {
	var de *net.DNSError
	if !errors.As(err, &de) {
		return err
	}
	c := *de
	c.Server = ""
	return &c
}

var (
	// Ranges not covered by netip.Addr's own predicates.
	blockedPrefixes = []struct {
		prefix netip.Prefix
		what   string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), `a "this network" address`},
		{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT address"},
		{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address"},
		{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address"},
		{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
		{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address"},
		{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address"},
		{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
		{netip.MustParsePrefix("::/96"), "an IPv4-compatible address"},
		{netip.MustParsePrefix("100::/64"), "a discard address"},
		{netip.MustParsePrefix("2001:db8::/32"), "a documentation address"},
		{netip.MustParsePrefix("fec0::/10"), "a site-local address"},
	}
	// IPv6 prefixes that carry an IPv4 address a gateway may forward to,
	// which must then be public itself: NAT64 (RFC 6052, RFC 8215) and
	// 6to4 (RFC 3056).
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour  = netip.MustParsePrefix("2002::/16")
)

// Blocked returns why a is not a public unicast address, or "" when it is.
// It is what a client refuses without Policy.AllowPrivate; registration code
// can use it to reject IP-literal URLs early.
func Blocked(a netip.Addr) string {
	a = a.WithZone("")
	if a.Is4In6() {
		// Go's resolver returns A records as 4-byte addresses; a mapped
		// address comes from an AAAA record or a literal, both of them
		// tricks to hide an IPv4 target.
		return "an IPv4-mapped IPv6 address"
	}
	switch {
	case !a.IsValid():
		return "not a valid address"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsPrivate():
		return "a private address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsUnspecified():
		return "an unspecified address"
	case a.IsMulticast():
		return "a multicast address"
	}
	for _, b := range blockedPrefixes {
		if b.prefix.Contains(a) {
			return b.what
		}
	}
	if nat64Local.Contains(a) {
		return "a local-use NAT64 address"
	}
	if nat64.Contains(a) {
		b := a.As16()
		if inner := netip.AddrFrom4([4]byte(b[12:16])); Blocked(inner) != "" {
			return "a NAT64 address of " + inner.String()
		}
	}
	if sixToFour.Contains(a) {
		b := a.As16()
		if inner := netip.AddrFrom4([4]byte(b[2:6])); Blocked(inner) != "" {
			return "a 6to4 address of " + inner.String()
		}
	}
	return ""
}

// ReadLimited reads at most n bytes of resp's body and closes it. What lies
// beyond n is never read: a destination that answers with an endless body
// costs n bytes and a connection, not memory or time. A body shorter than n
// is read to its end, which lets the connection go back to the pool. An
// error is returned only for a failed read; a body cut at n is not one.
func ReadLimited(resp *http.Response, n int64) ([]byte, error) {
	defer resp.Body.Close()
	if n <= 0 {
		return nil, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, n))
}

// The wrapper must keep http.Client.CloseIdleConnections working.
var _ interface{ CloseIdleConnections() } = (*schemeCheck)(nil)
