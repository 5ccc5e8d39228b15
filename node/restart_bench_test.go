package node_test

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/httpapi"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// TestRestartTimeWithManyNotifications is a measurement, not part of the
// suite: it runs only with HERALD_RESTART_NOTIFICATIONS set (say 1000000).
// It fills a node with that many small notifications through the
// replicated write path (proposals from 64 writers, group-committed as the
// HTTP handlers' are), stops it gracefully, and times Start until /readyz
// answers 200, three times over, logging the log length each restart
// replays. See BENCHMARKS.md.
func TestRestartTimeWithManyNotifications(t *testing.T) {
	total, _ := strconv.Atoi(os.Getenv("HERALD_RESTART_NOTIFICATIONS"))
	if total <= 0 {
		t.Skip("a measurement: set HERALD_RESTART_NOTIFICATIONS=1000000 to run it")
	}
	const users, writers = 1000, 512
	dir := os.Getenv("HERALD_RESTART_DIR") // a disk of your choice; else a temporary one
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := testnode.Config(t, dir)
	// A restart as an operator's node makes it: the default Raft timers,
	// not the test nodes' short ones (a lone node then stands for
	// election at once, raft/store.go campaignIfAlone).
	cfg.Raft = node.DefaultConfig().Raft
	cfg.ShutdownTimeout = 10 * time.Minute
	cfg.PurgeInterval = time.Hour
	level := slog.LevelInfo
	if os.Getenv("HERALD_RESTART_DEBUG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	start := func() (*node.Node, time.Duration) {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		n, err := node.Start(ctx, cfg, logger)
		if err != nil {
			t.Fatal(err)
		}
		for {
			resp, err := http.Get("http://" + n.Addr() + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return n, time.Since(t0)
				}
			}
			if time.Since(t0) > 10*time.Minute {
				t.Fatal("not ready within 10 minutes")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	stop := func(n *node.Node) time.Duration {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Fatal(err)
		}
		return time.Since(t0)
	}

	n, _ := start()
	ctx := context.Background()
	uids := make([]string, users)
	// HERALD_RESTART_REUSE=1 with HERALD_RESTART_DIR measures restarts of
	// a node filled by an earlier run, without filling it again.
	reuse := os.Getenv("HERALD_RESTART_REUSE") != ""
	if reuse {
		page, err := n.Store().ListUsers("", users)
		if err != nil || len(page.Items) == 0 {
			t.Fatalf("no users to reuse: %v", err)
		}
		for i := range uids {
			uids[i] = page.Items[i%len(page.Items)].ID
		}
	}
	for i := range uids {
		if reuse {
			break
		}
		rec, err := httpapi.NewUserRecord(fmt.Sprintf("user%04d", i), "User", "password-"+strconv.Itoa(i),
			[]string{resource.RoleUser}, true, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Store().Propose(ctx, &raft.Command{Op: raft.OpCreateUser, Now: time.Now().UnixNano(), User: rec}); err != nil {
			t.Fatal(err)
		}
		uids[i] = rec.ID
	}
	// fill sends notifications from..to-1 from many writers at once, so
	// that group commit fills its entries as under real load.
	fill := func(n *node.Node, from, to int) {
		var next atomic.Int64
		next.Store(int64(from))
		var wg sync.WaitGroup
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(to) {
						return
					}
					now := time.Now()
					in := resource.NotificationInput{Payload: &resource.Payload{
						VisualContent: &resource.VisualContent{Title: "Build " + strconv.FormatInt(i, 10), Body: "passed"}}}
					if err := in.Validate(now, "bench.example"); err != nil {
						t.Error(err)
						return
					}
					rec := &resource.NotificationRecord{Notification: in.NewNotification(resource.NewNotificationID(now), now),
						UserID: uids[i%users], AppID: "bench-app"}
					if _, err := n.Store().Propose(ctx, &raft.Command{Op: raft.OpSend, Now: now.UnixNano(), Notif: rec,
						MaxItems: cfg.Limits.MaxNotificationsPerUser}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	t0 := time.Now()
	if reuse {
		total = 0
	}
	fill(n, 0, total)
	if t.Failed() {
		return
	}
	took := time.Since(t0)
	t.Logf("filled %d notifications in %s (%.0f/s); log %+v", total, took.Round(time.Millisecond),
		float64(total)/took.Seconds(), n.Store().LogStats())
	t.Logf("graceful stop after the fill: %s", stop(n).Round(time.Millisecond))
	t.Logf("data directory: %d MiB", dirSize(dir)>>20)
	for i := 1; i <= 3; i++ {
		n, took := start()
		t.Logf("restart %d: ready in %s; log after the snapshot %+v", i, took.Round(time.Millisecond), n.Store().LogStats())
		// More writes between restarts, as a live node would take.
		fill(n, 0, 20000)
		if t.Failed() {
			return
		}
		t.Logf("restart %d: graceful stop after 20000 more writes: %s", i, stop(n).Round(time.Millisecond))
	}
}

func dirSize(dir string) int64 {
	var size int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				size += info.Size()
			}
		}
		return nil
	})
	return size
}
