package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progressInterval is how often long work reports how far it got.
var progressInterval = 2 * time.Second

// progress counts the bytes that pass through it and, while the work runs,
// prints "<what>: 12.3 MiB so far" to w every progressInterval, so that a
// backup or restore of gigabytes does not look hung. Work that ends within
// the first interval prints nothing.
type progress struct {
	n    atomic.Int64
	stop chan struct{}
	done sync.WaitGroup
}

func startProgress(w io.Writer, what string) *progress {
	p := &progress{stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				fmt.Fprintf(w, "%s: %s so far\n", what, formatBytes(p.n.Load()))
			}
		}
	}()
	return p
}

// Stop ends the reports and returns the byte count.
func (p *progress) Stop() int64 {
	close(p.stop)
	p.done.Wait()
	return p.n.Load()
}

func (p *progress) Reader(r io.Reader) io.Reader { return progressReader{r, p} }
func (p *progress) Writer(w io.Writer) io.Writer { return progressWriter{w, p} }

type progressReader struct {
	r io.Reader
	p *progress
}

func (r progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.n.Add(int64(n))
	return n, err
}

type progressWriter struct {
	w io.Writer
	p *progress
}

func (w progressWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	w.p.n.Add(int64(n))
	return n, err
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
