package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// feedPage is the page size the feed scenario reads.
const feedPage = 50

// feed: Users users with Notifications notifications each; Concurrency
// readers (reader w is user w%Users) walk the feed in pages of 50
// (GET /v1.0/me/notifications?$top=50, then its nextLinks, then again from
// the top) for Duration, then walk the delta the same way (a full round of
// GET /v1.0/me/notifications/delta?$top=50 to its deltaLink, and again)
// for Duration. Every answer's status is checked and its nextLink
// followed; one in pageSample is decoded whole (readPage).
func feed(ctx context.Context, e *env, res *Result) error {
	o := e.o
	prog := newProgress(o.Progress, e.rss)
	defer prog.close()
	started := time.Now()
	f, err := liveFixture(ctx, e, prog)
	if err != nil {
		return err
	}
	defer f.cleanup()
	hc := newLoadClient(o.Concurrency)
	defer hc.CloseIdleConnections()
	total := o.Users * o.Notifications
	var stored atomic.Int64
	prog.phase("fill")
	prog.show(func() string { return fmt.Sprintf("%d of %d notifications stored", stored.Load(), total) })
	if err := parallel(ctx, total, o.Concurrency, func(i int) error {
		_, err := do(ctx, hc, e.url(0), f.sendCall(f.users[i%len(f.users)], int64(i), time.Now()), http.StatusCreated)
		stored.Add(1)
		return err
	}); err != nil {
		return fmt.Errorf("store the feed: %w", err)
	}
	res.SetupSeconds = time.Since(started).Seconds()

	first := "/v1.0/me/notifications?$top=50"
	firstDelta := "/v1.0/me/notifications/delta?$top=50"
	pageCall := func(u *benchUser, path string) call {
		return call{method: http.MethodGet, path: path, header: http.Header{"Authorization": {"Bearer " + u.token}}}
	}
	status, header, body, err := sample(ctx, hc, e.url(0), pageCall(f.users[0], first), http.StatusOK)
	if err != nil {
		return fmt.Errorf("read the feed: %w", err)
	}
	res.PageBytes = len(body)
	// walk is one reader's step through its walk: the page at next[w], or
	// start when its last page had no nextLink.
	bufs := make([][]byte, o.Concurrency)
	walk := func(start string) func(ctx context.Context, hc *http.Client, base string, w int, i int64, next []string) error {
		return func(ctx context.Context, hc *http.Client, base string, w int, i int64, next []string) error {
			path := next[w]
			if path == "" {
				path = start
			}
			b, err := doInto(ctx, hc, base, pageCall(f.users[w%len(f.users)], path), http.StatusOK, bufs[w][:0])
			bufs[w] = b
			if err != nil {
				return err
			}
			link, empty, err := readPage(b, i%pageSample == 0)
			if err != nil {
				return err
			}
			if empty && path == start {
				return errors.New("an empty first page")
			}
			next[w] = ""
			if link != "" {
				u, err := url.Parse(link)
				if err != nil {
					return err
				}
				next[w] = u.RequestURI()
			}
			return nil
		}
	}
	pages, deltas := walk(first), walk(firstDelta)
	ceilNext := make([]string, o.Concurrency)
	if err := measureCeiling(ctx, res, prog, o.Concurrency, o.Duration, "page requests/s", status, header, body,
		func(ctx context.Context, hc *http.Client, base string, w int, i int64) error {
			return pages(ctx, hc, base, w, i, ceilNext)
		}); err != nil {
		return err
	}

	e.rss.reset(ctx)
	next := make([]string, o.Concurrency)
	// The node's CPU per page tells what it could serve with the cores
	// to itself.
	before := scrapeAll(ctx, e)
	prog.phase("pages")
	profiled := e.profileLoad(ctx, "feed-pages", o.Duration, res)
	lat, ok, failed, elapsed := closedLoop(ctx, o.Concurrency, o.Duration, prog, func(ctx context.Context, w int, i int64) error {
		return pages(ctx, hc, e.url(w), w, i, next)
	})
	serverCost(res, before, scrapeAll(ctx, e), ok+failed)
	if err := profiled(); err != nil {
		return err
	}
	p := summarize(lat)
	res.Unit, res.LatencyOf = "pages/s ($top=50)", "GET of one page"
	res.Rate = float64(ok) / elapsed.Seconds()
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = p.p50, p.p90, p.p99, p.max
	res.Requests, res.Errors = ok+failed, failed

	clear(next)
	prog.phase("deltas")
	profiled = e.profileLoad(ctx, "feed-deltas", o.Duration, res)
	lat, ok, failed, elapsed = closedLoop(ctx, o.Concurrency, o.Duration, prog, func(ctx context.Context, w int, i int64) error {
		return deltas(ctx, hc, e.url(w), w, i, next)
	})
	if err := profiled(); err != nil {
		return err
	}
	d := summarize(lat)
	res.DeltaRate = float64(ok) / elapsed.Seconds()
	res.DeltaP50Ms, res.DeltaP99Ms, res.DeltaMaxMs = d.p50, d.p99, d.max
	res.Requests += ok + failed
	res.Errors += failed
	return nil
}

// pageSample: one page in this many is decoded whole. Decoding a 26 KB
// page with encoding/json takes this machine about 240 µs, twice what the
// node spends serving it, so a client that decoded every page would
// measure itself (BENCHMARKS.md, 4 December 2026).
const pageSample = 16

// readPage returns a page's nextLink and whether it holds no items.
// Whole, it decodes the page as a client would and checks it is a
// collection of objects; otherwise it checks the page's ends and reads
// only the link, the last member, as writeEncoded in package httpapi
// writes it. A nextLink inside a value would be escaped ("\"@odata...)
// and so cannot be taken for it.
func readPage(b []byte, whole bool) (link string, empty bool, err error) {
	if whole {
		var page struct {
			Value []map[string]json.RawMessage `json:"value"`
			Next  string                       `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return "", false, fmt.Errorf("a page: %w", err)
		}
		if page.Value == nil {
			return "", false, errors.New("a page without a value")
		}
		return page.Next, len(page.Value) == 0, nil
	}
	if !bytes.HasPrefix(b, []byte(`{"value":[`)) || !bytes.HasSuffix(b, []byte("}")) {
		return "", false, fmt.Errorf("not a page: %.80q", b)
	}
	empty = bytes.HasPrefix(b, []byte(`{"value":[]`))
	const name = `,"@odata.nextLink":`
	at := bytes.LastIndex(b, []byte(name))
	if at < 0 {
		return "", empty, nil
	}
	rest := b[at+len(name) : len(b)-1]
	if end := bytes.Index(rest, []byte(`,"@odata.deltaLink":`)); end >= 0 {
		rest = rest[:end]
	}
	if err := json.Unmarshal(rest, &link); err != nil {
		return "", false, fmt.Errorf("a page's nextLink: %w", err)
	}
	return link, empty, nil
}
