package cluster

import (
	"context"
	"testing"
	"time"
)

// The cluster's rules level rises to what every member knows, and waits for
// the member that knows least: a member of an older version that does not
// say (0) holds it where it is.
func TestRulesRiseToWhatEveryMemberKnows(t *testing.T) {
	for _, c := range []struct {
		have, own int
		peers     []int
		want      int
	}{
		{0, 1, nil, 1},         // a lone node
		{0, 1, []int{1, 1}, 1}, // all upgraded
		{0, 1, []int{1, 0}, 0}, // one not yet
		{0, 2, []int{1, 2}, 1}, // one knows only 1
		{1, 2, []int{1, 2}, 0}, // nothing to raise
		{1, 1, []int{2, 2}, 0}, // the leader knows least
		{2, 1, []int{2}, 0},    // never lowered
	} {
		if got := nextRules(c.have, c.own, c.peers); got != c.want {
			t.Errorf("have %d, own %d, peers %v: %d, want %d", c.have, c.own, c.peers, got, c.want)
		}
	}
}

// A member's Raft address by name and by the address the name resolves to
// are the same place; other ports or hosts are not.
func TestSameEndpointSeesANameAndItsAddress(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:8751", "127.0.0.1:8751", true},
		{"localhost:8751", "127.0.0.1:8751", true},
		{"127.0.0.1:8751", "localhost:8751", true},
		{"localhost:8751", "127.0.0.1:8752", false},
		{"127.0.0.2:8751", "127.0.0.1:8751", false},
		{"no-such-host.invalid:8751", "127.0.0.1:8751", false},
		{"bad", "127.0.0.1:8751", false},
	} {
		if got := sameEndpoint(ctx, c.a, c.b); got != c.want {
			t.Errorf("sameEndpoint(%s, %s) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// A peer that answers the leader's status call but not its heartbeats (a
// node started with an older Herald after the raise, which cannot take the
// leader's connections) says it last heard from a leader 0 ms ago, having
// heard from none since it started: the leader reports its own silence
// instead, and keeps a peer's own figure when that is the longer.
func TestALeaderReportsThePeerSilenceItSees(t *testing.T) {
	now := time.Now()
	if got := silentFor(0, now.Add(-42*time.Second), now); got != 42000 {
		t.Errorf("a peer that says 0 ms, failing for 42 s: %d ms, want 42000", got)
	}
	if got := silentFor(90000, now.Add(-42*time.Second), now); got != 90000 {
		t.Errorf("a peer that says 90 s, failing for 42 s: %d ms, want 90000", got)
	}
}
