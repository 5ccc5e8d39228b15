package main

import (
	"context"
	"net"
	"testing"
)

// TestPeerDialRewritesOnlyListedAddresses: the harness's relay is dialed
// for a listed peer address, any other address is dialed as given, and a
// malformed pair is refused rather than ignored.
func TestPeerDialRewritesOnlyListedAddresses(t *testing.T) {
	relay, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	direct, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	dial, err := parsePeerDial([]string{"127.0.0.1:1=" + relay.Addr().String()})
	if err != nil || dial == nil {
		t.Fatalf("parsePeerDial: dialer %t, %v", dial != nil, err)
	}
	for addr, want := range map[string]net.Listener{"127.0.0.1:1": relay, direct.Addr().String(): direct} {
		c, err := dial(context.Background(), addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		if got := c.RemoteAddr().String(); got != want.Addr().String() {
			t.Errorf("dial %s reached %s, want %s", addr, got, want.Addr())
		}
		c.Close()
	}
	if d, err := parsePeerDial(nil); d != nil || err != nil {
		t.Errorf("no pairs: dialer %t, %v; want none", d != nil, err)
	}
	for _, bad := range []string{"127.0.0.1:1", "nohost=127.0.0.1:2", "127.0.0.1:1=x"} {
		if _, err := parsePeerDial([]string{bad}); err == nil {
			t.Errorf("parsePeerDial(%q) accepted it", bad)
		}
	}
}
