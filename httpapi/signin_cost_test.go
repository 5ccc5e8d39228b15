package httpapi_test

// Sign-in costs an argon2id hash of 19 MiB even for a name that does not
// exist. These tests flood the token endpoint from many loopback addresses
// (the whole of 127.0.0.0/8 reaches the node, so each flooder is a distinct
// client as the server sees it) and check that memory, liveness and real
// users' sign-ins hold.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/node"
)

// argonMiB is the memory of one password hash (credential.argonMemory).
const argonMiB = 19

// clientFrom is an HTTP client whose connections leave from the loopback
// address ip.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

type rawResp struct {
	status int
	header http.Header
	body   string
}

// signInFrom posts a password grant from c; safe to call off the test's
// goroutine.
func signInFrom(c *http.Client, base, user, pw string) (rawResp, error) {
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pw}}
	res, err := c.Post(base+"/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		return rawResp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return rawResp{res.StatusCode, res.Header, string(b)}, err
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestSignInFloodOfUnknownNamesKeepsMemoryBounded sends 128 concurrent
// password sign-ins for distinct unknown names from 128 addresses. Unbounded,
// that is 128 × 19 MiB ≈ 2.4 GiB of hashes at once. With the pool at most
// NumCPU hashes run; the rest queue (2 × NumCPU) or get 503 at once.
//
// The bound on the Go heap in use: the live heap is at most the baseline B
// plus NumCPU running hashes; the collector lets the heap grow to twice the
// live heap of its last cycle before collecting, and one more hash per
// worker may be allocated while it marks. So 2 × (B + (NumCPU + 1) × 19 MiB)
// plus 48 MiB for the 128 connections, their buffers and the collector
// finishing a cycle late under load (a 16-worker pool peaks near 500 MiB).
func TestSignInFloodOfUnknownNamesKeepsMemoryBounded(t *testing.T) {
	n := start(t, nil)
	alice := n.newUser(t, "alice@example.com")

	runtime.GC()
	base := heapInuse()
	workers := uint64(runtime.NumCPU())
	bound := 2*(base+(workers+1)*argonMiB<<20) + 48<<20

	var peak atomic.Uint64
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // sample the heap throughout
		defer bg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if h := heapInuse(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var healthOK, healthBad atomic.Int32
	bg.Add(1)
	go func() { // the node must keep answering its health check
		defer bg.Done()
		c := &http.Client{Timeout: 10 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			res, err := c.Get(n.URL + "/healthz")
			if err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			if err != nil || res.StatusCode != http.StatusOK {
				healthBad.Add(1)
				t.Errorf("/healthz during the flood: %v %v", err, res)
			} else {
				healthOK.Add(1)
			}
		}
	}()

	const flood = 128
	go1 := make(chan struct{})
	results := make([]rawResp, flood)
	errs := make([]error, flood)
	var fw sync.WaitGroup
	for i := range flood {
		fw.Add(1)
		go func() {
			defer fw.Done()
			c := clientFrom(fmt.Sprintf("127.0.1.%d", i+1))
			defer c.CloseIdleConnections()
			<-go1
			results[i], errs[i] = signInFrom(c, n.URL, fmt.Sprintf("ghost-%d@example.com", i), "a guess")
		}()
	}
	// The real user signs in while the flood runs, retrying on 503 after
	// the Retry-After it was given, as a well-made client does: each
	// attempt counts against the account and address pair, so a client
	// that ignored Retry-After would rightly meet 429.
	var aliceStatus int
	var aliceErr error
	aliceDone := make(chan struct{})
	go func() {
		defer close(aliceDone)
		<-go1
		c := clientFrom("127.0.0.1")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			r, err := signInFrom(c, n.URL, alice.UPN, alice.Password)
			aliceStatus, aliceErr = r.status, err
			if err != nil || r.status != http.StatusServiceUnavailable {
				return
			}
			wait := time.Second
			if s, err := strconv.Atoi(r.header.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}()
	close(go1)
	fw.Wait()
	<-aliceDone
	close(stop)
	bg.Wait()

	counts := map[int]int{}
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("flood request %d: %v", i, errs[i])
		}
		counts[r.status]++
		switch r.status {
		case http.StatusBadRequest:
			if !strings.Contains(r.body, `"invalid_grant"`) {
				t.Errorf("flood request %d: 400 %s, want invalid_grant", i, r.body)
			}
		case http.StatusServiceUnavailable:
			if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
				t.Errorf("flood request %d: 503 with Retry-After %q", i, r.header.Get("Retry-After"))
			}
			if !strings.Contains(r.body, `"temporarily_unavailable"`) {
				t.Errorf("flood request %d: 503 %s, want temporarily_unavailable", i, r.body)
			}
		default:
			t.Errorf("flood request %d: status %d %s", i, r.status, r.body)
		}
	}
	rss := "?"
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmHWM:") {
				rss = strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
			}
		}
	}
	t.Logf("flood: %v; heap in use %d MiB before, peak %d MiB, bound %d MiB; peak RSS %s; /healthz answered %d times",
		counts, base>>20, peak.Load()>>20, bound>>20, rss, healthOK.Load())
	// With the pool far smaller than the flood, some must have been turned
	// away at once rather than queued without bound.
	if 3*runtime.NumCPU() < flood/2 && counts[http.StatusServiceUnavailable] == 0 {
		t.Errorf("no sign-in of %d was refused with 503: the hash pool did not bound the queue", flood)
	}
	if p := peak.Load(); p > bound {
		t.Errorf("heap in use peaked at %d MiB, over the bound of %d MiB", p>>20, bound>>20)
	}
	if healthOK.Load() == 0 || healthBad.Load() > 0 {
		t.Errorf("/healthz: %d answers, %d failures during the flood", healthOK.Load(), healthBad.Load())
	}
	if aliceErr != nil || aliceStatus != http.StatusOK {
		t.Errorf("the real user's sign-in during the flood: %d %v", aliceStatus, aliceErr)
	}
}

// TestSignInThrottledPerAddressAndPerAccount: an address that sprays names
// is refused with 429, and so is an address guessing at one account; but
// the account's owner still signs in from another address.
func TestSignInThrottledPerAddressAndPerAccount(t *testing.T) {
	// The throttle's clock stands still: on a loaded machine the guesses
	// below, each an argon2id hash, came slower than the buckets refill
	// (80 in 146 s), and so were never refused.
	stopped := time.Now()
	n := start(t, func(c *node.Config) { c.SignInClock = func() time.Time { return stopped } })
	alice := n.newUser(t, "alice@example.com")

	// untilLimited guesses from one address, four at a time (so the test
	// takes little time even where hashing is slow), until a 429 comes.
	untilLimited := func(from string, name func(i int) string) rawResp {
		t.Helper()
		c := clientFrom(from)
		defer c.CloseIdleConnections()
		var seq atomic.Int32
		var mu sync.Mutex
		var limited *rawResp
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(seq.Add(1))
					mu.Lock()
					done := limited != nil
					mu.Unlock()
					if done || i > 80 {
						return
					}
					r, err := signInFrom(c, n.URL, name(i), "a wrong guess")
					if err != nil {
						t.Error(err)
						return
					}
					switch r.status {
					case http.StatusTooManyRequests:
						mu.Lock()
						limited = &r
						mu.Unlock()
						return
					case http.StatusBadRequest, http.StatusServiceUnavailable:
					default:
						t.Errorf("guess %d from %s: %d %s", i, from, r.status, r.body)
						return
					}
				}
			}()
		}
		wg.Wait()
		if limited == nil {
			t.Fatalf("80 wrong sign-ins from %s were never refused with 429", from)
		}
		return *limited
	}
	wantLimited := func(r rawResp) {
		t.Helper()
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("429 with Retry-After %q", r.header.Get("Retry-After"))
		}
		if !strings.Contains(r.body, `"temporarily_unavailable"`) {
			t.Errorf("429 body %s", r.body)
		}
	}

	// A sprayer of distinct names is slowed, whatever name it tries next,
	// alice's right password included.
	wantLimited(untilLimited("127.0.2.1", func(i int) string { return fmt.Sprintf("nobody-%d@example.com", i) }))
	r, err := signInFrom(clientFrom("127.0.2.1"), n.URL, alice.UPN, alice.Password)
	if err != nil || r.status != http.StatusTooManyRequests {
		t.Fatalf("alice's name from the spraying address: %d %v, want 429", r.status, err)
	}

	// A guesser at alice's account from one address is refused too.
	wantLimited(untilLimited("127.0.2.2", func(int) string { return alice.UPN }))

	// Alice, from her own address, is not locked out by either.
	r, err = signInFrom(clientFrom("127.0.0.1"), n.URL, alice.UPN, alice.Password)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("alice from another address while under attack: %d %v %s", r.status, err, r.body)
	}
}

// An application's id is no secret: wrong secrets sent from one address
// exhaust that address's attempts, not the application's own from another.
func TestGuessingAnAppsSecretDoesNotLockTheAppOut(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	a := n.newApp(t, "tasks.contoso.com")
	grant := func(c *http.Client, secret string) rawResp {
		t.Helper()
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {a.AppID}, "client_secret": {secret}}
		res, err := c.Post(n.URL+"/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return rawResp{res.StatusCode, res.Header, string(b)}
	}
	guesser, app := clientFrom("127.0.3.1"), clientFrom("127.0.3.2")
	limited := false
	for i := 0; i < 60 && !limited; i++ {
		switch r := grant(guesser, "hs_wrong"); r.status {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			limited = true
		default:
			t.Fatalf("guess %d: %d %s", i, r.status, r.body)
		}
	}
	if !limited {
		t.Fatal("60 wrong secrets from one address were never refused with 429")
	}
	if r := grant(app, a.Secret); r.status != http.StatusOK {
		t.Fatalf("the application from its own address while another guesses: %d %s, want 200", r.status, r.body)
	}
}
