package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// An application's request limit (--app-rate) is the cluster's: sends
// spread round-robin over the three nodes of a cluster are admitted, in
// total, about as many as one node allows (its burst and its rate over the
// time), not three times that. Each node decides on its own buckets and
// tells the others what it admitted every 200 ms (cluster/ratelimits.go).
func TestAppRateLimitIsSharedByTheCluster(t *testing.T) {
	ctx := context.Background()
	const rate, burst = 20, 20
	cfgs := []node.Config{clusterConfig(t, "n1")}
	cfgs = append(cfgs, clusterConfig(t, "n2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "n3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	for i := range cfgs {
		cfgs[i].Limits.AppRate, cfgs[i].Limits.AppBurst = rate, burst
	}
	nodes, adminToken := startSignedIn(t, cfgs)

	userToken, appToken, unsid := liveSender(t, nodes[0], adminToken, "carol", "alerts.cluster.test")
	// Every node has the subscription before the sends begin (the user's
	// requests are not limited), so that none is refused for a lag.
	for _, n := range nodes {
		pollUntil(t, "the subscription on "+n.Config.NodeID, func() error {
			return clientFor(t, n, userToken).Do(ctx, http.MethodGet, "/v1.0/me/notificationSubscriptions/"+unsid, nil, nil)
		})
	}

	// Sends go out at 150 a second in all, each to the next node in
	// turn, from six workers: well over what even three separate limits
	// would admit (60 a second), so every node refuses some.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: retryUnavailable{}}
	send := func(n *testnode.Node, i int) (int, string, error) {
		body, _ := json.Marshal(map[string]any{"appNotificationId": "n" + strconv.Itoa(i),
			"payload": map[string]any{"rawContent": "hello"}})
		req, err := http.NewRequest(http.MethodPost, n.URL+"/v1.0/me/notifications", bytes.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Authorization", "Bearer "+appToken)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-UNS-ID", unsid)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusTooManyRequests {
			return 0, "", fmt.Errorf("send %d through %s: %d %s", i, n.Config.NodeID, resp.StatusCode, b)
		}
		return resp.StatusCode, resp.Header.Get("Retry-After"), nil
	}
	const window = 3 * time.Second
	var (
		mu       sync.Mutex
		created  = map[string]int{}
		refused  = map[string]int{}
		failures []error
	)
	turns := make(chan int)
	start := time.Now()
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range turns {
				n := nodes[i%len(nodes)]
				status, ra, err := send(n, i)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err)
				case status == http.StatusCreated:
					created[n.Config.NodeID]++
				default:
					if s, err := strconv.Atoi(ra); err != nil || s < 1 {
						failures = append(failures, fmt.Errorf("429 from %s with Retry-After %q", n.Config.NodeID, ra))
					}
					refused[n.Config.NodeID]++
				}
				mu.Unlock()
			}
		}()
	}
	tick := time.NewTicker(time.Second / 150)
	for i := 0; time.Since(start) < window; i++ {
		turns <- i
		<-tick.C
	}
	tick.Stop()
	close(turns)
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range failures {
		t.Error(err)
	}

	total := 0
	for _, n := range nodes {
		id := n.Config.NodeID
		total += created[id]
		if created[id] == 0 || refused[id] == 0 {
			t.Errorf("%s admitted %d and refused %d: the sends did not go through every node", id, created[id], refused[id])
		}
	}
	// One limit admits its burst and its rate over the time. Shared every
	// 200 ms, the cluster's may add what each node admits on its own full
	// bucket before it hears of the others (at most a burst each, paid back
	// as debt) and a report interval's worth: a second's rate and a burst
	// of margin cover both. Three separate limits would admit about three
	// times one (here some 240).
	bound := int(rate*elapsed.Seconds()) + 2*burst + rate
	t.Logf("%d sends admitted in %v (by node %v, refused %v); bound %d, one limit %d, three separate limits %d",
		total, elapsed.Round(time.Millisecond), created, refused, bound,
		int(rate*elapsed.Seconds())+burst, 3*(int(rate*elapsed.Seconds())+burst))
	if total > bound {
		t.Errorf("%d sends admitted in %v over three nodes, more than the cluster's limit allows (%d)", total, elapsed, bound)
	}

	// The debt is bounded: every node admits the application again once
	// its bucket has refilled.
	for i, n := range nodes {
		pollFor(t, 10*time.Second, "a send admitted again through "+n.Config.NodeID, func() error {
			status, _, err := send(n, 1_000_000+i)
			if err == nil && status != http.StatusCreated {
				err = fmt.Errorf("status %d", status)
			}
			return err
		})
	}
}
