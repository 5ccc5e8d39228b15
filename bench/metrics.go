package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// metrics is one scrape of a node's /metrics (Prometheus text format):
// value by series, the series written as the exposition writes it.
type metrics map[string]float64

// scrape reads base's /metrics with an admin's token.
func scrape(ctx context.Context, hc *http.Client, base, token string) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: HTTP %d", base, resp.StatusCode)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// scrapeAll scrapes every node; a node that does not answer counts as
// empty.
func scrapeAll(ctx context.Context, e *env) []metrics {
	out := make([]metrics, len(e.urls))
	for i, u := range e.urls {
		m, err := scrape(ctx, e.hc, u, e.token)
		if err != nil {
			m = metrics{}
		}
		out[i] = m
	}
	return out
}

// serverCost fills in what the nodes spent between the scrapes per
// request: CPU time, and the page faults that touched fresh memory.
func serverCost(res *Result, before, after []metrics, requests int64) {
	res.CPUUsPerRequest = perRequest(before, after, "process_cpu_seconds_total", requests) * 1e6
	res.FaultsPerRequest = perRequest(before, after, "herald_process_minor_page_faults_total", requests)
}

// perRequest is the growth of the nodes' counter name between the scrapes
// over requests.
func perRequest(before, after []metrics, name string, requests int64) float64 {
	if requests == 0 {
		return 0
	}
	var d float64
	for i := range before {
		d += after[i][name] - before[i][name]
	}
	return d / float64(requests)
}

// rssMiB is the node's resident memory as its process collector reports it
// (the same figure as VmRSS in /proc/PID/status), so that --server runs
// report it too.
func (m metrics) rssMiB() float64 { return m["process_resident_memory_bytes"] / (1 << 20) }

// anonMiB is the part of it no file backs (0 where the node cannot tell):
// the rest is Badger's mapped files, which the kernel reclaims.
func (m metrics) anonMiB() float64 { return m["herald_process_resident_anon_bytes"] / (1 << 20) }

// seriesMean is the mean of the samples a histogram took between the
// scrapes, over every node and every series of it (each peer's, say).
func seriesMean(before, after []metrics, name string) float64 {
	var sum, count float64
	for i := range after {
		for k, v := range after[i] {
			switch {
			case k == name+"_sum" || strings.HasPrefix(k, name+"_sum{"):
				sum += v - before[i][k]
			case k == name+"_count" || strings.HasPrefix(k, name+"_count{"):
				count += v - before[i][k]
			}
		}
	}
	if count == 0 {
		return 0
	}
	return sum / count
}

// histogram is the difference of one histogram between two scrapes.
type histogram struct {
	count, sum float64
	// buckets: cumulative count by upper bound, ascending.
	bounds []float64
	counts []float64
}

func histogramDelta(before, after metrics, name string) histogram {
	h := histogram{count: after[name+"_count"] - before[name+"_count"], sum: after[name+"_sum"] - before[name+"_sum"]}
	prefix := name + `_bucket{le="`
	for k, v := range after {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		le := strings.TrimSuffix(k[len(prefix):], `"}`)
		b, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue // +Inf
		}
		h.bounds = append(h.bounds, b)
		h.counts = append(h.counts, v-before[k])
	}
	idx := make([]int, len(h.bounds))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return h.bounds[idx[a]] < h.bounds[idx[b]] })
	bounds, counts := make([]float64, len(idx)), make([]float64, len(idx))
	for i, j := range idx {
		bounds[i], counts[i] = h.bounds[j], h.counts[j]
	}
	h.bounds, h.counts = bounds, counts
	return h
}

func (h histogram) add(o histogram) histogram {
	if len(h.bounds) == 0 {
		return o
	}
	out := histogram{count: h.count + o.count, sum: h.sum + o.sum, bounds: h.bounds, counts: append([]float64(nil), h.counts...)}
	for i := range out.counts {
		if i < len(o.counts) {
			out.counts[i] += o.counts[i]
		}
	}
	return out
}

func (h histogram) mean() float64 {
	if h.count == 0 {
		return 0
	}
	return h.sum / h.count
}

// quantile is the upper bound of the bucket that holds quantile q: what a
// histogram can say, no more.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return 0
	}
	for i, c := range h.counts {
		if c >= q*h.count {
			return h.bounds[i]
		}
	}
	return h.bounds[len(h.bounds)-1]
}

// buckets is the non-cumulative count per bucket, labelled by range, for
// the table: where the batch sizes fell.
func (h histogram) buckets() []bucket {
	var out []bucket
	prev, lo := 0.0, 0.0
	for i, c := range h.counts {
		if n := c - prev; n > 0 {
			out = append(out, bucket{Le: h.bounds[i], Gt: lo, Count: n})
		}
		prev, lo = c, h.bounds[i]
	}
	if n := h.count - prev; n > 0 {
		out = append(out, bucket{Le: -1, Gt: lo, Count: n})
	}
	return out
}

// bucket counts the observations in (Gt, Le]; Le -1 is +Inf.
type bucket struct {
	Gt    float64 `json:"gt"`
	Le    float64 `json:"le"`
	Count float64 `json:"count"`
}
