package httpapi

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

// A spray of failed sign-ins adds a bounded number of records per minute:
// past maxFailureKeys pairs, new names from an address are counted under
// "*", and past twice that, new addresses too; no attempt goes uncounted.
func TestFailedSignInCountsAreBoundedPerMinute(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 30, 0, time.UTC)
	s := &Server{sec: newSecurityLog(), opts: Options{AuditClock: func() time.Time { return now }}}
	s.sec.armed = true // no flush: this test reads the counts
	try := func(name, addr string) {
		r := httptest.NewRequest("POST", "/oauth2/v2.0/token", nil)
		r.RemoteAddr = addr + ":4000"
		s.signInFailure(r, "user", name)
	}
	for i := range 3 * maxFailureKeys {
		try(fmt.Sprintf("name%d", i), "192.0.2.1")
	}
	for i := range 2 * maxFailureKeys {
		try("victim", fmt.Sprintf("10.0.%d.%d", i/250, i%250))
	}
	total := 0
	for _, n := range s.sec.counts {
		total += n
	}
	if total != 5*maxFailureKeys {
		t.Errorf("%d attempts counted, want %d", total, 5*maxFailureKeys)
	}
	if got, max := len(s.sec.counts), 2*maxFailureKeys+1; got > max {
		t.Errorf("%d keys in one minute, want at most %d", got, max)
	}
	if n := s.sec.counts[countKey{action: actSignInFailure, actorType: "user", name: "*", address: "192.0.2.1", minute: now.Truncate(time.Minute).UnixMilli()}]; n != 3*maxFailureKeys-maxNamesPerAddress {
		t.Errorf("names past the bound from one address: %d under \"*\", want %d", n, 3*maxFailureKeys-maxNamesPerAddress)
	}
	if n := s.sec.counts[countKey{action: actSignInFailure, actorType: "user", name: "*", address: "*", minute: now.Truncate(time.Minute).UnixMilli()}]; n == 0 {
		t.Error("addresses past the bound are not counted under \"*\"")
	}
	// A new minute starts afresh.
	now = now.Add(time.Minute)
	try("someone", "192.0.2.9")
	if n := s.sec.counts[countKey{action: actSignInFailure, actorType: "user", name: "someone", address: "192.0.2.9", minute: now.Truncate(time.Minute).UnixMilli()}]; n != 1 {
		t.Errorf("the next minute's first failure: %d", n)
	}
}

// One address alone spraying names (client_ids cost no hash, so thousands
// a second) filled maxFailureKeys records a minute, about 800 bytes each
// and kept for the audit retention: a gigabyte a day. It gets
// maxNamesPerAddress names a minute, and "*" for the rest, which still
// counts every attempt; others' failures keep their own records.
func TestOneAddressSprayingNamesAddsFewRecords(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 30, 0, time.UTC)
	s := &Server{sec: newSecurityLog(), opts: Options{AuditClock: func() time.Time { return now }}}
	s.sec.armed = true // no flush: this test reads the counts
	try := func(actor, name, addr string) {
		r := httptest.NewRequest("POST", "/oauth2/v2.0/token", nil)
		r.RemoteAddr = addr + ":4000"
		s.signInFailure(r, actor, name)
	}
	const sprayed = 5000
	for i := range sprayed {
		try("application", fmt.Sprintf("client-%d", i), "192.0.2.1")
	}
	try("user", "alice", "198.51.100.7")
	if got, max := len(s.sec.counts), maxNamesPerAddress+2; got > max {
		t.Errorf("%d records from one address's spray and one other failure, want at most %d", got, max)
	}
	minute := now.Truncate(time.Minute).UnixMilli()
	if n := s.sec.counts[countKey{action: actSignInFailure, actorType: "application", name: "*", address: "192.0.2.1", minute: minute}]; n != sprayed-maxNamesPerAddress {
		t.Errorf("%d of the spray counted under \"*\", want %d", n, sprayed-maxNamesPerAddress)
	}
	if n := s.sec.counts[countKey{action: actSignInFailure, actorType: "user", name: "alice", address: "198.51.100.7", minute: minute}]; n != 1 {
		t.Errorf("another address's failure: %d under its own name, want 1", n)
	}
}

// A node remembers when it last wrote each session's use, so that a
// session in use costs one write per sessionTouchEvery. Sign-ins of
// sessions that are then used only briefly (a script, a test run, a
// client that signs in for every job) each left an entry for good: the
// map grew with the node's history of sign-ins. Once the churn ends it
// holds no more than the sessions seen within the last two intervals.
func TestTouchedSessionsAreForgotten(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	s := &Server{sec: newSecurityLog(), opts: Options{TokenClock: func() time.Time { return now }}}
	const signIns = 20_000
	for i := range signIns {
		s.sessionStarted(fmt.Sprintf("session-%d", i)) // a sign-in...
		s.sec.mu.Lock()                                // ...and a use within the interval (touchSession's check)
		_, fresh := s.sec.touched[fmt.Sprintf("session-%d", i)]
		held := len(s.sec.touched)
		s.sec.mu.Unlock()
		if !fresh {
			t.Fatalf("session %d not remembered right after its sign-in", i)
		}
		// At most the sessions of the last two intervals: 3,000 here.
		if max := int(2*sessionTouchEvery/(200*time.Millisecond)) + 1; held > max {
			t.Fatalf("%d sessions remembered during the churn, want at most %d", held, max)
		}
		now = now.Add(200 * time.Millisecond) // 20,000 sign-ins over 67 minutes
	}
	// The churn is over; one more sign-in half an hour later.
	now = now.Add(30 * time.Minute)
	s.sessionStarted("late")
	s.sec.mu.Lock()
	n := len(s.sec.touched)
	s.sec.mu.Unlock()
	if n > 1 {
		t.Errorf("%d sessions remembered 30 minutes after %d sign-ins ended, want only the last one", n, signIns)
	}
}
