package httpapi

import (
	"testing"
	"time"
)

// The in-flight bound shrinks by a tenth for a slow write, once per
// writeTarget however many slow writes arrive together, never below the
// floor; it grows by one per fast write while it is at least half used,
// never above max-in-flight; and acquire refuses at the bound.
func TestAdmissionAdaptsToWriteLatency(t *testing.T) {
	a := newAdmission(1000)
	now := time.Unix(1000, 0)
	for range 1000 {
		if !a.acquire() {
			t.Fatal("refused below the bound")
		}
	}
	if a.acquire() {
		t.Fatal("admitted past max-in-flight")
	}
	slow := writeTarget + time.Millisecond
	for range 50 { // one slow Raft entry: many writes at once
		a.observe(slow, now)
	}
	if _, l := a.state(); l != 900 {
		t.Fatalf("after one burst of slow writes the bound is %v, want 900", l)
	}
	if a.acquire() {
		t.Fatal("admitted past the lowered bound")
	}
	for i := range 100 {
		a.observe(slow, now.Add(time.Duration(i+1)*writeTarget))
	}
	if _, l := a.state(); l != admitFloor {
		t.Fatalf("after a long stretch of slow writes the bound is %v, want the floor %d", l, admitFloor)
	}
	// Fast writes while the bound is used raise it again, to the ceiling.
	for range 2000 {
		a.observe(time.Millisecond, now)
	}
	if _, l := a.state(); l != 1000 {
		t.Fatalf("after fast writes the bound is %v, want 1000", l)
	}
	// Fast writes on an idle node do not raise a lowered bound: they say
	// nothing about what the node could take.
	for range 1000 {
		a.release()
	}
	a.observe(slow, now.Add(time.Hour))
	a.observe(time.Millisecond, now.Add(time.Hour))
	if _, l := a.state(); l != 900 {
		t.Fatalf("a fast write on an idle node moved the bound to %v", l)
	}
}
