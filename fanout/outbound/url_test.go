package outbound

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
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

// The dial-time check stays the last word: a short or numeric spelling that
// a resolver turns into 127.0.0.1 is refused when dialled, and one it cannot
// resolve never connects. Either way no connection reaches the server.
func TestShortAndNumericSpellingsNeverReachLoopbackWhenDialled(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	port := mustURL(t, srv.URL).Port()
	c := NewClient(Policy{})
	for _, h := range []string{"127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.0.0.1.", "LOCALHOST.",
		"[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::1]", "[64:ff9b::7f00:1]"} {
		if _, err := get(t, c, "https://"+h+":"+port+"/"); err == nil {
			t.Errorf("%s: request succeeded", h)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("%d connections reached the server", n)
	}
	// The control: the same server is reachable when the policy allows it,
	// so the count above would have seen a connection.
	get(t, NewClient(Policy{AllowPrivate: true}), "https://127.0.0.1:"+port+"/")
	if conns.Load() == 0 {
		t.Fatal("the control request did not connect")
	}
}
