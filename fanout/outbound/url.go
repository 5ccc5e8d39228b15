package outbound

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// CheckURL says why raw may not be a destination under p, or returns nil.
// It is the registration-time half of the policy: the host is read the way
// resolvers and browsers read it (case, trailing dot, IDNA mapping such as
// fullwidth letters and ideographic full stops, the short and numeric IPv4
// forms of inet_aton, IPv6 zones) before it is judged, so that no spelling
// of a refused address gets through. Names that resolve to a refused
// address can only be caught when dialled, which NewClient's clients do.
func CheckURL(raw string, p Policy) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return &RefusedError{Reason: "not an absolute URL"}
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !p.AllowPrivate {
			return &RefusedError{Reason: "http:// is not allowed; use https://"}
		}
	default:
		return &RefusedError{Reason: fmt.Sprintf("scheme %q is not allowed", u.Scheme)}
	}
	if p.AllowPrivate {
		return nil
	}
	if u.User != nil {
		return &RefusedError{Reason: "a URL with user information is not allowed"}
	}
	host, addr, err := CanonicalHost(u.Hostname())
	if err != nil {
		return err
	}
	if addr.IsValid() {
		if reason := Blocked(addr); reason != "" {
			return &RefusedError{Reason: addr.String() + " is " + reason}
		}
		return nil
	}
	if isLocalName(host) {
		return &RefusedError{Reason: host + " is a loopback name"}
	}
	return nil
}

// CanonicalHost returns host as a resolver would look it up: an IP address
// when any reading of it is one, else the lower-case ASCII name without its
// trailing dot. A host that is neither (a malformed IPv4 form, a name IDNA
// refuses, an empty label) is refused rather than guessed at.
func CanonicalHost(host string) (string, netip.Addr, error) {
	if strings.Contains(host, ":") {
		// Only a bracketed IPv6 literal has a colon in url.Hostname; the
		// zone is dropped, as it names an interface and not an address.
		a, err := netip.ParseAddr(host)
		if err != nil {
			return "", netip.Addr{}, &RefusedError{Reason: fmt.Sprintf("%q is not a valid IPv6 address", host)}
		}
		a = a.WithZone("")
		return a.String(), a, nil
	}
	name, err := idna.Lookup.ToASCII(host)
	if err != nil {
		return "", netip.Addr{}, &RefusedError{Reason: fmt.Sprintf("host %q is not a valid name", host)}
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return "", netip.Addr{}, &RefusedError{Reason: "the host is empty"}
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", netip.Addr{}, &RefusedError{Reason: fmt.Sprintf("host %q is not a valid name", host)}
		}
	}
	// As in the WHATWG URL standard, a host whose last label is a number
	// is an IPv4 address or nothing: resolvers built on inet_aton read
	// "127.1", "2130706433" and "0x7f.0.0.1" as 127.0.0.1.
	if isNumber(labels[len(labels)-1]) {
		a, ok := parseIPv4(labels)
		if !ok {
			return "", netip.Addr{}, &RefusedError{Reason: fmt.Sprintf("host %q is not a valid IPv4 address", host)}
		}
		return a.String(), a, nil
	}
	return name, netip.Addr{}, nil
}

// isNumber reports whether a label reads as a number to inet_aton: decimal,
// 0x-prefixed hexadecimal (even "0x" alone, which is zero) or octal.
func isNumber(l string) bool {
	if h, ok := strings.CutPrefix(l, "0x"); ok {
		for _, c := range h {
			if !strings.ContainsRune("0123456789abcdef", c) {
				return false
			}
		}
		return true
	}
	for _, c := range l {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseIPv4 reads one to four numeric parts the way inet_aton does: the
// last part fills the bytes the others leave.
func parseIPv4(labels []string) (netip.Addr, bool) {
	if len(labels) > 4 {
		return netip.Addr{}, false
	}
	var parts []uint64
	for _, l := range labels {
		if !isNumber(l) {
			return netip.Addr{}, false
		}
		base, digits := 10, l
		switch {
		case strings.HasPrefix(l, "0x"):
			base, digits = 16, l[2:]
		case len(l) > 1 && l[0] == '0':
			base, digits = 8, l[1:]
		}
		if digits == "" {
			parts = append(parts, 0)
			continue
		}
		n, err := strconv.ParseUint(digits, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		parts = append(parts, n)
	}
	last := parts[len(parts)-1]
	lead := parts[:len(parts)-1]
	if last >= 1<<(8*(4-len(lead))) {
		return netip.Addr{}, false
	}
	v := last
	for i, n := range lead {
		if n > 255 {
			return netip.Addr{}, false
		}
		v |= n << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// isLocalName reports names that resolve to this machine without asking
// DNS: localhost and its subdomains (RFC 6761) and the loopback names
// distributions put in /etc/hosts.
func isLocalName(name string) bool {
	switch name {
	case "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback":
		return true
	}
	return strings.HasSuffix(name, ".localhost")
}
