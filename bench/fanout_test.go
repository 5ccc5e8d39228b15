package bench

import (
	"context"
	"net"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"
)

// The fan-out ceiling delivers each send to every open stream of its user,
// over SSE and WebSocket, as the latency scenario's client reads a node's;
// a stream that went away takes nothing from the others.
func TestTheFanoutCeilingDeliversToEveryStreamOfTheUser(t *testing.T) {
	for _, transport := range []string{"sse", "ws"} {
		t.Run(transport, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			f := newFanoutServer()
			served := make(chan error, 1)
			go func() { served <- f.serve(ctx, l) }()
			base := "http://" + l.Addr().String()

			tl := newTally(8)
			st := newStreams(transport, 4, base, tl.event)
			defer st.close()
			// Streams 0..2 are user a's, 3 user b's.
			for j, user := range []string{"a", "a", "a", "b"} {
				if err := st.openOne(ctx, j, base, user); err != nil {
					t.Fatalf("open stream %d: %v", j, err)
				}
			}
			fx := &fixture{appToken: "ceiling"}
			hc := newLoadClient(2)
			defer hc.CloseIdleConnections()
			send := func(seq int64, user string, want int) {
				t.Helper()
				body, err := do(ctx, hc, base, fx.sendCall(&benchUser{unsid: user}, seq, time.Now()), http.StatusCreated)
				if err != nil {
					t.Fatalf("send %d: %v", seq, err)
				}
				if s, _, ok := parseMark(body); !ok || s != seq {
					t.Fatalf("send %d answered %q", seq, body)
				}
				tl.expect(seq, want)
			}
			send(0, "a", 3)
			send(1, "b", 1)
			send(2, "nobody", 0)
			waitReceived(t, tl, 4)

			// Close user a's first stream: the server lets it go, and
			// the next send reaches the other two.
			st.mu.Lock()
			first := st.closers[0]
			st.mu.Unlock()
			first()
			a := f.user("a")
			open := func() int {
				a.mu.Lock()
				defer a.mu.Unlock()
				return len(a.streams)
			}
			deadline := time.Now().Add(10 * time.Second)
			for open() != 2 {
				if time.Now().After(deadline) {
					t.Fatalf("the server holds %d streams of user a after one of three closed, want 2", open())
				}
				time.Sleep(5 * time.Millisecond)
			}
			send(3, "a", 2)
			waitReceived(t, tl, 6)
			if _, _, dups := tl.counts(); dups != 0 || tl.unmatched.Load() != 0 {
				t.Fatalf("%d duplicates, %d unmatched events", dups, tl.unmatched.Load())
			}
			if got := tl.got[2].Load(); got != 0 {
				t.Fatalf("a send to a user with no stream was received %d times", got)
			}

			cancel()
			select {
			case err := <-served:
				if err != nil {
					t.Fatalf("ServeFanout: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("ServeFanout did not return once its context ended")
			}
		})
	}
}

// waitReceived waits until the tally has want deliveries and every expected
// one, or fails.
func waitReceived(t *testing.T, tl *tally, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		exp, got, _ := tl.counts()
		if got == want && exp == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d expected, want %d", got, exp, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// procCPU reads a process's CPU time, which grows as it works (Linux).
func TestProcCPUCountsWhatTheProcessSpends(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("procCPU reads /proc")
	}
	before, ok := procCPU(os.Getpid())
	if !ok {
		t.Fatal("no CPU time read for this process")
	}
	// Spin until at least 50 ms more is counted, or fail after 10 s.
	deadline := time.Now().Add(10 * time.Second)
	x := uint64(1)
	for {
		for range 1 << 20 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		now, ok := procCPU(os.Getpid())
		if ok && now-before >= 0.05 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time went from %.2f s to %.2f s over 10 s of spinning (%d)", before, now, x)
		}
	}
	if _, ok := procCPU(1 << 30); ok {
		t.Fatal("a process that does not exist has a CPU time")
	}
}
