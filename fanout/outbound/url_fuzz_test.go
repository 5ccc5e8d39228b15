package outbound

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// FuzzCheckURL holds CheckURL to its promise: whatever the spelling, an
// accepted URL is https and its host is neither a refused address nor a
// local name, read by each of the readings a resolver might apply.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://push.example.net/x", "https://127.1/", "https://0x7f.0.0.1/",
		"https://[::1%25lo]/", "https://ｌｏｃａｌｈｏｓｔ/", "https://127。0。0。1/", "https://LOCALHOST./",
		"https://[64:ff9b::7f00:1]/", "https://[2002:a00:1::]/", "https://100.64.0.1/", "https://2130706433/",
		"https://%31%32%37.0.0.1/", "https://xn--bcher-kva.example/", "http://a/", "https://user@h/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := CheckURL(raw, Policy{})
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("CheckURL(%q): %v does not match ErrRefused", raw, err)
			}
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil || u.Scheme != "https" || u.User != nil {
			t.Fatalf("CheckURL(%q) accepted a URL that is not plain https", raw)
		}
		host, addr, cerr := CanonicalHost(u.Hostname())
		if cerr != nil {
			t.Fatalf("CheckURL(%q) accepted a host CanonicalHost refuses: %v", raw, cerr)
		}
		if addr.IsValid() && Blocked(addr) != "" {
			t.Fatalf("CheckURL(%q) accepted %s", raw, addr)
		}
		if isLocalName(host) {
			t.Fatalf("CheckURL(%q) accepted local name %q", raw, host)
		}
		// The plainest reading, netip's, must agree.
		plain := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		if a, err := netip.ParseAddr(plain); err == nil && Blocked(a) != "" {
			t.Fatalf("CheckURL(%q) accepted %s", raw, a)
		}
	})
}
