package ui_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// sseRelay stands between the browser and the node's live stream. It passes
// the stream on one whole event at a time and notes what it passed, so
// that the test knows exactly what the page received; the test can end a
// stream as a server does (a clean end of the response, say on a restart)
// and hold the next connection back while it sends.
type sseRelay struct {
	target *url.URL

	mu      sync.Mutex
	opens   []string              // Last-Event-ID of each stream request, in order
	lastIDs []string              // per connection, the id of the last event passed on
	created map[string]int        // notification id -> created events passed on
	ends    map[int]chan struct{} // open connections, by index, to end them
	held    chan struct{}         // when not nil, new connections wait until it closes
}

type sseEvent struct {
	text, typ, id, data string
}

func (s *sseRelay) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = make(chan struct{})
}

func (s *sseRelay) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.held)
	s.held = nil
}

// endAll ends every open stream after the event it is passing on.
func (s *sseRelay) endAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.ends {
		close(c)
		delete(s.ends, i)
	}
}

func (s *sseRelay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	held := s.held
	s.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-r.Context().Done():
			return
		}
	}
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = s.target.Scheme, s.target.Host, "", ""
	res, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	if res.StatusCode != http.StatusOK {
		io.Copy(w, res.Body)
		return
	}
	w.(http.Flusher).Flush()

	s.mu.Lock()
	idx := len(s.opens)
	s.opens = append(s.opens, r.Header.Get("Last-Event-ID"))
	s.lastIDs = append(s.lastIDs, "")
	end := make(chan struct{})
	s.ends[idx] = end
	s.mu.Unlock()

	events := make(chan sseEvent)
	go func() {
		defer close(events)
		rd := bufio.NewReader(res.Body)
		var ev sseEvent
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			ev.text += line
			switch l := strings.TrimRight(line, "\r\n"); {
			case l == "":
				select {
				case events <- ev:
				case <-r.Context().Done():
					return
				}
				ev = sseEvent{}
			case strings.HasPrefix(l, "event:"):
				ev.typ = strings.TrimSpace(strings.TrimPrefix(l, "event:"))
			case strings.HasPrefix(l, "id:"):
				ev.id = strings.TrimSpace(strings.TrimPrefix(l, "id:"))
			case strings.HasPrefix(l, "data:"):
				ev.data += strings.TrimSpace(strings.TrimPrefix(l, "data:"))
			}
		}
	}()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			if _, err := io.WriteString(w, ev.text); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			s.mu.Lock()
			if ev.id != "" {
				s.lastIDs[idx] = ev.id
			}
			if ev.typ == "created" {
				var id string
				if i := strings.Index(ev.data, `"id":"`); i >= 0 {
					id, _, _ = strings.Cut(ev.data[i+6:], `"`)
				}
				s.created[id]++
			}
			s.mu.Unlock()
		case <-end:
			return // the response ends cleanly, as a server's does
		case <-r.Context().Done():
			return
		}
	}
}

// The inbox does its API work through the browser SDK: the page loads
// /sdk/herald.js (and not the console's API client or a stream reader of
// its own). When the server ends the live stream, the inbox reconnects
// with the last event's cursor as Last-Event-ID, gets what was sent while
// it was away, each notification once, and does not reload the feed.
func TestInboxUsesSDKAndResumesAfterServerEndsStream(t *testing.T) {
	b := newBrowser(t)
	n, send := aliceInbox(t)

	target, _ := url.Parse(n.URL)
	relay := &sseRelay{target: target, created: map[string]int{}, ends: map[int]chan struct{}{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var paths []string
	feedReads := 0
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		if r.Method == "GET" && r.URL.Path == "/v1.0/me/notifications" {
			feedReads++
		}
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/notifications/stream") {
			relay.ServeHTTP(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	p := b.newPage("inbox", 1280, 800)
	p.do("open the inbox", chromedp.Navigate(proxy.URL+"/ui/inbox/?app="+appHost))
	signIn(p, aliceUP, alicePW)
	p.do("go live", chromedp.WaitVisible(chromedp.CSS(`#live-status[data-state="live"]`)))
	p.waitFor("load the feed", `document.querySelector('#feed').dataset.loaded === 'true'`)
	card := func(id string) string {
		return `document.querySelectorAll(` + js(`.notif[data-id="`+id+`"]`) + `).length`
	}
	first := send("Before the end")
	p.waitFor("receive the first", card(first)+` === 1`)

	relay.hold()
	relay.endAll()
	p.waitFor("notice the end", `document.querySelector('#live-status').dataset.state !== 'live'`)
	away := []string{send("While away 1"), send("While away 2")}
	relay.release()
	for _, id := range away {
		p.waitFor("resume and receive "+id, card(id)+` === 1`)
	}
	p.do("be live again", chromedp.WaitVisible(chromedp.CSS(`#live-status[data-state="live"]`)))
	after := send("After the resume")
	p.waitFor("receive one more live", card(after)+` === 1`)
	p.waitFor("four unread", `document.querySelector('#unread-count').dataset.count === '4'`)
	for _, id := range append([]string{first, after}, away...) {
		if c := eval[int](p, "count the card", card(id)); c != 1 {
			t.Errorf("notification %s shows %d times", id, c)
		}
	}

	relay.mu.Lock()
	opens, lastIDs, created := append([]string{}, relay.opens...), append([]string{}, relay.lastIDs...), relay.created
	relay.mu.Unlock()
	t.Logf("streams opened with Last-Event-ID %q; last event ids passed %q", opens, lastIDs)
	if len(opens) != 2 || opens[0] != "" || opens[1] == "" || opens[1] != lastIDs[0] {
		t.Errorf("streams opened with Last-Event-ID %q after passing events up to %q; want none first, then the last id the page got", opens, lastIDs)
	}
	for _, id := range append([]string{first, after}, away...) {
		if created[id] != 1 {
			t.Errorf("the created event of %s was passed to the page %d times", id, created[id])
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if feedReads != 1 {
		t.Errorf("the feed was read %d times; a resumed stream needs no reload", feedReads)
	}
	loaded := map[string]bool{}
	for _, path := range paths {
		loaded[path] = true
	}
	if !loaded["/sdk/herald.js"] {
		t.Errorf("the inbox did not load /sdk/herald.js; it loaded %v", paths)
	}
	for _, own := range []string{"/ui/js/api.js", "/ui/js/stream.js"} {
		if loaded[own] {
			t.Errorf("the inbox loaded %s: its API work is the SDK's", own)
		}
	}
	// The module graph as the page sees it, too.
	mods := eval[[]string](p, "the page's scripts", `performance.getEntriesByType('resource').map(e => new URL(e.name).pathname).filter(p => p.endsWith('.js'))`)
	if !strings.Contains(fmt.Sprint(mods), "/sdk/herald.js") {
		t.Errorf("the page's resources %v do not include /sdk/herald.js", mods)
	}
	p.checkClean()
}
