package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const shutdownTimeout = 5 * time.Second

// TestAcknowledgedWritesSurviveKill sends notifications from 8 concurrent
// writers, kills the server with SIGKILL once 200 were acknowledged (more
// may be in flight), restarts it on the same data directory, and checks
// that every acknowledged notification is in the feed exactly once and that
// no appNotificationId was stored twice. Then it checks that SIGTERM shuts
// the restarted server down cleanly, ending an open live stream.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	t.Parallel()
	const (
		writers     = 8
		ackTarget   = 200
		maxAttempts = 1000 // a bound, in case the kill comes late
	)
	srv := startServer(t, serverOpts{DataDir: t.TempDir(),
		Env:  []string{"HERALD_ADMIN_PASSWORD=" + adminPassword},
		Args: []string{"--shutdown-timeout", shutdownTimeout.String()}})
	a := newAPI(srv)
	f := newFixture(t, a, adminPassword, "crash.example.com", "carol")

	var (
		next       atomic.Int64
		mu         sync.Mutex
		acked      = map[string]string{} // appNotificationId → id, for every 201
		unexpected []string
		enough     = make(chan struct{})
		enoughOnce sync.Once
		killed     atomic.Bool
		wg         sync.WaitGroup
	)
	wa := &api{base: a.base, hc: &http.Client{Timeout: 10 * time.Second}}
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > maxAttempts {
					return
				}
				aid := fmt.Sprintf("crash-%04d", i)
				r, err := wa.do("POST", "/v1.0/me/notifications", f.appToken,
					map[string]any{"appNotificationId": aid, "payload": map[string]any{"rawContent": aid}},
					map[string]string{"X-UNS-ID": f.unsid})
				if err != nil {
					if killed.Load() {
						return // the server is gone: the outcome is unknown
					}
					mu.Lock()
					unexpected = append(unexpected, fmt.Sprintf("%s: %v", aid, err))
					mu.Unlock()
					return
				}
				var n notification
				switch {
				case r.Status == http.StatusCreated && json.Unmarshal(r.Body, &n) == nil && n.ID != "":
					mu.Lock()
					acked[aid] = n.ID
					if len(acked) >= ackTarget {
						enoughOnce.Do(func() { close(enough) })
					}
					mu.Unlock()
				case r.Status == http.StatusTooManyRequests || r.Status == http.StatusServiceUnavailable:
					// Not acknowledged; the server may say so under load.
				default:
					mu.Lock()
					unexpected = append(unexpected, fmt.Sprintf("%s: status %d: %s", aid, r.Status, r.Body))
					mu.Unlock()
					return
				}
			}
		}()
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()
	select {
	case <-enough:
	case <-allDone:
	case <-time.After(30 * time.Second):
	}
	killed.Store(true)
	srv.kill(t)
	select {
	case <-allDone:
	case <-time.After(15 * time.Second):
		t.Fatal("writers did not stop after the server was killed")
	}
	// Every writer has returned: acked and unexpected are no longer shared.
	for _, u := range unexpected {
		t.Errorf("unexpected answer to a write before the kill: %s", u)
	}
	if len(acked) < ackTarget {
		t.Fatalf("only %d writes were acknowledged before the kill, want %d", len(acked), ackTarget)
	}
	t.Logf("%d writes acknowledged of %d attempted before SIGKILL", len(acked), min(next.Load(), maxAttempts))

	srv = srv.restart(t)
	a = newAPI(srv)
	// The user's token was stored through Raft too, so it survives.
	feed := a.listFeed(t, f.userToken, "$top=37&status=any")
	t.Logf("after the restart the feed holds %d notifications", len(feed))
	byID := map[string]int{}
	byAID := map[string]int{}
	for _, n := range feed {
		byID[n.ID]++
		byAID[n.AppNotificationID]++
	}
	for id, c := range byID {
		if c > 1 {
			t.Errorf("notification %s listed %d times", id, c)
		}
	}
	for aid, c := range byAID {
		if c > 1 {
			t.Errorf("appNotificationId %s stored %d times", aid, c)
		}
	}
	missing := 0
	for aid, id := range acked {
		if byID[id] != 1 {
			missing++
			if missing <= 10 {
				t.Errorf("acknowledged notification %s (%s) is listed %d times after the restart, want 1", id, aid, byID[id])
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged notifications lost in the crash", missing, len(acked))
	}
	if len(feed) > int(min(next.Load(), maxAttempts)) {
		t.Errorf("feed holds %d notifications, more than the %d attempted", len(feed), min(next.Load(), maxAttempts))
	}

	t.Run("GracefulShutdown", func(t *testing.T) {
		testGracefulShutdown(t, srv, f.userToken)
	})
}

// testGracefulShutdown sends SIGTERM to a server with an open live stream:
// the process exits 0 within its shutdown timeout and the stream ends.
func testGracefulShutdown(t *testing.T, srv *server, userToken string) {
	sse := openSSE(t, srv.URL, userToken, "")
	code, took := srv.terminate(t, shutdownTimeout+5*time.Second)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if took > shutdownTimeout {
		t.Errorf("shutdown took %s, more than the shutdown timeout %s", took, shutdownTimeout)
	}
	deadline := time.After(eventTimeout)
	for {
		select {
		case ev, ok := <-sse.C:
			if !ok {
				return // the stream ended
			}
			t.Logf("event at shutdown: %s %s", ev.Type, ev.Data)
		case <-deadline:
			t.Fatalf("the SSE stream was still open %s after the server exited", eventTimeout)
		}
	}
}
