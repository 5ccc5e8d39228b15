package raft

import (
	"errors"
	"testing"

	hraft "github.com/hashicorp/raft"
)

// hashicorp/raft's pipelined replication can wedge a follower's replication
// for good (and with it the leader's Shutdown) once that follower refuses an
// append; the transport turns it off and replicates one request at a time.
func TestReplicationTakesNoPipeline(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	p, err := s.transport.AppendEntriesPipeline("n2", hraft.ServerAddress(freeAddr(t)))
	if p != nil {
		p.Close()
	}
	if !errors.Is(err, hraft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("AppendEntriesPipeline: %v; want %v", err, hraft.ErrPipelineReplicationNotSupported)
	}
}
