package httpapi_test

import (
	"fmt"
	"net/http"
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
