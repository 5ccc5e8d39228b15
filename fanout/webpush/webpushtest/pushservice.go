package webpushtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Options configure a PushService.
type Options struct {
	// Subject, when set, is the sub claim every VAPID token must carry;
	// otherwise any mailto: or https: URL will do.
	Subject string
	// Now is the clock tokens are checked against; time.Now when nil.
	Now func() time.Time
}

// Answer is one scripted answer of the push service. The zero Answer is
// 201 Created, the answer of RFC 8030 §5.
type Answer struct {
	Status     int    // 201 when zero
	RetryAfter string // a Retry-After header, when set
	Location   string // a Location header, when set (for redirects)
	Body       string
	// Hang: no answer until the client gives up (or the service closes).
	Hang bool
	// Endless: an endless body after the status; the bytes written before
	// the client hung up are sent on EndlessWritten.
	Endless bool
}

// Message is what the push service saw of one request and what it answered.
type Message struct {
	Endpoint string // the subscription's endpoint URL
	Header   http.Header
	JWT      string        // the VAPID token (t=)
	K        string        // the VAPID public key (k=)
	Claims   jwt.MapClaims // the token's claims, once verified
	TTL      int64
	Urgency  string // "normal" when the header was absent
	Topic    string
	// Plaintext is the decrypted body: what the service worker gets.
	Plaintext []byte
	// Err is the check the request failed, if any; it was then refused
	// with 400, 401 or 403 and never reached the browser.
	Err    error
	Status int // the answer's status; 0 for a scripted hang
	At     time.Time
}

// JSON decodes Plaintext, nil when it is not a JSON object.
func (m Message) JSON() map[string]any {
	var v map[string]any
	if json.Unmarshal(m.Plaintext, &v) != nil {
		return nil
	}
	return v
}

// PushService is a loopback push service. Browsers subscribe with
// Subscribe, which returns the endpoint the application server posts to.
// It checks each request as a real push service would: RFC 8030 headers
// (TTL required, Urgency and Topic well-formed), the VAPID token of
// RFC 8292 (ES256 under the k= key, aud its own origin, exp at most 24
// hours away, a mailto: or https: sub, and k= the applicationServerKey the
// subscription was made with), and the aes128gcm body, by decrypting it
// with the browser's key. An endpoint it does not know gets 404, as an
// expired subscription does.
type PushService struct {
	*httptest.Server
	o Options

	mu      sync.Mutex
	subs    map[string]*subscription // by endpoint path
	msgs    []Message
	release chan struct{}
	endless chan int64
}

type subscription struct {
	browser *Browser
	key     string // applicationServerKey, base64url
	script  []Answer
	n       int
}

// NewPushService starts a push service on loopback; it stops when the test
// ends.
func NewPushService(t testing.TB, o Options) *PushService {
	if o.Now == nil {
		o.Now = time.Now
	}
	ps := &PushService{o: o, subs: map[string]*subscription{}, release: make(chan struct{}), endless: make(chan int64, 16)}
	ps.Server = httptest.NewServer(http.HandlerFunc(ps.serve))
	// Cleanups run last-in first-out: free hung handlers, then close.
	t.Cleanup(ps.Close)
	t.Cleanup(func() { close(ps.release) })
	return ps
}

// Subscribe is PushManager.subscribe: it registers b with the server key
// applicationServerKey (base64url; empty accepts any VAPID key) and
// returns the new subscription's endpoint.
func (ps *PushService) Subscribe(b *Browser, applicationServerKey string) string {
	id := make([]byte, 16)
	rand.Read(id)
	path := "/push/" + base64.RawURLEncoding.EncodeToString(id)
	ps.mu.Lock()
	ps.subs[path] = &subscription{browser: b, key: applicationServerKey}
	ps.mu.Unlock()
	return ps.URL + path
}

// Unsubscribe forgets an endpoint: from then on it gets 404.
func (ps *PushService) Unsubscribe(endpoint string) {
	ps.mu.Lock()
	delete(ps.subs, pathOf(endpoint))
	ps.mu.Unlock()
}

// Script sets the answers to the next requests to endpoint, in order; the
// last one repeats. Without a script every valid request gets 201.
func (ps *PushService) Script(endpoint string, answers ...Answer) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if s := ps.subs[pathOf(endpoint)]; s != nil {
		s.script, s.n = answers, 0
	}
}

// Messages returns every request to endpoint so far, or to any endpoint
// when endpoint is empty.
func (ps *PushService) Messages(endpoint string) []Message {
	return ps.filter(func(m *Message) bool { return endpoint == "" || m.Endpoint == endpoint })
}

// Delivered returns the requests to endpoint that passed every check and
// were answered 2xx: the messages the browser received.
func (ps *PushService) Delivered(endpoint string) []Message {
	return ps.filter(func(m *Message) bool {
		return (endpoint == "" || m.Endpoint == endpoint) && m.Err == nil && m.Status >= 200 && m.Status < 300
	})
}

// Rejected returns the requests that failed a check.
func (ps *PushService) Rejected() []Message {
	return ps.filter(func(m *Message) bool { return m.Err != nil })
}

// EndlessWritten receives, per Endless answer, the bytes written before
// the client hung up.
func (ps *PushService) EndlessWritten() <-chan int64 { return ps.endless }

func (ps *PushService) filter(keep func(*Message) bool) []Message {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []Message
	for i := range ps.msgs {
		if keep(&ps.msgs[i]) {
			out = append(out, ps.msgs[i])
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

func (ps *PushService) serve(w http.ResponseWriter, r *http.Request) {
	ps.mu.Lock()
	sub := ps.subs[r.URL.Path]
	var a Answer
	if sub != nil && len(sub.script) > 0 {
		a = sub.script[min(sub.n, len(sub.script)-1)]
		sub.n++
	}
	ps.mu.Unlock()

	m := Message{Endpoint: ps.URL + r.URL.Path, Header: r.Header.Clone(), At: ps.o.Now()}
	status := http.StatusNotFound
	if sub != nil {
		status = ps.check(r, sub, &m)
	}
	if status == 0 {
		status = a.Status
		if status == 0 {
			status = http.StatusCreated
		}
	}
	m.Status = status
	if a.Hang && m.Err == nil && sub != nil {
		m.Status = 0 // no answer
	}
	ps.mu.Lock()
	ps.msgs = append(ps.msgs, m)
	ps.mu.Unlock()
	switch {
	case m.Err != nil:
		http.Error(w, m.Err.Error(), status)
	case sub == nil:
		http.Error(w, "no such subscription", status)
	case a.Hang:
		select {
		case <-r.Context().Done():
		case <-ps.release:
		}
	default:
		if a.RetryAfter != "" {
			w.Header().Set("Retry-After", a.RetryAfter)
		}
		if a.Location != "" {
			w.Header().Set("Location", a.Location)
		}
		w.WriteHeader(status)
		if a.Endless {
			chunk := []byte(strings.Repeat("garbage ", 4096))
			var n int64
			for {
				k, err := w.Write(chunk)
				n += int64(k)
				if err != nil {
					break
				}
			}
			select {
			case ps.endless <- n:
			default:
			}
			return
		}
		io.WriteString(w, a.Body)
	}
}

// check verifies r and fills m; it returns 0 when r is good, otherwise the
// status to refuse it with (and m.Err says why).
func (ps *PushService) check(r *http.Request, sub *subscription, m *Message) int {
	fail := func(status int, format string, a ...any) int {
		m.Err = fmt.Errorf(format, a...)
		return status
	}
	if r.Method != http.MethodPost {
		return fail(http.StatusMethodNotAllowed, "method %s", r.Method)
	}
	h := r.Header
	if ce, ct := h.Get("Content-Encoding"), h.Get("Content-Type"); ce != "aes128gcm" || ct != "application/octet-stream" {
		return fail(http.StatusBadRequest, "Content-Encoding %q, Content-Type %q", ce, ct)
	}
	ttl, err := strconv.ParseInt(h.Get("TTL"), 10, 64)
	if err != nil || ttl < 0 {
		return fail(http.StatusBadRequest, "TTL %q is not a number of seconds (RFC 8030 §5.2)", h.Get("TTL"))
	}
	m.TTL = ttl
	m.Urgency = h.Get("Urgency")
	switch m.Urgency {
	case "":
		m.Urgency = "normal"
	case "very-low", "low", "normal", "high":
	default:
		return fail(http.StatusBadRequest, "Urgency %q (RFC 8030 §5.3)", m.Urgency)
	}
	m.Topic = h.Get("Topic")
	if len(m.Topic) > 32 || strings.Trim(m.Topic, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		return fail(http.StatusBadRequest, "Topic %q is not at most 32 base64url characters (RFC 8030 §5.4)", m.Topic)
	}

	authz, ok := strings.CutPrefix(h.Get("Authorization"), "vapid ")
	if !ok {
		return fail(http.StatusUnauthorized, "Authorization %q is not vapid", h.Get("Authorization"))
	}
	for part := range strings.SplitSeq(authz, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			m.JWT = v
		case "k":
			m.K = v
		}
	}
	kb, err := base64.RawURLEncoding.DecodeString(m.K)
	if err != nil {
		return fail(http.StatusUnauthorized, "k=: %v", err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), kb)
	if err != nil {
		return fail(http.StatusUnauthorized, "k=: %v", err)
	}
	if sub.key != "" && m.K != sub.key {
		// RFC 8292 §4.2: the key must be the one the subscription was
		// made with.
		return fail(http.StatusForbidden, "k= %s is not the applicationServerKey %s of the subscription", m.K, sub.key)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	origin := scheme + "://" + r.Host
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(m.JWT, claims, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(origin),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(ps.o.Now))
	if err != nil {
		return fail(http.StatusForbidden, "VAPID JWT: %v", err)
	}
	if aud, _ := claims["aud"].(string); aud != origin {
		return fail(http.StatusForbidden, "aud %v is not the string %q", claims["aud"], origin)
	}
	if exp, _ := claims.GetExpirationTime(); exp.After(ps.o.Now().Add(24 * time.Hour)) {
		return fail(http.StatusForbidden, "exp %v is more than 24 hours away", exp)
	}
	subject, _ := claims["sub"].(string)
	if ps.o.Subject != "" && subject != ps.o.Subject {
		return fail(http.StatusForbidden, "sub %q, want %q", subject, ps.o.Subject)
	}
	if u, err := url.Parse(subject); err != nil || !(u.Scheme == "mailto" && u.Opaque != "" || u.Scheme == "https" && u.Host != "") {
		return fail(http.StatusForbidden, "sub %q is not a mailto: or https: URL", subject)
	}
	m.Claims = claims

	body, err := io.ReadAll(io.LimitReader(r.Body, 4097))
	if err != nil || len(body) > 4096 {
		return fail(http.StatusRequestEntityTooLarge, "body of %d bytes, %v", len(body), err)
	}
	pt, err := sub.browser.Decrypt(body)
	if err != nil {
		return fail(http.StatusBadRequest, "decrypt: %v", err)
	}
	m.Plaintext = pt
	return 0
}
