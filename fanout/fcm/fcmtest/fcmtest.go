// Package fcmtest is a loopback stand-in for the two Google endpoints an
// FCM HTTP v1 sender talks to, for tests: the OAuth2 token endpoint, which
// checks the JWT-bearer assertion (RFC 7523) against the service account's
// public key, and messages:send, which checks the access token and the
// message, then answers as scripted per device token.
//
// It imports nothing of package fcm, so that it checks the sender against
// the wire format rather than against itself.
package fcmtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Scope is the OAuth2 scope an FCM send needs.
const Scope = "https://www.googleapis.com/auth/firebase.messaging"

// Defaults of Options.
const (
	DefaultProjectID   = "proj-1"
	DefaultClientEmail = "herald@proj-1.iam.gserviceaccount.com"
	DefaultKeyID       = "kid-1"
)

var (
	keyOnce sync.Once
	key     *rsa.PrivateKey
)

// sharedKey is one 2048-bit key per test binary: making one takes long
// enough under -race to matter.
func sharedKey() *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		key = k
	})
	return key
}

// Options configure a Server; zero values take the defaults.
type Options struct {
	ProjectID   string
	ClientEmail string
	KeyID       string
	// ExpiresIn is the lifetime of the access tokens given, in seconds;
	// 3599 when zero.
	ExpiresIn int
}

// Message is the message of a v1 send, in the v1 field names; a request
// with any other field is refused with INVALID_ARGUMENT.
type Message struct {
	Token        string            `json:"token"`
	Data         map[string]string `json:"data"`
	Notification *Notification     `json:"notification,omitempty"`
	Android      Android           `json:"android"`
	// APNs is what FCM passes on to Apple for an iOS device's token.
	APNs *APNs `json:"apns,omitempty"`
}

// APNs is the v1 message's apns block: APNs request headers, and the APNs
// payload, whose aps dictionary FCM hands to Apple as it is.
type APNs struct {
	Headers map[string]string `json:"headers,omitempty"`
	Payload map[string]any    `json:"payload,omitempty"`
}

// Notification is the displayed part of a message.
type Notification struct {
	Title string `json:"title"`
	Body  string `json:"body,omitempty"`
}

// Android is the Android-specific part of a message.
type Android struct {
	Priority     string               `json:"priority"`
	TTL          string               `json:"ttl,omitempty"`
	Notification *AndroidNotification `json:"notification,omitempty"`
}

// AndroidNotification is android.notification, of which Herald sets the
// tag: a notification with the tag of one shown replaces it.
type AndroidNotification struct {
	Tag string `json:"tag,omitempty"`
}

// Send is one messages:send request that passed every check, and the
// status it was answered with (200 unless scripted otherwise).
type Send struct {
	Message Message
	Header  http.Header
	At      time.Time
	Status  int
}

// Answer writes one scripted answer of messages:send.
type Answer func(w http.ResponseWriter)

// Server is the stand-in; its URL is both the FCM endpoint and the base of
// the token endpoint (URL + "/token").
type Server struct {
	*httptest.Server
	ProjectID, ClientEmail, KeyID string
	Key                           *rsa.PrivateKey

	mu        sync.Mutex
	expiresIn int
	valid     map[string]bool // access tokens FCM accepts
	fetches   int
	sends     []Send
	tokenFail int
	onToken   func()
	scripts   map[string]*script
}

type script struct {
	answers []Answer
	n       int
}

// New starts a Server on loopback; it stops when the test ends.
func New(t testing.TB, o Options) *Server {
	s := &Server{ProjectID: o.ProjectID, ClientEmail: o.ClientEmail, KeyID: o.KeyID, Key: sharedKey(),
		expiresIn: o.ExpiresIn, valid: map[string]bool{}, scripts: map[string]*script{}}
	if s.ProjectID == "" {
		s.ProjectID = DefaultProjectID
	}
	if s.ClientEmail == "" {
		s.ClientEmail = DefaultClientEmail
	}
	if s.KeyID == "" {
		s.KeyID = DefaultKeyID
	}
	if s.expiresIn == 0 {
		s.expiresIn = 3599
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", s.send)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// TokenURL is the token endpoint, the token_uri of ServiceAccountJSON.
func (s *Server) TokenURL() string { return s.URL + "/token" }

// ServiceAccountJSON is a service-account key file for the server's
// project, as the Google console issues it.
func (s *Server) ServiceAccountJSON() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(s.Key)
	if err != nil {
		panic(err)
	}
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": s.ProjectID, "private_key_id": s.KeyID,
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": s.ClientEmail, "client_id": "1", "token_uri": s.TokenURL(),
	})
	return b
}

// Script sets the answers to the next sends to a device token, in order;
// the last one repeats. Without a script a valid send gets 200.
func (s *Server) Script(token string, answers ...Answer) {
	s.mu.Lock()
	s.scripts[token] = &script{answers: answers}
	s.mu.Unlock()
}

// OnToken makes fn run first in every token request.
func (s *Server) OnToken(fn func()) {
	s.mu.Lock()
	s.onToken = fn
	s.mu.Unlock()
}

// FailTokenRequests answers the next n token requests with invalid_grant.
func (s *Server) FailTokenRequests(n int) {
	s.mu.Lock()
	s.tokenFail = n
	s.mu.Unlock()
}

// RevokeTokens makes every access token given so far invalid.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	clear(s.valid)
	s.mu.Unlock()
}

// Counts returns the access tokens given and the sends accepted so far.
func (s *Server) Counts() (fetches, sends int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches, len(s.sends)
}

// Sends returns the sends to a device token that passed every check, or
// all of them when token is empty.
func (s *Server) Sends(token string) []Send {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Send
	for _, m := range s.sends {
		if token == "" || m.Message.Token == token {
			out = append(out, m)
		}
	}
	return out
}

// Accept is the answer to a good send: 200 with the message's name.
func Accept() Answer {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"name":"projects/-/messages/0:%d"}`, time.Now().UnixNano())
	}
}

// Error is Google's error answer: status words such as NOT_FOUND and an
// FCM error code such as UNREGISTERED (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode).
func Error(code int, status, fcmCode, msg string) Answer {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		details := "[]"
		if fcmCode != "" {
			details = fmt.Sprintf(`[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":%q}]`, fcmCode)
		}
		fmt.Fprintf(w, `{"error":{"code":%d,"message":%q,"status":%q,"details":%s}}`, code, msg, status, details)
	}
}

func oauthError(w http.ResponseWriter, code int, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"error":"invalid_grant","error_description":%q}`, desc)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	hook := s.onToken
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, 400, "bad grant_type")
		return
	}
	var claims struct {
		jwt.RegisteredClaims
		Scope string `json:"scope"`
	}
	tok, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), &claims,
		func(*jwt.Token) (any, error) { return &s.Key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(s.ClientEmail),
		jwt.WithAudience(s.TokenURL()), jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	if err != nil {
		oauthError(w, 400, "assertion: "+err.Error())
		return
	}
	if claims.Scope != Scope || tok.Header["kid"] != s.KeyID ||
		claims.ExpiresAt.Sub(claims.IssuedAt.Time) != time.Hour {
		oauthError(w, 400, fmt.Sprintf("claims %+v header %v", claims, tok.Header))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokenFail > 0 {
		s.tokenFail--
		oauthError(w, 400, "Invalid JWT Signature.")
		return
	}
	s.fetches++
	at := fmt.Sprintf("ya29.test-%d", s.fetches)
	s.valid[at] = true
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":%q,"expires_in":%d,"token_type":"Bearer"}`, at, s.expiresIn)
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	if p := r.PathValue("project"); p != s.ProjectID {
		Error(403, "PERMISSION_DENIED", "", "wrong project "+p)(w)
		return
	}
	s.mu.Lock()
	ok := s.valid[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	s.mu.Unlock()
	if !ok {
		Error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "Request had invalid authentication credentials.")(w)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		Error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "content type "+ct)(w)
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields() // the sender must use the v1 field names
	var req struct {
		Message Message `json:"message"`
	}
	if err := dec.Decode(&req); err != nil || req.Message.Token == "" || req.Message.Data["id"] == "" || req.Message.Data["type"] == "" {
		Error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", fmt.Sprintf("bad message: %v", err))(w)
		return
	}
	if p := req.Message.Android.Priority; p != "high" && p != "normal" {
		Error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "priority "+p)(w)
		return
	}
	if ttl := req.Message.Android.TTL; ttl != "" && !strings.HasSuffix(ttl, "s") {
		Error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "ttl "+ttl)(w)
		return
	}
	if err := checkAPNs(req.Message.APNs); err != nil {
		Error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "apns: "+err.Error())(w)
		return
	}
	s.mu.Lock()
	answer := Accept()
	if sc := s.scripts[req.Message.Token]; sc != nil && len(sc.answers) > 0 {
		answer = sc.answers[min(sc.n, len(sc.answers)-1)]
		sc.n++
	}
	s.mu.Unlock()
	// The send is recorded before the answer is written, so that a
	// client never sees an answer to a send that Sends does not list.
	rec := httptest.NewRecorder()
	answer(rec)
	s.mu.Lock()
	s.sends = append(s.sends, Send{Message: req.Message, Header: r.Header.Clone(), At: time.Now(), Status: rec.Code})
	s.mu.Unlock()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// checkAPNs refuses what Apple would refuse of the headers and aps
// dictionary FCM passes on: a background push must be priority 5 and
// content-available without an alert; an alert push has an alert.
func checkAPNs(a *APNs) error {
	if a == nil {
		return nil
	}
	for k, v := range a.Headers {
		switch k {
		case "apns-priority":
			if v != "10" && v != "5" && v != "1" {
				return fmt.Errorf("apns-priority %q", v)
			}
		case "apns-push-type":
			if v != "alert" && v != "background" {
				return fmt.Errorf("apns-push-type %q", v)
			}
		case "apns-expiration":
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return fmt.Errorf("apns-expiration %q", v)
			}
		case "apns-collapse-id":
			if len(v) > 64 {
				return fmt.Errorf("apns-collapse-id of %d bytes", len(v))
			}
		default:
			return fmt.Errorf("header %q", k)
		}
	}
	aps, _ := a.Payload["aps"].(map[string]any)
	if aps == nil {
		return errors.New("payload without aps")
	}
	_, hasAlert := aps["alert"]
	switch a.Headers["apns-push-type"] {
	case "background":
		if a.Headers["apns-priority"] != "5" || aps["content-available"] != float64(1) || hasAlert {
			return fmt.Errorf("background push with priority %q and aps %v", a.Headers["apns-priority"], aps)
		}
	case "alert":
		if !hasAlert {
			return fmt.Errorf("alert push with aps %v", aps)
		}
	}
	return nil
}
