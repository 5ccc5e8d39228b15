package logthrottle

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// clock is a hand-moved clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// A peer failing twice a second for three minutes is logged once at first,
// then once a minute with the count held back, then once when it recovers.
func TestRepeatedFailureIsLoggedOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	c := &clock{t: time.Unix(1_000_000, 0)}
	l := New(newLogger(&buf), time.Minute)
	l.SetClock(c.now)
	key := Key{Subject: "n2", Kind: "unreachable"}
	written := 0
	for range 360 { // 3 minutes at 2 per second
		if l.Fail(key, slog.LevelError, "peer n2 unreachable", slog.String("peer", "n2")) {
			written++
		}
		c.advance(500 * time.Millisecond)
	}
	if written != 3 {
		t.Fatalf("%d lines for 3 minutes of failures, want 3 (the first, then one a minute):\n%s", written, buf.String())
	}
	got := lines(&buf)
	if !strings.Contains(got[0], `msg="peer n2 unreachable"`) || strings.Contains(got[0], "times") {
		t.Errorf("first line %q: want the plain message", got[0])
	}
	if !strings.Contains(got[1], "(120 times in the last 1m0s)") || !strings.Contains(got[1], "repeats=120") ||
		!strings.Contains(got[1], "level=ERROR") || !strings.Contains(got[1], "peer=n2") {
		t.Errorf("second line %q: want the count of the minute held back, at the same level, with the attributes", got[1])
	}
	if !l.Failing("n2") {
		t.Fatal("n2 not failing")
	}
	if !l.Recover("n2", "peer n2 reachable again") {
		t.Fatal("Recover found no failure")
	}
	got = lines(&buf)
	last := got[len(got)-1]
	if !strings.Contains(last, "level=INFO") || !strings.Contains(last, "failures=360") ||
		!strings.Contains(last, "failing_for=3m0s") {
		t.Errorf("recovery line %q: want INFO with the failures and how long they lasted", last)
	}
	if l.Failing("n2") || l.Recover("n2", "again") {
		t.Error("a recovered peer still counts as failing")
	}
	// A new stretch starts afresh: its first failure is logged at once.
	if !l.Fail(key, slog.LevelError, "peer n2 unreachable") {
		t.Error("the first failure after a recovery was held back")
	}
}

// Kinds and subjects are throttled apart: a peer that goes from
// unreachable to refusing the key is reported at once, and one down peer
// does not silence another.
func TestKeysAreThrottledApart(t *testing.T) {
	var buf bytes.Buffer
	c := &clock{t: time.Unix(1_000_000, 0)}
	l := New(newLogger(&buf), time.Minute)
	l.SetClock(c.now)
	for _, k := range []Key{{"n2", "unreachable"}, {"n2", "wrong-key"}, {"n3", "unreachable"}} {
		if !l.Fail(k, slog.LevelWarn, k.Subject+" "+k.Kind) {
			t.Errorf("first failure of %v held back", k)
		}
		if l.Fail(k, slog.LevelWarn, k.Subject+" "+k.Kind) {
			t.Errorf("second failure of %v within the interval written", k)
		}
	}
	// Recovering n2 ends both its kinds and leaves n3 alone.
	l.Recover("n2", "n2 back")
	if l.Failing("n2") || !l.Failing("n3") {
		t.Errorf("after n2 recovered: n2 failing %v, n3 failing %v", l.Failing("n2"), l.Failing("n3"))
	}
	if got := lines(&buf); !strings.Contains(got[len(got)-1], "failures=4") {
		t.Errorf("recovery line %q: want both kinds' failures counted", got[len(got)-1])
	}
}

// A failure that happens once and recovers is two lines; a recovery of a
// subject that never failed is none.
func TestSingleFailureAndSpuriousRecovery(t *testing.T) {
	var buf bytes.Buffer
	l := New(newLogger(&buf), 0)
	if l.Recover("n9", "n9 back") {
		t.Error("recovery logged for a subject that never failed")
	}
	l.Fail(Key{"n9", "timeout"}, slog.LevelWarn, "n9 not answering")
	l.Recover("n9", "n9 back")
	if got := lines(&buf); len(got) != 2 {
		t.Errorf("%d lines, want 2:\n%s", len(got), buf.String())
	}
}

// A leader that saw a peer fail and then stopped leading never hears that
// the peer answers again (only a leader heartbeats), so the stretch gets
// no Recover. Minutes later the peer fails for 15 s and recovers, seen by
// this node as leader again: the soak of three nodes logged that as a
// throttled repeat, "answering again failing_for=3m29s failures=7".
func TestStretchWithoutRecoverEndsAfterAQuietInterval(t *testing.T) {
	var buf bytes.Buffer
	c := &clock{t: time.Unix(1_000_000, 0)}
	l := New(newLogger(&buf), time.Minute)
	l.SetClock(c.now)
	key := Key{Subject: "n1", Kind: "not-answering"}
	for range 5 {
		l.Fail(key, slog.LevelWarn, "peer n1 not answering")
		c.advance(250 * time.Millisecond)
	}
	// Failures minutes apart are one stretch, recovered with one line.
	c.advance(2 * time.Minute)
	if !l.Failing("n1") {
		t.Error("a stretch with its last failure 2 minutes ago no longer counts as failing")
	}
	// No failure for 6 minutes, and no recovery.
	c.advance(4 * time.Minute)
	if l.Failing("n1") {
		t.Error("a stretch with no failure for 6 minutes still counts as failing")
	}
	buf.Reset()
	if !l.Fail(key, slog.LevelWarn, "peer n1 not answering") {
		t.Fatal("the first failure of a new stretch was held back")
	}
	if got := lines(&buf); len(got) != 1 || strings.Contains(got[0], "times in the last") || strings.Contains(got[0], "failing_for") {
		t.Errorf("first failure of a new stretch: %q, want the plain message", got)
	}
	for range 5 {
		c.advance(3 * time.Second)
		l.Fail(key, slog.LevelWarn, "peer n1 not answering")
	}
	c.advance(time.Second)
	if !l.Recover("n1", "peer n1 answering again") {
		t.Fatal("no recovery line")
	}
	got := lines(&buf)
	if last := got[len(got)-1]; !strings.Contains(last, "failing_for=16s") || !strings.Contains(last, "failures=6") {
		t.Errorf("recovery line %q: want failing_for=16s and failures=6 (this stretch only)", last)
	}

	// A stretch that is over ends quietly: no "answering again" for a
	// failure five minutes old or more, and its key is not kept.
	buf.Reset()
	l.Fail(Key{Subject: "raft", Kind: "failed to contact quorum"}, slog.LevelWarn, "stepping down")
	c.advance(6 * time.Minute)
	if l.Recover("raft", "raft fine") {
		t.Errorf("recovery logged for a stretch over for six minutes: %q", lines(&buf))
	}
	l.mu.Lock()
	n := len(l.failing)
	l.mu.Unlock()
	if n != 0 {
		t.Errorf("%d stretches kept, want 0", n)
	}
}
