package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/herald-notify/herald/loadgen"
)

// feedBenchNotifications is what the bench's feed scenario stores per user.
const feedBenchNotifications = 1000

// fillFeed stores n notifications for the target's user.
func fillFeed(b *testing.B, t *loadgen.Target, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if status, err := t.Post(context.Background(), i); err != nil || status != http.StatusCreated {
					b.Errorf("post: %d %v", status, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// nextLinkKey precedes the nextLink in a page; the reader finds it without
// decoding the page, so that the profile is the server's.
var nextLinkKey = []byte(`"@odata.nextLink":"`)

// getPage reads one page and returns the request URI of its nextLink, or
// "" on the last page.
func getPage(hc *http.Client, t *loadgen.Target, uri string, buf *bytes.Buffer) (string, error) {
	req, err := http.NewRequest(http.MethodGet, t.URL+uri, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+t.UserToken)
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := io.Copy(buf, resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", &url.Error{Op: "GET", URL: uri, Err: io.ErrUnexpectedEOF}
	}
	body := buf.Bytes()
	i := bytes.LastIndex(body, nextLinkKey)
	if i < 0 {
		return "", nil
	}
	rest := body[i+len(nextLinkKey)-1:]
	var link string
	if err := json.NewDecoder(bytes.NewReader(rest)).Decode(&link); err != nil {
		return "", err
	}
	u, err := url.Parse(link)
	if err != nil {
		return "", err
	}
	return u.RequestURI(), nil
}

// BenchmarkFeedPage measures GET /v1.0/me/notifications?$top=50 (and the
// delta's first round) over real HTTP: one user with 1,000 notifications,
// 16 × GOMAXPROCS readers each walking the pages by their nextLinks and
// starting again at the end, as `herald bench feed` does. One op is one
// page; allocations are the whole process's (client included).
func BenchmarkFeedPage(b *testing.B) {
	t := benchTarget(b)
	fillFeed(b, t, feedBenchNotifications)
	for _, first := range []string{"/v1.0/me/notifications?$top=50", "/v1.0/me/notifications/delta?$top=50"} {
		name := "pages"
		if first != "/v1.0/me/notifications?$top=50" {
			name = "delta"
		}
		b.Run(name, func(b *testing.B) {
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
			defer hc.CloseIdleConnections()
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var buf bytes.Buffer
				uri := first
				for pb.Next() {
					next, err := getPage(hc, t, uri, &buf)
					if err != nil {
						b.Errorf("GET %s: %v", uri, err)
						return
					}
					if uri = next; uri == "" {
						uri = first
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
		})
	}
}
