package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testnode"
)

// benchEnv is a node with one application, one user and one live
// subscription, and no rate limits or quotas in the way.
type benchEnv struct {
	url, appToken, userToken, unsid string
	client                          *http.Client
}

func newBenchEnv(b *testing.B) *benchEnv {
	cfg := testnode.Config(b, b.TempDir())
	cfg.Limits.AppRate, cfg.Limits.UserRate = 0, 0
	cfg.Limits.MaxNotificationsPerUser = 0
	cfg.Limits.MaxStreamsPerUser = 0
	n := testnode.Start(b, &cfg)
	e := &benchEnv{url: n.URL, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	admin := e.token(b, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}})
	var app struct {
		AppID string `json:"appId"`
		Creds []struct {
			Secret string `json:"secretText"`
		} `json:"passwordCredentials"`
	}
	e.do(b, "POST", "/v1.0/applications", admin, `{"displayName":"Bench","targetHostName":"bench.example"}`, &app)
	e.do(b, "POST", "/v1.0/users", admin, `{"userPrincipalName":"bench","password":"bench-password"}`, nil)
	e.userToken = e.token(b, url.Values{"grant_type": {"password"}, "username": {"bench"}, "password": {"bench-password"}})
	var sub struct{ ID string }
	e.do(b, "POST", "/v1.0/me/notificationSubscriptions", e.userToken,
		`{"targetHostName":"bench.example","platformType":"web","channel":{"type":"live"}}`, &sub)
	e.unsid = sub.ID
	e.appToken = e.token(b, url.Values{"grant_type": {"client_credentials"}, "client_id": {app.AppID}, "client_secret": {app.Creds[0].Secret}})
	return e
}

func (e *benchEnv) token(b testing.TB, form url.Values) string {
	resp, err := e.client.PostForm(e.url+"/oauth2/v2.0/token", form)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var t struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil || t.AccessToken == "" {
		b.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return t.AccessToken
}

func (e *benchEnv) do(b testing.TB, method, path, token, body string, out any) {
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		b.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			b.Fatal(err)
		}
	}
}

// post sends one notification as the application and reports its status.
func (e *benchEnv) post(i int64) (int, error) {
	body := fmt.Sprintf(`{"appNotificationId":"n%d","payload":{"visualContent":{"title":"Build %d finished","body":"All 1432 tests passed."}}}`, i, i)
	req, _ := http.NewRequest("POST", e.url+"/v1.0/me/notifications", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.appToken)
	req.Header.Set("X-UNS-ID", e.unsid)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// BenchmarkIngest measures POST /v1.0/me/notifications to 201 over real
// HTTP, with every write committed through Raft and applied to Badger.
// Run with -cpu to vary concurrency: goroutines = 16 × GOMAXPROCS.
func BenchmarkIngest(b *testing.B) {
	e := newBenchEnv(b)
	var seq atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			status, err := e.post(seq.Add(1))
			if err != nil || status != http.StatusCreated {
				b.Errorf("post: %d %v", status, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifications/s")
}

// BenchmarkStreamFanout measures how long one notification takes to reach
// every one of a user's open SSE streams. One op is one notification
// delivered to all streams.
func BenchmarkStreamFanout(b *testing.B) {
	for _, streams := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			e := newBenchEnv(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var received atomic.Int64
			var ready sync.WaitGroup
			tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: streams}
			for i := 0; i < streams; i++ {
				ready.Add(1)
				go func() {
					req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1.0/me/notifications/stream", nil)
					req.Header.Set("Authorization", "Bearer "+e.userToken)
					resp, err := tr.RoundTrip(req)
					if err != nil || resp.StatusCode != http.StatusOK {
						b.Errorf("stream: %v", err)
						ready.Done()
						return
					}
					defer resp.Body.Close()
					sc := bufio.NewScanner(resp.Body)
					sc.Buffer(make([]byte, 64<<10), 1<<20)
					for sc.Scan() {
						line := sc.Bytes()
						if bytes.HasPrefix(line, []byte(": connected")) {
							ready.Done()
						}
						if bytes.HasPrefix(line, []byte("event: created")) {
							received.Add(1)
						}
					}
				}()
			}
			ready.Wait()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				want := int64(i+1) * int64(streams)
				if status, err := e.post(int64(i)); err != nil || status != http.StatusCreated {
					b.Fatalf("post: %d %v", status, err)
				}
				deadline := time.Now().Add(30 * time.Second)
				for received.Load() < want {
					if time.Now().After(deadline) {
						b.Fatalf("only %d of %d events arrived", received.Load(), want)
					}
					time.Sleep(50 * time.Microsecond)
				}
			}
			b.ReportMetric(float64(b.N*streams)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
