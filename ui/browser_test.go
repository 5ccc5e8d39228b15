package ui_test

// The browser harness of the UI tests: Debian's Chromium driven through
// chromedp, one isolated browser context (own cookies and storage) per
// simulated person or device, against a real node from internal/testnode.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// stepTimeout bounds one step: long enough for a loaded CI machine, short
// enough that a broken page fails the test rather than hanging it.
const stepTimeout = 20 * time.Second

// chromium finds the browser. Locally, a machine without it skips the
// browser tests; in CI (CI=true) a missing browser is a failure, so the
// tests can never silently stop running there.
func chromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("HERALD_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	msg := "Chromium is not installed (looked for /usr/bin/chromium); install it with `apt-get install -y chromium` to run the browser tests"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser is one Chromium process.
type browser struct {
	t   testing.TB
	ctx context.Context // the first tab's context: it owns the process
}

func newBrowser(t testing.TB, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	path := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // CI runs as root in a container
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Containers often have a tiny /dev/shm, which crashes tabs.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	opts = append(opts, extra...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the process; it must not carry a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	return &browser{t: t, ctx: ctx}
}

// page is one tab in its own browser context: a separate person or device.
type page struct {
	t    testing.TB
	name string
	ctx  context.Context

	mu       sync.Mutex
	problems []string // exceptions, console errors, failed requests: checkClean fails on them
	logs     []string // warnings and expected errors, shown when a step fails
	expected []string // substrings of console errors the test caused on purpose
	wg       sync.WaitGroup
}

// expect declares console errors the test causes on purpose (a request it
// makes fail, a connection it cuts): an error whose text or URL contains
// one of subs is logged, not a problem. Call it before the step.
func (p *page) expect(subs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expected = append(p.expected, subs...)
}

// newPage opens a tab of width×height CSS pixels in a fresh browser
// context. Console errors and exceptions are collected as they happen.
func (b *browser) newPage(name string, width, height int64) *page {
	t := b.t
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	p := &page{t: t, name: name, ctx: ctx}
	t.Cleanup(func() {
		cancel()
		p.wg.Wait()
	})
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	entries := chromedp.Events(ctx, log.EntryAdded)
	console := chromedp.Events(ctx, runtime.ConsoleAPICalled)
	p.wg.Add(3)
	go func() {
		defer p.wg.Done()
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			text := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				text = d.Exception.Description
			}
			p.note(true, fmt.Sprintf("uncaught exception: %s (%s:%d)", text, d.URL, d.LineNumber+1))
		}
	}()
	go func() {
		defer p.wg.Done()
		for ev, err := range entries {
			if err != nil {
				return
			}
			e := ev.Entry
			if e.Level != log.EntryLevelError && e.Level != log.EntryLevelWarning {
				continue
			}
			// Every error is a problem (a failed request the page did not
			// expect logs one too), and so is any warning about the CSP.
			csp := strings.Contains(e.Text, "Content Security Policy") || strings.Contains(e.Text, "Content-Security-Policy")
			p.note(csp || e.Level == log.EntryLevelError, fmt.Sprintf("%s %s: %s %s", e.Source, e.Level, e.Text, e.URL))
		}
	}()
	go func() {
		defer p.wg.Done()
		for ev, err := range console {
			if err != nil {
				return
			}
			if ev.Type != runtime.ConsoleAPICalledTypeError {
				continue
			}
			var parts []string
			for _, a := range ev.Args {
				if a.Description != "" {
					parts = append(parts, a.Description)
				} else {
					parts = append(parts, string(a.Value))
				}
			}
			p.note(true, "console.error: "+strings.Join(parts, " "))
		}
	}()
	p.do("open the tab", chromedp.EmulateViewport(width, height))
	return p
}

func (p *page) note(problem bool, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.expected {
		if problem && strings.Contains(msg, e) {
			problem, msg = false, "expected: "+msg
		}
	}
	if problem {
		p.problems = append(p.problems, msg)
	} else {
		p.logs = append(p.logs, msg)
	}
}

// do runs the actions of one step; on failure it saves a screenshot and
// stops the test, naming the step and where the picture is.
func (p *page) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.fail(step, err)
	}
}

// eval runs JavaScript and returns its result.
func eval[T any](p *page, step, js string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		p.fail(step, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds.
func (p *page) waitFor(step, cond string) {
	p.t.Helper()
	p.do(step, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingTimeout(stepTimeout-time.Second),
			chromedp.WithPollingInterval(50*time.Millisecond))(ctx, t)
		return err
	}))
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// fail saves a screenshot of the page to testdata-out/ (kept after the
// test, so CI can keep it as an artifact) and fails the test.
func (p *page) fail(step string, err error) {
	p.t.Helper()
	dir := filepath.Join("testdata-out", unsafeName.ReplaceAllString(p.t.Name(), "_"))
	file := filepath.Join(dir, unsafeName.ReplaceAllString(p.name+"-"+step, "_")+".png")
	shot := "not saved"
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	if png, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100)); serr == nil {
		if os.MkdirAll(dir, 0o755) == nil && os.WriteFile(file, png, 0o644) == nil {
			if abs, aerr := filepath.Abs(file); aerr == nil {
				file = abs
			}
			shot = file
		}
	} else {
		shot = "not saved: " + serr.Error()
	}
	p.mu.Lock()
	logs := append(append([]string{}, p.problems...), p.logs...)
	p.mu.Unlock()
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s: %w", stepTimeout, err)
	}
	p.t.Fatalf("%s: %s: %v\nscreenshot: %s\nbrowser console:\n  %s", p.name, step, err, shot, strings.Join(logs, "\n  "))
}

// checkClean fails the test if the page logged any console error it was
// not told to expect (p.expect): an uncaught exception, console.error, a
// failed request, or something the browser refused under the
// Content-Security-Policy. Every browser test ends with it, signed in or
// out.
func (p *page) checkClean() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.problems {
		p.t.Errorf("%s: %s", p.name, m)
	}
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`).Replace(s) + "'"
}
