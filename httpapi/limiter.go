package httpapi

import (
	"math"
	"sync"
	"time"
)

// limiter holds one token bucket per key (an application or a user).
type limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
	rate   float64
	burst  float64
}

func newLimiter() *limiter { return &limiter{buckets: map[string]*bucket{}} }

// allow takes one token from key's bucket of the given rate and burst. When
// the bucket is empty it returns how long until a token is there.
func (l *limiter) allow(key string, rate float64, burst int, now time.Time) (bool, time.Duration) {
	if rate <= 0 {
		return true, 0
	}
	if burst < 1 {
		burst = 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > time.Minute {
		l.dropFull(now)
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: float64(burst), last: now, rate: rate, burst: float64(burst)}
		l.buckets[key] = b
	}
	b.tokens = math.Min(float64(burst), b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// dropFull forgets buckets that have refilled, so idle keys cost nothing.
func (l *limiter) dropFull(now time.Time) {
	l.sweep = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*b.rate >= b.burst {
			delete(l.buckets, k)
		}
	}
}
