package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLargeEntriesSurviveKills: with the smallest --memory, Badger takes
// about 600 KiB in one transaction, so an entry of fifty or more
// notifications of the largest payload (4 KiB) is committed in parts
// (raft/parts.go): 128 writers make such entries, dozens a round. The
// server is killed (SIGKILL) three times and restarted on the same data;
// after each restart every acknowledged notification is in the feed once,
// and the delta reads whole from the start (a part applied again after a
// crash left changes pointing at no notification, which the delta could
// not read). A kill lands between two parts of an entry now and then, not
// every run: raft/partialflush_test.go stops the FSM there on purpose.
func TestLargeEntriesSurviveKills(t *testing.T) {
	t.Parallel()
	const (
		writers = 128
		size    = 3900
		rounds  = 3
	)
	srv := startServer(t, serverOpts{DataDir: t.TempDir(),
		Env: []string{"HERALD_ADMIN_PASSWORD=" + adminPassword},
		Args: []string{"--memory", "16MiB", "--app-rate", "0", "--user-rate", "0",
			"--max-notifications-per-user", "0", "--shutdown-timeout", shutdownTimeout.String()}})
	a := newAPI(srv)
	f := newFixture(t, a, adminPassword, "parts.example.com", "dana")
	acked := map[string]string{} // appNotificationId → id, for every 201
	var next atomic.Int64
	for round := range rounds {
		target := 2000 + 1500*round
		var (
			mu         sync.Mutex
			n          int
			unexpected []string
			enough     = make(chan struct{})
			once       sync.Once
			killed     atomic.Bool
			wg         sync.WaitGroup
		)
		wa := &api{base: srv.URL, hc: &http.Client{Timeout: 20 * time.Second}}
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !killed.Load() {
					aid := fmt.Sprintf("big-%05d", next.Add(1))
					body := aid + strings.Repeat(".", size)
					r, err := wa.do("POST", "/v1.0/me/notifications", f.appToken,
						map[string]any{"appNotificationId": aid, "payload": map[string]any{"rawContent": body}},
						map[string]string{"X-UNS-ID": f.unsid})
					if err != nil {
						if !killed.Load() {
							mu.Lock()
							unexpected = append(unexpected, fmt.Sprintf("%s: %v", aid, err))
							mu.Unlock()
						}
						return
					}
					var got notification
					switch {
					case r.Status == http.StatusCreated && json.Unmarshal(r.Body, &got) == nil && got.ID != "":
						mu.Lock()
						acked[aid] = got.ID
						if n++; n >= target {
							once.Do(func() { close(enough) })
						}
						mu.Unlock()
					case r.Status == http.StatusServiceUnavailable || r.Status == http.StatusTooManyRequests:
					default:
						mu.Lock()
						unexpected = append(unexpected, fmt.Sprintf("%s: status %d: %.200s", aid, r.Status, r.Body))
						mu.Unlock()
						return
					}
				}
			}()
		}
		select {
		case <-enough:
		case <-time.After(60 * time.Second):
			mu.Lock()
			t.Fatalf("round %d: only %d writes acknowledged in a minute (%q)", round, n, unexpected)
		}
		killed.Store(true)
		srv.kill(t)
		wg.Wait()
		for _, u := range unexpected {
			t.Errorf("round %d: unexpected answer before the kill: %s", round, u)
		}
		srv = srv.restart(t)
		a = newAPI(srv)

		feed := a.listFeed(t, f.userToken, "$top=50")
		byAID := map[string]int{}
		for _, x := range feed {
			byAID[x.AppNotificationID]++
		}
		for aid, id := range acked {
			if byAID[aid] != 1 {
				t.Errorf("round %d: acknowledged %s (%s) is in the feed %d times", round, aid, id, byAID[aid])
			}
		}
		for aid, c := range byAID {
			if c > 1 {
				t.Errorf("round %d: %s is in the feed %d times", round, aid, c)
			}
		}
		created := map[string]int{}
		next := "/v1.0/me/notifications/delta?$top=200"
		for pages := 0; next != ""; pages++ {
			var page struct {
				Value []struct {
					ID string `json:"id"`
				} `json:"value"`
				NextLink string `json:"@odata.nextLink"`
			}
			a.call(t, http.StatusOK, "GET", next, f.userToken, nil, nil, &page)
			for _, v := range page.Value {
				created[v.ID]++
			}
			next = ""
			if page.NextLink != "" && pages < 1000 {
				next = strings.TrimPrefix(page.NextLink, srv.URL)
			}
		}
		for id, c := range created {
			if c > 1 {
				t.Errorf("round %d: the delta lists %s %d times", round, id, c)
			}
		}
		if len(created) != len(feed) {
			t.Errorf("round %d: the delta lists %d notifications, the feed %d", round, len(created), len(feed))
		}
		t.Logf("round %d: %d acknowledged in all, %d in the feed", round, len(acked), len(feed))
	}
}
