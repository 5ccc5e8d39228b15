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
	emitted time.Time // when a line was last written for it
	held    int       // failures since that line, not yet reported
	total   int
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
	r, ok := l.failing[key]
	if !ok {
		r = &run{first: now, emitted: now, total: 1}
		l.failing[key] = r
		l.mu.Unlock()
		l.log.LogAttrs(context.Background(), level, msg, attrs...)
		return true
	}
	r.total++
	r.held++
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

// Recover ends every stretch of failures of subject (whatever their kind)
// and, if there was one, logs at Info that it is over, with how long it
// lasted and how many failures it counted. It reports whether there was.
func (l *Logger) Recover(subject, msg string, attrs ...slog.Attr) bool {
	now := l.now()
	l.mu.Lock()
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
// been recovered.
func (l *Logger) Failing(subject string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.failing {
		if k.Subject == subject {
			return true
		}
	}
	return false
}
