package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/raft"
)

// A leader counts the other voters' answers to requests it sent after the
// read began; it confirms its leadership once enough follow it, and gives up
// as soon as too many cannot.
func TestQuorumFollowsCountsFreshAnswers(t *testing.T) {
	peers := func(n int) []hraft.Server {
		out := make([]hraft.Server, n)
		for i := range out {
			out[i] = hraft.Server{ID: hraft.ServerID(string(rune('a' + i)))}
		}
		return out
	}
	answers := func(m map[hraft.ServerID]bool) func(context.Context, hraft.Server) bool {
		return func(ctx context.Context, srv hraft.Server) bool {
			yes, ok := m[srv.ID]
			if !ok {
				<-ctx.Done() // a node that never answers
				return false
			}
			return yes // false: in a later term, or following another
		}
	}
	for _, tc := range []struct {
		name    string
		need    int
		others  int
		answers map[hraft.ServerID]bool
		want    error
	}{
		{"alone", 0, 0, nil, nil},
		{"three nodes, one follows", 1, 2, map[hraft.ServerID]bool{"a": false, "b": true}, nil},
		{"three nodes, both moved on", 1, 2, map[hraft.ServerID]bool{"a": false, "b": false}, raft.ErrNotLeader},
		{"three nodes, one moved on, one silent", 1, 2, map[hraft.ServerID]bool{"a": false}, context.DeadlineExceeded},
		{"five nodes, three moved on", 2, 4, map[hraft.ServerID]bool{"a": false, "b": false, "c": false}, raft.ErrNotLeader},
		{"five nodes, two follow", 2, 4, map[hraft.ServerID]bool{"a": true, "c": true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err := quorumFollows(ctx, tc.need, peers(tc.others), answers(tc.answers))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("quorumFollows: %v, want %v", err, tc.want)
			}
		})
	}
}
