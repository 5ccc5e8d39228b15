// Package apnstest is a loopback stand-in for the APNs provider API, for
// tests: HTTP/2 over TLS, token-based authentication. It checks what Apple
// checks (the provider JWT against the team's key and its age, the apns-*
// headers and how they combine, the payload) and answers as scripted per
// device token.
//
// It imports nothing of package apns, so that it checks the sender against
// the protocol rather than against itself.
package apnstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of Options.
const (
	DefaultKeyID  = "ABC123DEFG"
	DefaultTeamID = "DEF123GHIJ"
	DefaultTopic  = "com.contoso.tasks"
)

// Options configure a Server; zero values take the defaults.
type Options struct {
	// Key is the team's signing key (the .p8); a new one when nil.
	Key    *ecdsa.PrivateKey
	KeyID  string
	TeamID string
	// Topic is the one bundle id the device tokens belong to.
	Topic string
	// Now is the clock tokens are checked against; time.Now when nil.
	Now func() time.Time
}

// Request is one request that passed every check, and its answer.
type Request struct {
	Header   http.Header
	Device   string
	JWT      string
	IssuedAt time.Time
	Body     map[string]any
	Status   int
	At       time.Time
}

// Answer writes one scripted answer.
type Answer func(w http.ResponseWriter)

// Server is the stand-in. Its certificate is self-signed: trust it with
// Client, Certificate or CertPEM.
type Server struct {
	*httptest.Server
	Key                  *ecdsa.PrivateKey
	KeyID, TeamID, Topic string
	t                    testing.TB
	now                  func() time.Time

	mu            sync.Mutex
	seen          []Request
	expiredBefore time.Time
	scripts       map[string]*script
}

type script struct {
	answers []Answer
	n       int
}

// New starts a Server on loopback; it stops when the test ends. Requests
// that break the protocol outright (HTTP/1, a push type that does not
// match its payload) fail t as well as being refused.
func New(t testing.TB, o Options) *Server {
	s := &Server{Key: o.Key, KeyID: o.KeyID, TeamID: o.TeamID, Topic: o.Topic, t: t, now: o.Now,
		scripts: map[string]*script{}}
	if s.Key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s.Key = k
	}
	if s.KeyID == "" {
		s.KeyID = DefaultKeyID
	}
	if s.TeamID == "" {
		s.TeamID = DefaultTeamID
	}
	if s.Topic == "" {
		s.Topic = DefaultTopic
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.EnableHTTP2 = true
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// KeyPEM is the team's key as a .p8 file: PKCS#8 in PEM.
func (s *Server) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(s.Key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// CertPEM is the server's certificate, for a client to trust.
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// Script sets the answers to the next requests for a device token, in
// order; the last one repeats. Without a script a good request gets 200.
func (s *Server) Script(device string, answers ...Answer) {
	s.mu.Lock()
	s.scripts[device] = &script{answers: answers}
	s.mu.Unlock()
}

// ExpireTokensBefore makes provider tokens issued before t
// ExpiredProviderToken, as when the provider's and Apple's clocks disagree.
func (s *Server) ExpireTokensBefore(t time.Time) {
	s.mu.Lock()
	s.expiredBefore = t
	s.mu.Unlock()
}

// Requests returns the requests for a device token that passed every
// check, or all of them when device is empty.
func (s *Server) Requests(device string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.seen {
		if device == "" || r.Device == device {
			out = append(out, r)
		}
	}
	return out
}

// Accept is the answer to a good request: 200 with its apns-id.
func Accept(apnsID string) Answer {
	return func(w http.ResponseWriter) {
		if apnsID != "" {
			w.Header().Set("apns-id", apnsID)
		}
		w.WriteHeader(http.StatusOK)
	}
}

// Error is an APNs error answer with its reason, such as Unregistered.
func Error(code int, reason string) Answer {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code == http.StatusGone {
			fmt.Fprintf(w, `{"reason":%q,"timestamp":%d}`, reason, time.Now().UnixMilli())
			return
		}
		fmt.Fprintf(w, `{"reason":%q}`, reason)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		s.t.Errorf("apnstest: request over HTTP/%d.%d; APNs speaks HTTP/2 only", r.ProtoMajor, r.ProtoMinor)
		Error(400, "BadRequest")(w)
		return
	}
	device, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if r.Method != http.MethodPost {
		Error(405, "MethodNotAllowed")(w)
		return
	}
	if !ok || device == "" {
		Error(404, "BadPath")(w)
		return
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("authorization"), "bearer ")
	if !ok {
		Error(403, "MissingProviderToken")(w)
		return
	}
	var claims jwt.RegisteredClaims
	tok, err := jwt.ParseWithClaims(bearer, &claims, func(*jwt.Token) (any, error) { return &s.Key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(s.TeamID), jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.now))
	if err != nil || tok.Header["kid"] != s.KeyID || claims.IssuedAt == nil {
		s.t.Logf("apnstest: provider token refused: %v", err)
		Error(403, "InvalidProviderToken")(w)
		return
	}
	iat := claims.IssuedAt.Time
	s.mu.Lock()
	expired := s.now().Sub(iat) > time.Hour || iat.Before(s.expiredBefore)
	s.mu.Unlock()
	if expired {
		Error(403, "ExpiredProviderToken")(w)
		return
	}
	h := r.Header
	pushType, prio := h.Get("apns-push-type"), h.Get("apns-priority")
	switch {
	case h.Get("apns-topic") == "":
		Error(400, "MissingTopic")(w)
		return
	case h.Get("apns-topic") != s.Topic:
		Error(400, "DeviceTokenNotForTopic")(w)
		return
	case pushType != "alert" && pushType != "background":
		Error(400, "InvalidPushType")(w)
		return
	case prio != "5" && prio != "10", pushType == "background" && prio != "5":
		Error(400, "BadPriority")(w)
		return
	case len(h.Get("apns-collapse-id")) > 64:
		Error(400, "BadCollapseId")(w)
		return
	case h.Get("apns-id") != "" && !isUUID(h.Get("apns-id")):
		Error(400, "BadMessageId")(w)
		return
	}
	if e := h.Get("apns-expiration"); e != "" {
		if _, err := strconv.ParseInt(e, 10, 64); err != nil {
			Error(400, "BadExpirationDate")(w)
			return
		}
	}
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 8192))
	if len(raw) > 4096 {
		Error(413, "PayloadTooLarge")(w)
		return
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		Error(400, "PayloadEmpty")(w)
		return
	}
	aps, _ := body["aps"].(map[string]any)
	if _, hasAlert := aps["alert"]; aps == nil || (pushType == "alert") != hasAlert ||
		(pushType == "background") != (aps["content-available"] == float64(1)) {
		s.t.Errorf("apnstest: push type %s with aps %v", pushType, aps)
		Error(400, "PayloadEmpty")(w)
		return
	}
	s.mu.Lock()
	answer := Accept(h.Get("apns-id"))
	if sc := s.scripts[device]; sc != nil && len(sc.answers) > 0 {
		answer = sc.answers[min(sc.n, len(sc.answers)-1)]
		sc.n++
	}
	s.mu.Unlock()
	rec := httptest.NewRecorder()
	answer(rec)
	s.mu.Lock()
	s.seen = append(s.seen, Request{Header: h.Clone(), Device: device, JWT: bearer, IssuedAt: iat, Body: body,
		Status: rec.Code, At: time.Now()})
	s.mu.Unlock()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
