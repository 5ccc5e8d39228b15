package cluster

import "testing"

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
