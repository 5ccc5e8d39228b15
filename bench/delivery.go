package bench

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// receiver is a loopback endpoint for Subscriptions webPush or webhook
// subscriptions, at /e/<i>. It checks each request as the real party
// would (a push service: VAPID authorization, aes128gcm, TTL; a webhook
// receiver: the Standard Webhooks signature of every request), counts it,
// and answers 201 (push) or 204 (webhook).
type receiver struct {
	srv  *http.Server
	url  string
	kind string
	subs []*endpoint

	// got counts distinct deliveries; dups the repeats (delivery is at
	// least once), told apart by endpoint and webhook-id, or endpoint and
	// Topic (derived from the appNotificationId, unique per send).
	got, dups, bad, decrypted atomic.Int64
	mu                        sync.Mutex
	seen                      map[string]bool
	lat                       []time.Duration
	lastErr                   atomic.Value
}

type endpoint struct {
	key    *ecdh.PrivateKey // webPush: the browser's p256dh key
	auth   []byte           // webPush: the authentication secret
	secret []byte           // webhook: the signing key
	n      atomic.Int64
}

// decryptEvery: a push service does not decrypt; a browser does. The
// bench plays both, but decrypting every message would take the cores the
// node is measured on, so it decrypts each endpoint's first message and
// every decryptEvery-th after it; it checks every message's headers.
const decryptEvery = 16

func startReceiver(kind string, n int) (*receiver, error) {
	r := &receiver{kind: kind, subs: make([]*endpoint, n), seen: map[string]bool{}}
	for i := range r.subs {
		ep := &endpoint{}
		if kind == "webpush" {
			k, err := ecdh.P256().GenerateKey(rand.Reader)
			if err != nil {
				return nil, err
			}
			ep.key, ep.auth = k, make([]byte, 16)
			rand.Read(ep.auth)
		}
		r.subs[i] = ep
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.url = "http://" + l.Addr().String()
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve)}
	go r.srv.Serve(l)
	return r, nil
}

func (r *receiver) close() { r.srv.Close() }

func (r *receiver) endpointURL(i int) string { return r.url + "/e/" + strconv.Itoa(i) }

func (r *receiver) fail(w http.ResponseWriter, status int, err error) {
	r.bad.Add(1)
	r.lastErr.Store(err.Error())
	w.WriteHeader(status)
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	i, err := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/e/"))
	if err != nil || i < 0 || i >= len(r.subs) || req.Method != http.MethodPost {
		r.fail(w, http.StatusNotFound, fmt.Errorf("%s %s", req.Method, req.URL.Path))
		return
	}
	ep := r.subs[i]
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
	if err != nil {
		r.fail(w, http.StatusBadRequest, err)
		return
	}
	var payload []byte
	if r.kind == "webpush" {
		h := req.Header
		a := h.Get("Authorization")
		if !strings.HasPrefix(a, "vapid t=") || !strings.Contains(a, ", k=") || h.Get("Content-Encoding") != "aes128gcm" || h.Get("TTL") == "" {
			r.fail(w, http.StatusBadRequest, fmt.Errorf("not a Web Push request: Authorization %.20q, Content-Encoding %q, TTL %q",
				a, h.Get("Content-Encoding"), h.Get("TTL")))
			return
		}
		if n := ep.n.Add(1); n <= 4 || n%decryptEvery == 0 {
			if payload, err = decryptPush(body, ep.key, ep.auth); err != nil {
				r.fail(w, http.StatusBadRequest, fmt.Errorf("decrypt: %w", err))
				return
			}
			r.decrypted.Add(1)
		}
	} else {
		if err := verifyWebhook(ep.secret, req.Header, body); err != nil {
			r.fail(w, http.StatusUnauthorized, err)
			return
		}
		payload = body
	}
	key := req.URL.Path + " " + req.Header.Get("webhook-id")
	if r.kind == "webpush" {
		key = req.URL.Path + " " + req.Header.Get("Topic")
	}
	r.mu.Lock()
	dup := r.seen[key]
	r.seen[key] = true
	r.mu.Unlock()
	if dup {
		r.dups.Add(1)
	} else {
		r.got.Add(1)
	}
	if payload != nil && !dup {
		if _, sent, ok := parseMark(payload); ok {
			r.mu.Lock()
			r.lat = append(r.lat, at.Sub(time.Unix(0, sent)))
			r.mu.Unlock()
		}
	}
	if r.kind == "webpush" {
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
}

// decryptPush is the browser's side of RFC 8291 (aes128gcm of RFC 8188,
// one record, the sender's public key as the keyid).
func decryptPush(body []byte, ua *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("short body")
	}
	salt, idlen := body[:16], int(body[20])
	if binary.BigEndian.Uint32(body[16:20]) < 18 || idlen != 65 || len(body) < 21+idlen {
		return nil, errors.New("bad header")
	}
	as, err := ecdh.P256().NewPublicKey(body[21 : 21+idlen])
	if err != nil {
		return nil, err
	}
	shared, err := ua.ECDH(as)
	if err != nil {
		return nil, err
	}
	info := append(append([]byte("WebPush: info\x00"), ua.PublicKey().Bytes()...), as.Bytes()...)
	ikm, err := hkdf.Key(sha256.New, shared, auth, string(info), 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	pt, err := gcm.Open(nil, nonce, body[21+idlen:], nil)
	if err != nil {
		return nil, err
	}
	// The last record ends with 0x02 and any zero padding.
	end := len(pt) - 1
	for end >= 0 && pt[end] == 0 {
		end--
	}
	if end < 0 || pt[end] != 2 {
		return nil, errors.New("no last-record delimiter")
	}
	return pt[:end], nil
}

// verifyWebhook checks a Standard Webhooks signature: base64 HMAC-SHA256
// of "id.timestamp.body" under the secret, one of the space-separated
// "v1,..." values of webhook-signature, with a timestamp within 5 minutes.
func verifyWebhook(secret []byte, h http.Header, body []byte) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return fmt.Errorf("webhook-timestamp %q is not now", ts)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		v, ok := strings.CutPrefix(s, "v1,")
		if !ok {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(v)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no webhook-signature matches")
}

func webPush(ctx context.Context, e *env, res *Result) error {
	return deliveries(ctx, e, res, "webpush")
}
func webhook(ctx context.Context, e *env, res *Result) error {
	return deliveries(ctx, e, res, "webhook")
}

// deliveries: one user with Subscriptions webPush or webhook subscriptions
// at a loopback receiver; Concurrency senders post notifications for
// Duration, each waiting while more than 32 notifications' deliveries are
// outstanding (the node keeps pace, or the run says how far it fell
// behind); then the run waits for every delivery. Rate is deliveries/s
// from the first send to the last delivery.
func deliveries(ctx context.Context, e *env, res *Result, kind string) error {
	o := e.o
	prog := newProgress(o.Progress, e.rss)
	defer prog.close()
	started := time.Now()
	rc, err := startReceiver(kind, o.Subscriptions)
	if err != nil {
		return err
	}
	defer rc.close()
	f, err := newFixture(ctx, e)
	if err != nil {
		return err
	}
	defer f.cleanup()
	if err := f.addUsers(ctx, 1, prog); err != nil {
		return err
	}
	prog.phase("subscribe")
	if err := parallel(ctx, o.Subscriptions, 8, func(i int) error {
		ep := rc.subs[i]
		var ch map[string]any
		if kind == "webpush" {
			ch = map[string]any{"type": "webPush", "endpoint": rc.endpointURL(i), "expirationTime": nil,
				"keys": map[string]string{"p256dh": base64.RawURLEncoding.EncodeToString(ep.key.PublicKey().Bytes()),
					"auth": base64.RawURLEncoding.EncodeToString(ep.auth)}}
		} else {
			ch = map[string]any{"type": "webhook", "url": rc.endpointURL(i)}
		}
		sub, err := f.subscribe(ctx, 0, ch)
		if err != nil {
			return err
		}
		if kind == "webhook" {
			s, _ := sub["secret"].(string)
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
			if err != nil || s == "" {
				return fmt.Errorf("webhook subscription: secret %q", s)
			}
			ep.secret = key
		}
		return nil
	}); err != nil {
		return err
	}
	res.SetupSeconds = time.Since(started).Seconds()
	u := f.users[0]
	hc := newLoadClient(o.Concurrency)
	defer hc.CloseIdleConnections()
	subs := int64(o.Subscriptions)
	// The sample's deliveries are waited for and then left out.
	status, header, body, err := sample(ctx, hc, e.url(0), f.sendCall(u, 0, time.Now()), http.StatusCreated)
	if err != nil {
		return fmt.Errorf("a first notification: %w", err)
	}
	waitCount(ctx, &rc.got, subs, 30*time.Second)
	if err := measureCeiling(ctx, res, prog, o.Concurrency, o.Duration, "POST requests/s", status, header, body,
		func(ctx context.Context, hc *http.Client, base string, w int, i int64) error {
			_, err := do(ctx, hc, base, f.sendCall(u, i, time.Now()), http.StatusCreated)
			return err
		}); err != nil {
		return err
	}
	base := rc.got.Load()
	rc.mu.Lock()
	rc.lat = nil
	rc.mu.Unlock()
	e.rss.reset(ctx)

	var sentOK atomic.Int64
	const window = 32
	prog.phase(kind)
	prog.show(func() string {
		got := rc.got.Load() - base
		return fmt.Sprintf("deliveries %d of %d  rejected %d", got, sentOK.Load()*subs, rc.bad.Load())
	})
	profiled := e.profileLoad(ctx, kind, o.Duration, res)
	start := time.Now()
	end := start.Add(o.Duration)
	_, ok, failed, _ := closedLoop(ctx, o.Concurrency, o.Duration, prog, func(ctx context.Context, w int, i int64) error {
		for sentOK.Load()*subs-(rc.got.Load()-base) > window*subs && ctx.Err() == nil {
			if time.Now().After(end) {
				return errStop
			}
			time.Sleep(time.Millisecond)
		}
		_, err := do(ctx, hc, e.url(0), f.sendCall(u, i, time.Now()), http.StatusCreated)
		if err == nil {
			sentOK.Add(1)
		}
		return err
	})
	expected := ok * subs
	waitCount(ctx, &rc.got, base+expected, 30*time.Second)
	elapsed := time.Since(start)
	received := rc.got.Load() - base
	if err := profiled(); err != nil {
		return err
	}
	rc.mu.Lock()
	p := summarize(rc.lat)
	rc.mu.Unlock()
	res.Unit, res.LatencyOf = "deliveries/s", "POST→delivery at the receiver"
	if kind == "webpush" {
		res.LatencyOf += fmt.Sprintf(" (the decrypted 1 in %d)", decryptEvery)
		res.Decrypted = rc.decrypted.Load()
	}
	res.Rate = float64(received) / elapsed.Seconds()
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = p.p50, p.p90, p.p99, p.max
	res.Requests = ok + failed
	res.Errors = failed + rc.bad.Load()
	res.Expected, res.Received, res.Duplicates = expected, received, rc.dups.Load()
	if v, _ := rc.lastErr.Load().(string); v != "" {
		fmt.Fprintf(o.Progress, "receiver rejected %d requests; the last: %s\n", rc.bad.Load(), v)
	}
	return nil
}

// waitCount waits until n reaches want, or within passes with no change.
func waitCount(ctx context.Context, n *atomic.Int64, want int64, within time.Duration) {
	last, lastAt := int64(-1), time.Now()
	for ctx.Err() == nil && n.Load() < want {
		if v := n.Load(); v != last {
			last, lastAt = v, time.Now()
		} else if time.Since(lastAt) > within {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}
