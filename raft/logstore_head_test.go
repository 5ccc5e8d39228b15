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

// The entries just written are read from memory (each is read back at
// once for replication and a follower's apply), older ones from the WAL,
// and a tail a follower drops for a new leader's entries is not served
// from memory afterwards.
func TestRecentLogEntriesComeFromMemoryUntilDropped(t *testing.T) {
	w, err := openWAL(t.TempDir(), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	g := newWriteGate(w)
	var logs []*hraft.Log
	for i := uint64(1); i <= recentLogs+5; i++ {
		logs = append(logs, &hraft.Log{Index: i, Term: 1, Type: hraft.LogCommand, Data: []byte{byte(i)}})
	}
	if err := g.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	var l hraft.Log
	last := logs[len(logs)-1]
	if err := g.GetLog(last.Index, &l); err != nil || &l.Data[0] != &last.Data[0] {
		t.Errorf("GetLog(%d) = %v, from memory %v; want the entry as written, from memory", last.Index, err, err == nil && &l.Data[0] == &last.Data[0])
	}
	if err := g.GetLog(2, &l); err != nil || l.Index != 2 || l.Data[0] != 2 || &l.Data[0] == &logs[1].Data[0] {
		t.Errorf("GetLog(2) = entry %d %v, %v; want entry 2 read from the WAL", l.Index, l.Data, err)
	}
	// A new leader's log conflicts from index last-1 on: the follower
	// drops its tail and writes one entry of the new term.
	if err := g.DeleteRange(last.Index-1, last.Index); err != nil {
		t.Fatal(err)
	}
	if err := g.StoreLogs([]*hraft.Log{{Index: last.Index - 1, Term: 2, Type: hraft.LogCommand, Data: []byte("new")}}); err != nil {
		t.Fatal(err)
	}
	if err := g.GetLog(last.Index, &l); !errors.Is(err, hraft.ErrLogNotFound) {
		t.Errorf("GetLog(%d) after its drop = term %d %q, %v; want %v", last.Index, l.Term, l.Data, err, hraft.ErrLogNotFound)
	}
	if err := g.GetLog(last.Index-1, &l); err != nil || l.Term != 2 || string(l.Data) != "new" {
		t.Errorf("GetLog(%d) = term %d %q, %v; want the new leader's entry", last.Index-1, l.Term, l.Data, err)
	}
}
