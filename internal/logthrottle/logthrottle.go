// Package logthrottle logs a failure that repeats many times a second (a
// peer that is down, heartbeated every few hundred milliseconds) the way an
// operator can read it: the first occurrence at once, then at most one line
// per interval carrying how many were held back, and one line when the
// failure stops.
package logthrottle

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Key names one kind of repeating failure, such as (peer n2, unreachable).
// Different kinds for the same subject are throttled apart, so that a
// change of kind (down, then back with a wrong key) is logged at once.
type Key struct {
	Subject string
	Kind    string
}

// Logger throttles repeated failures per Key. The zero value is not usable;
// use New. Safe for concurrent use.
type Logger struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	failing map[Key]*run
}

// run is one Key's current stretch of failures.
type run struct {
	first   time.Time // first failure of the stretch
	last    time.Time // latest failure of the stretch
	emitted time.Time // when a line was last written for it
	held    int       // failures since that line, not yet reported
	total   int
}

// quietIntervals is how many intervals without a failure end a stretch
// that no Recover ended: more than one, so that failures a few minutes
// apart (sign-ins while the leader is out of reach) stay one stretch and
// still get their recovery line.
const quietIntervals = 5

// over reports whether r ended without a Recover: nothing failed for
// quietIntervals intervals. Many stretches never see one: a leader's heartbeat
// failures are followed by a "resumed" only if it still leads when the
// peer answers, and some failures (a lease check, a report to a peer) have
// no recovery signal at all. Kept, such a stretch made the next failure of
// its key, hours later, a throttled repeat with a failing_for that counted
// from the first (the soak of three nodes saw "failing_for=3m29s" for a
// peer paused 15 s), or held it back entirely.
func (r *run) over(now time.Time, every time.Duration) bool {
	return now.Sub(r.last) >= quietIntervals*every
}

// New returns a Logger writing to log that, after the first line of a
// stretch, writes at most one line per every (a minute when every is 0).
func New(log *slog.Logger, every time.Duration) *Logger {
	if every <= 0 {
		every = time.Minute
	}
	return &Logger{log: log, every: every, now: time.Now, failing: map[Key]*run{}}
}

// SetClock replaces the clock, for tests of the intervals.
func (l *Logger) SetClock(now func() time.Time) { l.now = now }

// Fail records one failure of key. The first of a stretch is logged at once
// as msg; later ones are counted, and once every has passed since the last
// line, one line reports them: "msg (37 times in the last 1m0s)". It
// reports whether a line was written.
func (l *Logger) Fail(key Key, level slog.Level, msg string, attrs ...slog.Attr) bool {
	now := l.now()
	l.mu.Lock()
	l.dropOver(now)
	r, ok := l.failing[key]
	if !ok {
		r = &run{first: now, last: now, emitted: now, total: 1}
		l.failing[key] = r
		l.mu.Unlock()
		l.log.LogAttrs(context.Background(), level, msg, attrs...)
		return true
	}
	r.total++
	r.held++
	r.last = now
	if now.Sub(r.emitted) < l.every {
		l.mu.Unlock()
		return false
	}
	since, held := now.Sub(r.emitted), r.held
	r.emitted, r.held = now, 0
	l.mu.Unlock()
	attrs = append(attrs, slog.Int("repeats", held), slog.Duration("failing_for", now.Sub(r.first).Round(time.Second)))
	l.log.LogAttrs(context.Background(), level,
		fmt.Sprintf("%s (%d times in the last %s)", msg, held, since.Round(time.Second)), attrs...)
	return true
}

// dropOver forgets the stretches that are over, so that the map holds no
// more than what fails now. l.mu is held.
func (l *Logger) dropOver(now time.Time) {
	for k, r := range l.failing {
		if r.over(now, l.every) {
			delete(l.failing, k)
		}
	}
}

// Recover ends every stretch of failures of subject (whatever their kind)
// and, if there was one, logs at Info that it is over, with how long it
// lasted and how many failures it counted. It reports whether there was.
// A stretch already over (nothing failed for quietIntervals intervals)
// ends quietly.
func (l *Logger) Recover(subject, msg string, attrs ...slog.Attr) bool {
	now := l.now()
	l.mu.Lock()
	l.dropOver(now)
	var first time.Time
	total := 0
	for k, r := range l.failing {
		if k.Subject != subject {
			continue
		}
		if first.IsZero() || r.first.Before(first) {
			first = r.first
		}
		total += r.total
		delete(l.failing, k)
	}
	l.mu.Unlock()
	if total == 0 {
		return false
	}
	attrs = append(attrs, slog.Duration("failing_for", now.Sub(first).Round(time.Millisecond)),
		slog.Int("failures", total))
	l.log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
	return true
}

// Failing reports whether subject has a stretch of failures that has not
// been recovered and is not over.
func (l *Logger) Failing(subject string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, r := range l.failing {
		if k.Subject == subject && !r.over(now, l.every) {
			return true
		}
	}
	return false
}
