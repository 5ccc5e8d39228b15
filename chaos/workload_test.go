//go:build linux

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const (
	appHost = "chaos.example.com"
	// requestTimeout bounds one client request: past it the request counts
	// as unanswered (it may or may not have taken effect).
	requestTimeout = 8 * time.Second
	// maxListKeys: above this many keys a user's feed no longer fits one
	// page, and the clients stop listing it.
	maxListKeys = 900
)

// user is one Herald user of the run, with its device subscriptions.
type user struct {
	idx     int
	upn     string
	token   string
	unsid   string // a live subscription: the X-UNS-ID the application posts with
	hookSub string // the webhook subscription's id, if the user has one
	secret  []byte // its signing key

	mu   sync.Mutex
	keys map[string]string // appNotificationId → notification id ("" until known)
	// order is the keys in the order their first put started.
	order []string
}

func (u *user) addKey(k string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.keys[k]; !ok {
		u.keys[k] = ""
		u.order = append(u.order, k)
	}
}

func (u *user) setID(k, id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.keys[k] = id
}

func (u *user) keyList() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.order...)
}

// knownID picks a key of the user whose id is known, at random.
func (u *user) knownID(r *rand.Rand) (string, string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for range 8 {
		k := u.order[r.Intn(len(u.order))]
		if id := u.keys[k]; id != "" {
			return k, id
		}
	}
	return "", ""
}

// workload is the application, the users, the clients and the subscribers
// of one run, all recording into one history.
type workload struct {
	t        *testing.T
	c        *cluster
	h        *history
	admin    string
	appToken string
	users    []*user
	hook     *httptest.Server
	hookRand *rand.Rand
	hookMu   sync.Mutex
	subs     []*subscriber
	opCount  atomic.Int64
}

// call sends one API request and returns the status and body.
func call(ctx context.Context, hc *http.Client, method, u, token string, body any, hdr map[string]string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// setup makes, through the healthy cluster, the application, the users and
// their subscriptions; retried, since a node may still be settling.
func (w *workload) setup(nUsers, nHooks int) error {
	c := w.c
	base := c.nodes[0].url
	var err error
	if w.admin, err = token(base, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {adminPassword}}); err != nil {
		return err
	}
	// must retries a setup request until it gets want.
	must := func(method, path, tok string, body any, hdr map[string]string, want int, out any) error {
		return pollFor(30*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			st, b, err := call(ctx, probe, method, base+path, tok, body, hdr)
			if err != nil {
				return err
			}
			if st != want {
				return fmt.Errorf("%s %s: %d %s", method, path, st, b)
			}
			if out != nil {
				return json.Unmarshal(b, out)
			}
			return nil
		})
	}
	var app struct {
		AppID string `json:"appId"`
		Creds []struct {
			SecretText string `json:"secretText"`
		} `json:"passwordCredentials"`
	}
	if err := must("POST", "/v1.0/applications", w.admin, map[string]any{"displayName": "Chaos", "targetHostName": appHost}, nil, 201, &app); err != nil {
		return err
	}
	if w.appToken, err = token(base, url.Values{"grant_type": {"client_credentials"}, "client_id": {app.AppID}, "client_secret": {app.Creds[0].SecretText}}); err != nil {
		return err
	}
	w.hookRand = rand.New(rand.NewSource(1))
	w.hook = httptest.NewServer(http.HandlerFunc(w.receive))
	w.t.Cleanup(w.hook.Close)
	for i := range nUsers {
		u := &user{idx: i, upn: fmt.Sprintf("user%d", i), keys: map[string]string{}}
		pw := "password-of-" + u.upn
		if err := must("POST", "/v1.0/users", w.admin, map[string]any{"userPrincipalName": u.upn, "displayName": u.upn, "password": pw, "roles": []string{"user"}}, nil, 201, nil); err != nil {
			return err
		}
		if u.token, err = token(base, url.Values{"grant_type": {"password"}, "username": {u.upn}, "password": {pw}}); err != nil {
			return err
		}
		var sub struct {
			ID     string `json:"id"`
			Secret string `json:"secret"`
		}
		if err := must("POST", "/v1.0/me/notificationSubscriptions", u.token, map[string]any{"targetHostName": appHost, "platformType": "web",
			"deviceName": "live", "channel": map[string]any{"type": "live"}}, nil, 201, &sub); err != nil {
			return err
		}
		u.unsid = sub.ID
		if i < nHooks {
			if err := must("POST", "/v1.0/me/notificationSubscriptions", u.token, map[string]any{"targetHostName": appHost, "platformType": "web",
				"deviceName": "hook", "channel": map[string]any{"type": "webhook", "url": fmt.Sprintf("%s/hook/%d", w.hook.URL, i)}}, nil, 201, &sub); err != nil {
				return err
			}
			u.hookSub = sub.ID
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sub.Secret, "whsec_"))
			if err != nil {
				return fmt.Errorf("webhook secret %q: %w", sub.Secret, err)
			}
			u.secret = key
		}
		w.users = append(w.users, u)
	}
	return nil
}

// receive is the webhook receiver: it verifies the Standard Webhooks
// signature, records the delivery, and fails one in ten so that the
// server retries.
func (w *workload) receive(rw http.ResponseWriter, r *http.Request) {
	var ui int
	if _, err := fmt.Sscanf(r.URL.Path, "/hook/%d", &ui); err != nil || ui >= len(w.users) {
		http.Error(rw, "no such hook", http.StatusNotFound)
		return
	}
	u := w.users[ui]
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	mac := hmac.New(sha256.New, u.secret)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	sigOK := false
	for _, s := range strings.Fields(r.Header.Get("webhook-signature")) {
		sigOK = sigOK || hmac.Equal([]byte(s), []byte(want))
	}
	var msg struct {
		Type         string `json:"type"`
		Notification notif  `json:"notification"`
	}
	json.Unmarshal(body, &msg)
	w.hookMu.Lock()
	status := http.StatusOK
	if w.hookRand.Intn(10) == 0 {
		status = http.StatusServiceUnavailable
	}
	w.hookMu.Unlock()
	w.h.addDelivery(delivery{WebhookID: id, Body: string(body), Type: msg.Type, User: ui, N: msg.Notification, SigOK: sigOK, Answered: status})
	rw.WriteHeader(status)
}

// key is one appNotificationId a client owns.
type key struct {
	name    string
	id      string
	retired bool // a delete was sent: the key is not used again
}

// client is one application-and-user session that writes and reads one
// user's notifications through random nodes.
type client struct {
	w    *workload
	idx  int
	u    *user
	rng  *rand.Rand
	hc   *http.Client
	keys []*key
	seq  int
}

func (cl *client) live() []*key {
	var out []*key
	for _, k := range cl.keys {
		if !k.retired {
			out = append(out, k)
		}
	}
	return out
}

func (cl *client) withID(ks []*key) []*key {
	var out []*key
	for _, k := range ks {
		if k.id != "" {
			out = append(out, k)
		}
	}
	return out
}

// run issues requests until stop is closed.
func (cl *client) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		// Pacing, not synchronization: a short pause between requests,
		// a longer one after a failure, as a client that backs off.
		pause := time.Duration(5+cl.rng.Intn(20)) * time.Millisecond
		if !cl.step() {
			pause = time.Duration(100+cl.rng.Intn(200)) * time.Millisecond
		}
		time.Sleep(pause)
	}
}

var (
	readStates   = []string{"unread", "read"}
	actionStates = []string{"noInteraction", "activated", "dismissed", "snoozed"}
)

// step issues one request; false if it failed.
func (cl *client) step() bool {
	live := cl.live()
	ided := cl.withID(live)
	r := cl.rng.Float64()
	var o *op
	switch {
	case len(live) < 3 || r < 0.04:
		cl.seq++
		k := &key{name: fmt.Sprintf("k%d-%d", cl.idx, cl.seq)}
		cl.keys = append(cl.keys, k)
		o = cl.put(k)
	case r < 0.42:
		o = cl.put(live[cl.rng.Intn(len(live))])
	case r < 0.60 && len(ided) > 0:
		o = cl.patch(ided[cl.rng.Intn(len(ided))])
	case r < 0.67 && len(ided) > 0:
		o = cl.remove(ided[cl.rng.Intn(len(ided))])
	case r < 0.92:
		o = cl.get()
	default:
		o = cl.list()
	}
	return o == nil || (o.Status >= 200 && o.Status < 500)
}

func (cl *client) node() int { return cl.rng.Intn(len(cl.w.c.nodes)) }

// do runs one recorded request.
func (cl *client) do(o *op, method, path, token string, body any, hdr map[string]string) []byte {
	w := cl.w
	w.h.begin(o)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	st, b, err := call(ctx, cl.hc, method, w.c.nodes[o.Node].url+path, token, body, hdr)
	w.h.end(o)
	w.opCount.Add(1)
	classify(o, st, b, err)
	return b
}

// classify records the answer of o, and whether it says that the write
// did not happen.
func classify(o *op, st int, b []byte, err error) {
	o.Status = st
	var ne *net.OpError
	if err != nil {
		o.Err = err.Error()
		o.NotApplied = errors.As(err, &ne) && ne.Op == "dial"
		return
	}
	if st >= 300 {
		var e apiError
		json.Unmarshal(b, &e)
		o.Err = e.Error.Code + ": " + e.Error.Message
		o.NotApplied = (st == http.StatusServiceUnavailable &&
			(strings.HasPrefix(e.Error.Message, "The request was not committed") || strings.HasPrefix(e.Error.Message, "The write was not committed"))) ||
			diskFullRefusal(st, e)
	}
}

func decodeNotif(o *op, b []byte) {
	if !o.acked() || len(b) == 0 {
		return
	}
	var n notif
	if err := json.Unmarshal(b, &n); err != nil {
		o.Err = "undecodable answer: " + err.Error()
		return
	}
	o.Result = &n
}

func (cl *client) put(k *key) *op {
	cl.seq++
	o := &op{Client: cl.idx, Node: cl.node(), Kind: opPut, User: cl.u.idx, Key: k.name, NID: k.id,
		Content: fmt.Sprintf("v%d-%d", cl.idx, cl.seq)}
	cl.u.addKey(k.name)
	b := cl.do(o, "POST", "/v1.0/me/notifications", cl.w.appToken,
		map[string]any{"appNotificationId": k.name, "payload": map[string]any{"rawContent": o.Content}},
		map[string]string{"X-UNS-ID": cl.u.unsid})
	decodeNotif(o, b)
	if o.Result != nil && o.Result.ID != "" {
		k.id = o.Result.ID
		cl.u.setID(k.name, k.id)
	}
	return o
}

func (cl *client) patch(k *key) *op {
	o := &op{Client: cl.idx, Node: cl.node(), Kind: opPatch, User: cl.u.idx, Key: k.name, NID: k.id,
		Read: readStates[cl.rng.Intn(2)], Action: actionStates[cl.rng.Intn(4)]}
	b := cl.do(o, "PATCH", "/v1.0/me/notifications/"+k.id, cl.u.token,
		map[string]any{"readState": o.Read, "userActionState": o.Action}, nil)
	decodeNotif(o, b)
	return o
}

func (cl *client) remove(k *key) *op {
	o := &op{Client: cl.idx, Node: cl.node(), Kind: opDelete, User: cl.u.idx, Key: k.name, NID: k.id}
	k.retired = true
	cl.do(o, "DELETE", "/v1.0/me/notifications/"+k.id, cl.u.token, nil, nil)
	return o
}

var strong = map[string]string{"ConsistencyLevel": "strong"}

// get reads a notification of the user (any client's) with a strong read.
func (cl *client) get() *op {
	k, id := cl.u.knownID(cl.rng)
	if id == "" {
		return nil
	}
	o := &op{Client: cl.idx, Node: cl.node(), Kind: opGet, User: cl.u.idx, Key: k, NID: id}
	b := cl.do(o, "GET", "/v1.0/me/notifications/"+id, cl.u.token, nil, strong)
	decodeNotif(o, b)
	return o
}

// list reads the user's whole feed, deleted notifications included, with a
// strong read.
func (cl *client) list() *op {
	keys := cl.u.keyList()
	if len(keys) > maxListKeys {
		return nil
	}
	o := &op{Client: cl.idx, Node: cl.node(), Kind: opList, User: cl.u.idx, ListKeys: keys}
	b := cl.do(o, "GET", "/v1.0/me/notifications?status=any&$top=1000", cl.u.token, nil, strong)
	if !o.acked() {
		return o
	}
	var page struct {
		Value []notif `json:"value"`
		Next  string  `json:"@odata.nextLink"`
	}
	if err := json.Unmarshal(b, &page); err != nil || page.Next != "" {
		o.Err = fmt.Sprintf("undecodable or paged answer (%v)", err)
		o.Status = 0 // not usable as a read
		return o
	}
	o.List = page.Value
	return o
}

// subscriber holds one live stream (SSE or WebSocket) of a user open across
// faults: it reconnects to a random node with its last cursor.
type subscriber struct {
	name string
	u    *user
	ws   bool
	c    *cluster
	rng  *rand.Rand

	mu       sync.Mutex
	events   []event
	resync   bool
	connects int
	lastErr  string
	err      error // a protocol error: an event the harness cannot read
}

func (s *subscriber) cursor() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) == 0 {
		return "c0" // the beginning of the change log: the run checks all of it
	}
	return s.events[len(s.events)-1].Cursor
}

func (s *subscriber) add(e event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

func (s *subscriber) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *subscriber) seen(nid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resync || s.err != nil {
		return true // nothing more to wait for
	}
	for i := len(s.events) - 1; i >= 0; i-- {
		if s.events[i].NID == nid {
			return true
		}
	}
	return false
}

var errResync = errors.New("resyncRequired")

// run keeps the stream open until ctx ends.
func (s *subscriber) run(ctx context.Context) {
	for ctx.Err() == nil {
		n := s.rng.Intn(len(s.c.nodes))
		s.mu.Lock()
		s.connects++
		s.mu.Unlock()
		var err error
		if s.ws {
			err = s.streamWS(ctx, n)
		} else {
			err = s.streamSSE(ctx, n)
		}
		if errors.Is(err, errResync) {
			s.mu.Lock()
			s.resync = true
			s.lastErr = err.Error()
			s.mu.Unlock()
			return
		}
		if err != nil {
			s.mu.Lock()
			s.lastErr = err.Error()
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond): // reconnect delay, as EventSource's retry
		}
	}
}

func (s *subscriber) streamSSE(ctx context.Context, n int) error {
	req, err := http.NewRequestWithContext(ctx, "GET", s.c.nodes[n].url+"/v1.0/me/notifications/stream", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.u.token)
	req.Header.Set("Last-Event-ID", s.cursor())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusGone {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%w: n%d answered 410 to %s: %s", errResync, n+1, req.Header.Get("Last-Event-ID"), b)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("stream: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var typ, id string
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			switch typ {
			case "resyncRequired":
				return errResync
			case "shutdown":
				return errors.New("shutdown event")
			case "created", "updated", "deleted":
				e, err := newEvent(id, typ, data, n)
				if err != nil {
					s.fail(err)
					return err
				}
				s.add(e)
			}
			typ, id, data = "", "", nil
		case strings.HasPrefix(line, "event:"):
			typ = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "id:"):
			id = strings.TrimSpace(line[len("id:"):])
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(line[len("data:"):], " ")...)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

func (s *subscriber) streamWS(ctx context.Context, n int) error {
	u := "ws://" + s.c.nodes[n].httpAddr + "/v1.0/me/notifications/stream?lastEventId=" + url.QueryEscape(s.cursor())
	dctx, cancel := context.WithTimeout(ctx, requestTimeout)
	conn, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + s.u.token}}})
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusGone {
			return fmt.Errorf("%w: n%d answered 410 to %s", errResync, n+1, s.cursor())
		}
		return err
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return err
		}
		var f struct {
			Type         string          `json:"type"`
			Cursor       string          `json:"cursor"`
			Notification json.RawMessage `json:"notification"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			s.fail(fmt.Errorf("websocket frame %s: %w", b, err))
			return err
		}
		if f.Type == "resyncRequired" {
			return errResync
		}
		e, err := newEvent(f.Cursor, f.Type, f.Notification, n)
		if err != nil {
			s.fail(err)
			return err
		}
		s.add(e)
	}
}
