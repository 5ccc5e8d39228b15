// Package webhooktest is a loopback webhook receiver for tests. It verifies
// every request with the Standard Webhooks reference library, as a real
// receiver would, records it, and answers as scripted per endpoint.
package webhooktest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Answer is one scripted answer. The zero Answer is 204 No Content.
type Answer struct {
	Status     int
	RetryAfter string
	Location   string
	Body       string
	// Hang: no answer until the client gives up (or the receiver closes).
	Hang bool
}

// Event is the body Herald posts.
type Event struct {
	Type           string          `json:"type"`
	SubscriptionID string          `json:"subscriptionId"`
	Notification   json.RawMessage `json:"notification"`
}

// Request is one request the receiver got.
type Request struct {
	URL    string // the endpoint's URL
	Header http.Header
	Body   []byte
	// ID is the webhook-id.
	ID    string
	Event Event
	// Err is the reference library's verdict on the signature, or why the
	// body was not an event; such requests were answered 401 or 400.
	Err    error
	Status int // 0 for a scripted hang
	At     time.Time
}

// Notification decodes the event's notification.
func (r Request) Notification() map[string]any {
	var v map[string]any
	if json.Unmarshal(r.Event.Notification, &v) != nil {
		return nil
	}
	return v
}

// Receiver is a webhook receiver with any number of endpoints.
type Receiver struct {
	*httptest.Server

	mu      sync.Mutex
	hooks   map[string]*hook // by path
	got     []Request
	release chan struct{}
}

type hook struct {
	wh     *standardwebhooks.Webhook
	script []Answer
	n      int
}

// NewReceiver starts a receiver on loopback; it stops when the test ends.
func NewReceiver(t testing.TB) *Receiver {
	rc := &Receiver{hooks: map[string]*hook{}, release: make(chan struct{})}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.Close)
	t.Cleanup(func() { close(rc.release) })
	return rc
}

// Endpoint makes a new endpoint and returns its URL. Requests to it fail
// verification until SetSecret gives it the subscription's secret.
func (rc *Receiver) Endpoint() string {
	id := make([]byte, 12)
	rand.Read(id)
	path := "/hooks/" + base64.RawURLEncoding.EncodeToString(id)
	rc.mu.Lock()
	rc.hooks[path] = &hook{}
	rc.mu.Unlock()
	return rc.URL + path
}

// SetSecret sets the whsec_ secret an endpoint verifies signatures with:
// the secret of the subscription's 201 answer, which the library reads as
// Standard Webhooks defines it (standard base64).
func (rc *Receiver) SetSecret(endpoint, secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	h := rc.hooks[pathOf(endpoint)]
	if h == nil {
		return errors.New("webhooktest: no such endpoint")
	}
	h.wh = wh
	return nil
}

// Script sets the answers to the next requests to endpoint, in order; the
// last one repeats. Without a script a verified request gets 204.
func (rc *Receiver) Script(endpoint string, answers ...Answer) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if h := rc.hooks[pathOf(endpoint)]; h != nil {
		h.script, h.n = answers, 0
	}
}

// Requests returns the requests to endpoint, or to any endpoint when
// endpoint is empty.
func (rc *Receiver) Requests(endpoint string) []Request {
	return rc.filter(func(r *Request) bool { return endpoint == "" || r.URL == endpoint })
}

// Delivered returns the verified requests to endpoint answered 2xx.
func (rc *Receiver) Delivered(endpoint string) []Request {
	return rc.filter(func(r *Request) bool {
		return (endpoint == "" || r.URL == endpoint) && r.Err == nil && r.Status >= 200 && r.Status < 300
	})
}

// Rejected returns the requests that failed verification.
func (rc *Receiver) Rejected() []Request {
	return rc.filter(func(r *Request) bool { return r.Err != nil })
}

func (rc *Receiver) filter(keep func(*Request) bool) []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []Request
	for i := range rc.got {
		if keep(&rc.got[i]) {
			out = append(out, rc.got[i])
		}
	}
	return out
}

func pathOf(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil {
		return u.Path
	}
	return endpoint
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	req := Request{URL: rc.URL + r.URL.Path, Header: r.Header.Clone(), Body: body, ID: r.Header.Get("webhook-id"), At: time.Now()}
	rc.mu.Lock()
	h := rc.hooks[r.URL.Path]
	var a Answer
	if h != nil && len(h.script) > 0 {
		a = h.script[min(h.n, len(h.script)-1)]
		h.n++
	}
	var wh *standardwebhooks.Webhook
	if h != nil {
		wh = h.wh
	}
	rc.mu.Unlock()

	status := a.Status
	if status == 0 {
		status = http.StatusNoContent
	}
	switch {
	case h == nil:
		status = http.StatusNotFound
	case r.Method != http.MethodPost:
		req.Err, status = errors.New("method "+r.Method), http.StatusMethodNotAllowed
	case wh == nil:
		req.Err, status = errors.New("webhooktest: the endpoint has no secret yet"), http.StatusUnauthorized
	default:
		if err := wh.Verify(body, r.Header); err != nil {
			req.Err, status = err, http.StatusUnauthorized
		} else if err := json.Unmarshal(body, &req.Event); err != nil {
			req.Err, status = err, http.StatusBadRequest
		}
	}
	req.Status = status
	if a.Hang && req.Err == nil && h != nil {
		req.Status = 0
	}
	rc.mu.Lock()
	rc.got = append(rc.got, req)
	rc.mu.Unlock()
	if req.Status == 0 {
		select {
		case <-r.Context().Done():
		case <-rc.release:
		}
		return
	}
	if req.Err == nil && h != nil {
		if a.RetryAfter != "" {
			w.Header().Set("Retry-After", a.RetryAfter)
		}
		if a.Location != "" {
			w.Header().Set("Location", a.Location)
		}
	}
	w.WriteHeader(status)
	io.WriteString(w, a.Body)
}
