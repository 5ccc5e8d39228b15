package credential

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPoolBoundsConcurrencyAndRefusesBeyondTheQueue fills a pool of 2
// workers and 3 waiters with blocked jobs: exactly 2 run, 3 wait, the next
// caller gets ErrBusy at once, and once the jobs are released every waiter
// runs and the pool admits work again.
func TestPoolBoundsConcurrencyAndRefusesBeyondTheQueue(t *testing.T) {
	const workers, queue = 2, 3
	p := NewPool(workers, queue)
	release := make(chan struct{})
	var running, peak, done atomic.Int32
	var wg sync.WaitGroup
	for range workers + queue {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Do(context.Background(), func() {
				n := running.Add(1)
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				<-release
				running.Add(-1)
			})
			if err != nil {
				t.Errorf("Do within workers+queue: %v", err)
			}
			done.Add(1)
		}()
	}
	// Wait until every job holds its place: the workers run, the rest queue.
	poll(t, func() bool { return running.Load() == workers && len(p.admit) == workers+queue })
	if err := p.Do(context.Background(), func() { t.Error("a job beyond the queue ran") }); !errors.Is(err, ErrBusy) {
		t.Fatalf("Do with the queue full: %v, want ErrBusy", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	close(release)
	wg.Wait()
	if got := peak.Load(); got != workers {
		t.Fatalf("peak concurrency %d, want %d", got, workers)
	}
	if done.Load() != workers+queue {
		t.Fatalf("%d jobs finished, want %d", done.Load(), workers+queue)
	}
	ok, err := p.Check(context.Background(), HashPassword("pw"), "pw")
	if err != nil || !ok {
		t.Fatalf("Check after release: %v %v", ok, err)
	}
	// A caller whose request has gone does not take a worker; with every
	// worker taken it gets the context's error instead of waiting.
	p2 := NewPool(1, 1)
	hold := make(chan struct{})
	go p2.Do(context.Background(), func() { <-hold })
	poll(t, func() bool { return len(p2.run) == 1 })
	if err := p2.Do(ctx, func() { t.Error("ran after its context ended") }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do with a cancelled context: %v", err)
	}
	close(hold)
}

func TestPoolHashAndCheck(t *testing.T) {
	p := NewPool(1, 0)
	h, err := p.Hash(context.Background(), "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	for pw, want := range map[string]bool{"correct horse": true, "wrong": false} {
		if ok, err := p.Check(context.Background(), h, pw); err != nil || ok != want {
			t.Fatalf("Check(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
}

func poll(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A sign-in of an unknown name checks the decoy on a worker of the pool,
// so it is refused like any other check when the pool is full.
func TestCheckDecoyRunsInThePool(t *testing.T) {
	p := NewPool(1, 0)
	before := Derivations()
	if err := p.CheckDecoy(context.Background(), "guess"); err != nil {
		t.Fatal(err)
	}
	if Derivations() == before {
		t.Fatal("CheckDecoy ran no hash")
	}
	hold, release := make(chan struct{}), make(chan struct{})
	go p.Do(context.Background(), func() { close(hold); <-release })
	<-hold
	defer close(release)
	if err := p.CheckDecoy(context.Background(), "guess"); !errors.Is(err, ErrBusy) {
		t.Fatalf("CheckDecoy on a full pool: %v, want ErrBusy", err)
	}
}
