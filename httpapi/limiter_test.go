package httpapi

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestLimiterChargeOnlyFailures: waitFor takes nothing, charge runs into a
// debt of at most one burst, and the bucket refills at its rate.
func TestLimiterChargeOnlyFailures(t *testing.T) {
	l := newLimiter()
	now := time.Unix(1000, 0)
	for range 5 {
		if w := l.waitFor("k", 1, now); w != 0 {
			t.Fatalf("waitFor on an unspent key: %v", w)
		}
	}
	for range 3 {
		l.charge("k", 1, 3, now)
	}
	if w := l.waitFor("k", 1, now); w != time.Second {
		t.Fatalf("after a burst of failures wait %v, want 1s", w)
	}
	for range 10 { // attempts already under way run into debt, bounded
		l.charge("k", 1, 3, now)
	}
	if w := l.waitFor("k", 1, now); w != 4*time.Second {
		t.Fatalf("in full debt wait %v, want 4s", w)
	}
	if w := l.waitFor("k", 1, now.Add(4*time.Second)); w != 0 {
		t.Fatalf("after the debt is repaid wait %v", w)
	}
}

func TestClientAddr(t *testing.T) {
	for remote, want := range map[string]string{
		"127.0.1.2:5555":             "127.0.1.2",
		"[::ffff:10.0.0.1]:80":       "10.0.0.1",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"[fe80::1%eth0]:1":           "fe80::/64",
		"not an address":             "not an address",
	} {
		if got := clientAddr(&http.Request{RemoteAddr: remote}); got != want {
			t.Errorf("clientAddr(%q) = %q, want %q", remote, got, want)
		}
	}
}

// Requests that each name a new key (a client_id no one has) add a bucket
// apiece; swept only once a minute, ten thousand a second held 600,000 of
// them. Past sweepAbove buckets the sweep runs every second.
func TestLimiterBucketsOfNewKeysAreSweptSoon(t *testing.T) {
	l := newLimiter()
	now := time.Unix(1000, 0)
	most := 0
	for i := range 100_000 { // ten seconds at 10,000 a second
		now = now.Add(100 * time.Microsecond)
		if ok, _ := l.allow(fmt.Sprintf("login:app:%d\x00192.0.2.1", i), 5, 20, now); !ok {
			t.Fatalf("a new key's first request was refused")
		}
		most = max(most, len(l.buckets))
	}
	if bound := sweepAbove + 2*10_000; most > bound {
		t.Errorf("%d buckets held at once, want at most %d", most, bound)
	}
}

// TestLimiterSharedCounts: allowShared counts what it admits only while the
// cluster takes the counts (a lone node counts nothing), other keys are
// never counted, and another node's admissions run a bucket into a debt of
// at most the given number of bursts.
func TestLimiterSharedCounts(t *testing.T) {
	l := newLimiter()
	now := time.Unix(1000, 0)
	l.allowShared("a:app", 10, 3, now)
	if got := l.takeAdmitted(true); got != nil {
		t.Fatalf("counted while alone: %v", got)
	}
	l.allowShared("a:app", 10, 3, now)
	l.allowShared("a:app", 10, 3, now)
	l.allow("login:pair:x", 10, 5, now)
	l.allowShared("a:off", 0, 0, now) // no limit, nothing to share
	if got := l.takeAdmitted(true); len(got) != 1 || got["a:app"] != 2 {
		t.Fatalf("counts %v, want a:app 2", got)
	}
	for range 3 { // the bucket (3) is spent: refused, not counted
		l.allowShared("a:app", 10, 3, now)
	}
	if got := l.takeAdmitted(false); got != nil {
		t.Fatalf("refusals counted: %v", got)
	}
	l.allowShared("a:app", 10, 3, now.Add(time.Second))
	if got := l.takeAdmitted(false); got != nil {
		t.Fatalf("counted after counting stopped: %v", got)
	}

	l.chargeN("u:user", 1, 3, 100, 2, now)
	if w := l.waitFor("u:user", 1, now); w != 7*time.Second {
		t.Fatalf("charged past two bursts: wait %v, want 7s", w)
	}
	if ok, _ := l.allowShared("u:user", 1, 3, now.Add(7*time.Second)); !ok {
		t.Fatal("the debt repaid, a request is still refused")
	}
}
