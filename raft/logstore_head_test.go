package raft

import (
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
)

// A compaction that drops only the head of a segment must take those
// entries away: Raft reads "not found" as "send a snapshot".
func TestLogEntriesBelowTheFirstIndexAreGone(t *testing.T) {
	w, err := openWAL(t.TempDir(), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	g := newWriteGate(w)
	var logs []*hraft.Log
	for i := uint64(1); i <= 7; i++ {
		logs = append(logs, &hraft.Log{Index: i, Term: 2, Type: hraft.LogCommand, Data: []byte("x")})
	}
	if err := g.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := g.DeleteRange(1, 3); err != nil {
		t.Fatal(err)
	}
	var l hraft.Log
	for i := uint64(1); i <= 3; i++ {
		if err := g.GetLog(i, &l); !errors.Is(err, hraft.ErrLogNotFound) {
			t.Errorf("GetLog(%d) after dropping 1-3: %v (entry %d); want %v", i, err, l.Index, hraft.ErrLogNotFound)
		}
	}
	if err := g.GetLog(4, &l); err != nil || l.Index != 4 {
		t.Errorf("GetLog(4) = entry %d, %v; want entry 4", l.Index, err)
	}
}
