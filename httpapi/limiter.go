package httpapi

import (
	"crypto/sha256"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// limiter holds one token bucket per key (an application or a user).
type limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	sweep   time.Time
	// admitted counts, per key, the requests allowShared let through since
	// the cluster last took the counts (takeAdmitted); nil while there is
	// no other node to tell, so a lone node counts nothing.
	admitted map[string]int
}

type bucket struct {
	tokens float64
	last   time.Time
	rate   float64
	burst  float64
}

func newLimiter() *limiter { return &limiter{buckets: map[string]*bucket{}} }

// maxKeyBytes bounds what a bucket's key keeps. Keys hold names a client
// sends before it is known (a client_id, a user name, each up to the 64 KiB
// of a form), and a bucket lives until it refills and the next sweep, a
// minute or two: kept whole, requests with distinct long names held 60 KiB
// each. A longer key is kept as its SHA-256.
const maxKeyBytes = 256

// sweepAbove is how many buckets make the sweep run every second rather
// than every minute: a key a request names before it is known (a
// client_id) costs a bucket, and requests with distinct ones, at the ten
// thousand a second a node answers them, held hundreds of megabytes until
// the minute's sweep. Most of those buckets refill within a second.
const sweepAbove = 4096

func bucketKey(key string) string {
	if len(key) <= maxKeyBytes {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "\x00sha256:" + string(sum[:])
}

// allow takes one token from key's bucket of the given rate and burst. When
// the bucket is empty it returns how long until a token is there.
func (l *limiter) allow(key string, rate float64, burst int, now time.Time) (bool, time.Duration) {
	return l.take(key, rate, burst, now, false)
}

// allowShared is allow for the limits the cluster shares (an application's
// and a user's requests): while other nodes are told (takeAdmitted), what
// it lets through is counted for them.
func (l *limiter) allowShared(key string, rate float64, burst int, now time.Time) (bool, time.Duration) {
	return l.take(key, rate, burst, now, true)
}

func (l *limiter) take(key string, rate float64, burst int, now time.Time, shared bool) (bool, time.Duration) {
	if rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(key, rate, burst, now)
	if b.tokens >= 1 {
		b.tokens--
		if shared && l.admitted != nil {
			l.admitted[key]++
		}
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// takeAdmitted returns what allowShared let through since the last call,
// per key, and counts from now on while count is true (other nodes are to
// be told). Without counting it returns nil.
func (l *limiter) takeAdmitted(count bool) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.admitted
	l.admitted = nil
	if count {
		l.admitted = map[string]int{}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// chargeN takes n tokens from key's bucket for requests another node let
// through, even when it is empty, down to a debt of debt bursts.
func (l *limiter) chargeN(key string, rate float64, burst, n, debt int, now time.Time) {
	if rate <= 0 || n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(key, rate, burst, now)
	b.tokens = math.Max(b.tokens-float64(n), -float64(max(debt, 1))*b.burst)
}

// refill returns key's bucket, made full if new, with the tokens earned
// since it was last used. l.mu is held.
func (l *limiter) refill(key string, rate float64, burst int, now time.Time) *bucket {
	burst = max(burst, 1)
	if since := now.Sub(l.sweep); since > time.Minute || len(l.buckets) > sweepAbove && since > time.Second {
		l.dropFull(now)
	}
	key = bucketKey(key)
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: float64(burst), last: now, rate: rate, burst: float64(burst)}
		l.buckets[key] = b
	}
	b.tokens = math.Min(float64(burst), b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	return b
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

// waitFor is how long until key's bucket has a token, without taking one:
// for limits charged only after the outcome is known (a failed sign-in).
func (l *limiter) waitFor(key string, rate float64, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[bucketKey(key)]
	if b == nil || rate <= 0 {
		return 0
	}
	tokens := math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / rate * float64(time.Second))
}

// charge takes one token from key's bucket even when it is empty, down to
// a debt of one burst: attempts that were already under way when the limit
// was reached still count against the key.
func (l *limiter) charge(key string, rate float64, burst int, now time.Time) {
	if rate <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(key, rate, burst, now)
	b.tokens = math.Max(b.tokens-1, -b.burst)
}

// clientAddr is the key of the request's sender for sign-in throttling: the
// peer's IP address, or its /64 for IPv6, since one host commonly holds a
// whole /64. Forwarding headers are not trusted: any client can set them.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}
