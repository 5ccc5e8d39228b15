package outbound

import (
	"errors"
	"testing"
)

func TestCanonicalHostReadsHostsAsResolversDo(t *testing.T) {
	for in, want := range map[string]string{
		"127.1": "127.0.0.1", "2130706433": "127.0.0.1", "0x7f.0.0.1": "127.0.0.1", "0177.0.0.01": "127.0.0.1",
		"0x7f.1": "127.0.0.1", "10.0x10.1": "10.16.0.1", "0": "0.0.0.0", "0x": "0.0.0.0", "127。0。0。1": "127.0.0.1",
		"LOCALHOST.": "localhost", "ｌｏｃａｌｈｏｓｔ": "localhost", "Push.Example.NET": "push.example.net",
		"::1%lo": "::1", "::FFFF:127.0.0.1": "::ffff:127.0.0.1", "bücher.example": "xn--bcher-kva.example",
		"255.255.255.255": "255.255.255.255", "4294967295": "255.255.255.255",
	} {
		got, _, err := CanonicalHost(in)
		if err != nil || got != want {
			t.Errorf("CanonicalHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"4294967296", "256.1.1.1", "1.256.1.1", "1.2.65536", "1.2.3.4.5", "08", "0x1g.1",
		"a..b", "", ".", "::1::2", "example.123"} {
		if got, _, err := CanonicalHost(in); !errors.Is(err, ErrRefused) {
			t.Errorf("CanonicalHost(%q) = %q, %v; want refused", in, got, err)
		}
	}
}

func TestCheckURLRefusesSchemesAndUserInfo(t *testing.T) {
	for _, raw := range []string{"ftp://example.com/", "http://example.com/", "https://user:pw@example.com/",
		"https:///x", "example.com/x", "https:example.com", "javascript:alert(1)"} {
		if err := CheckURL(raw, Policy{}); !errors.Is(err, ErrRefused) {
			t.Errorf("CheckURL(%q) = %v, want refused", raw, err)
		}
	}
	if err := CheckURL("https://push.example.net/x", Policy{}); err != nil {
		t.Errorf("public https URL refused: %v", err)
	}
}
