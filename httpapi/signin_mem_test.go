package httpapi_test

import (
	"fmt"
	"io"
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
)

// vmRSS is the process's resident memory now, from /proc (0 elsewhere).
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkSignInBurstMemory: 128 clients, each from its own loopback
// address, sign in with the right password at once (issue 11's target: at
// most 300 MiB while they do). The node runs in this process, so the
// figures include the 128 clients, and are a ceiling on the server's own.
// The hash pool runs NumCPU hashes and queues twice that; the rest are
// refused with 503 at once, which the metrics count.
func BenchmarkSignInBurstMemory(b *testing.B) {
	const burst = 128
	e := newStreamEnv(b, nil)
	clients := make([]*http.Client, burst)
	for i := range clients {
		clients[i] = clientFrom(fmt.Sprintf("127.0.3.%d", i+1))
		defer clients[i].CloseIdleConnections()
	}
	var peakRSS, peakHeap, rssBefore, heapBefore uint64
	var ok, busy int
	for range b.N {
		runtime.GC()
		rssBefore, heapBefore = vmRSS(), heapInuse()
		var maxRSS, maxHeap atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() { // sample throughout the burst
			defer close(sampled)
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for {
				if r := vmRSS(); r > maxRSS.Load() {
					maxRSS.Store(r)
				}
				if h := heapInuse(); h > maxHeap.Load() {
					maxHeap.Store(h)
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		statuses := make([]int, burst)
		go1 := make(chan struct{})
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-go1
				r, err := signInFrom(c, e.url, "alice", "alice-password")
				if err != nil {
					b.Error(err)
				}
				statuses[i] = r.status
			}()
		}
		close(go1)
		wg.Wait()
		close(stop)
		<-sampled
		for i, s := range statuses {
			switch s {
			case http.StatusOK:
				ok++
			case http.StatusServiceUnavailable:
				busy++
			default:
				b.Fatalf("sign-in %d: status %d", i, s)
			}
		}
		peakRSS, peakHeap = max(peakRSS, maxRSS.Load()), max(peakHeap, maxHeap.Load())
	}
	if ok == 0 {
		b.Fatal("no sign-in of the burst succeeded")
	}
	n := float64(b.N)
	b.ReportMetric(float64(rssBefore)/(1<<20), "rss-before-MiB")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(float64(heapBefore)/(1<<20), "heap-before-MiB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(ok)/n, "ok/burst")
	b.ReportMetric(float64(busy)/n, "503/burst")
}

// The token endpoint's throttling kept a bucket per client_id (and address)
// for a minute or two, keyed by the client_id as sent: requests with no
// credentials and distinct 60 KiB client_ids held 60 KiB each, 650 MiB
// after eight seconds of them. What a bucket keeps of a name is bounded.
func TestLongClientIDsDoNotPileUpInTheThrottle(t *testing.T) {
	e := newStreamEnv(t, nil)
	c := &http.Client{Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	pad := strings.Repeat("x", 60<<10)
	post := func(i int, form url.Values) {
		resp, err := c.PostForm(e.url+"/oauth2/v2.0/token", form)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("request %d: %d, want 401 or 400", i, resp.StatusCode)
		}
	}
	post(-1, url.Values{"grant_type": {"client_credentials"}, "client_id": {"warm-up"}, "client_secret": {"x"}})
	before := readMem()
	const n = 300
	for i := range n {
		post(i, url.Values{"grant_type": {"client_credentials"}, "client_id": {pad + strconv.Itoa(i)}, "client_secret": {"x"}})
	}
	// A few password sign-ins with long names, within the address's
	// failure burst.
	for i := range 5 {
		post(i, url.Values{"grant_type": {"password"}, "username": {pad + strconv.Itoa(i)}, "password": {"x"}})
	}
	after := readMem()
	if grew := after.heap - before.heap; grew > 6<<20 {
		t.Errorf("the heap grew %.1f MiB over %d requests with 60 KiB names; want under 6 MiB (a name is not kept whole)",
			grew/(1<<20), n)
	}
}
