package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/herald-notify/herald/httpapi"
)

// traceSeconds bounds the execution trace: it records every scheduling
// event, a few MB a second under load, and `go tool trace` reads a few
// seconds well.
const traceSeconds = 5

// profileLoad takes, with --profile, Go's profiles of every node the bench
// started over a load of d that starts now: the CPU, the allocations, the
// blocking and the lock contention over the load, an execution trace of
// its first seconds, and once it ends the heap. The returned function
// waits for them and writes each to the --profile directory as
// NAME-nodeN.KIND (KIND cpu.pprof, allocs.pprof, block.pprof, mutex.pprof,
// heap.pprof, trace), adding the paths to res.Profiles. Without --profile
// both do nothing.
func (e *env) profileLoad(ctx context.Context, name string, d time.Duration, res *Result) func() error {
	if e.o.Profile == "" || len(e.profiles) == 0 {
		return func() error { return nil }
	}
	secs := int(min(max(math.Ceil(d.Seconds()), 1), httpapi.MaxProfileSeconds))
	during := []struct{ kind, query string }{
		{"cpu.pprof", fmt.Sprintf("profile?seconds=%d", secs)},
		{"trace", fmt.Sprintf("trace?seconds=%d", min(secs, traceSeconds))},
		{"allocs.pprof", fmt.Sprintf("allocs?seconds=%d", secs)},
		{"block.pprof", fmt.Sprintf("block?seconds=%d", secs)},
		{"mutex.pprof", fmt.Sprintf("mutex?seconds=%d", secs)},
	}
	// No client timeout: a profile answers after the seconds it covers.
	hc := &http.Client{}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	get := func(node int, base, kind, query string) {
		err := e.saveProfile(ctx, hc, name, node, base, kind, query, res, &mu)
		mu.Lock()
		if err != nil && first == nil {
			first = err
		}
		mu.Unlock()
	}
	for i, base := range e.profiles {
		for _, p := range during {
			wg.Add(1)
			go func() {
				defer wg.Done()
				get(i, base, p.kind, p.query)
			}()
		}
	}
	return func() error {
		wg.Wait()
		for i, base := range e.profiles {
			get(i, base, "heap.pprof", "heap")
		}
		return first
	}
}

// profileNow takes, with --profile, every node's heap and goroutines as
// they are now (conns: with every stream open), as NAME-nodeN.heap.pprof
// and NAME-nodeN.goroutine.pprof.
func (e *env) profileNow(ctx context.Context, name string, res *Result) error {
	if e.o.Profile == "" {
		return nil
	}
	hc := &http.Client{}
	var mu sync.Mutex
	for i, base := range e.profiles {
		for _, kind := range []string{"heap", "goroutine"} {
			if err := e.saveProfile(ctx, hc, name, i, base, kind+".pprof", kind, res, &mu); err != nil {
				return err
			}
		}
	}
	return nil
}

// saveProfile writes what node's base+query answers to the --profile
// directory as NAME-nodeN.KIND and adds the path to res.Profiles under mu.
func (e *env) saveProfile(ctx context.Context, hc *http.Client, name string, node int, base, kind, query string, res *Result, mu *sync.Mutex) error {
	path := filepath.Join(e.o.Profile, fmt.Sprintf("%s-node%d.%s", name, node+1, kind))
	if err := fetchProfile(ctx, hc, base+query, path); err != nil {
		return fmt.Errorf("--profile: node %d's %s: %w", node+1, kind, err)
	}
	mu.Lock()
	res.Profiles = append(res.Profiles, path)
	mu.Unlock()
	return nil
}

// fetchProfile writes what url answers to path.
func fetchProfile(ctx context.Context, hc *http.Client, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
