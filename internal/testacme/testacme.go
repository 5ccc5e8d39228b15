// Package testacme is a small ACME CA (RFC 8555) on loopback for tests of
// automatic certificates: accounts, orders, HTTP-01 validation against the
// node's challenge listener, finalisation and issuance by a test CA. Every
// request's JWS signature is checked (ES256, the key autocert makes), and
// nonces are single-use, as a real CA would have it.
package testacme

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testcerts"
)

// Server is the CA. Its directory is at DirectoryURL.
type Server struct {
	t   testing.TB
	ca  *testcerts.CA
	srv *httptest.Server
	// challengeAddr is where HTTP-01 validation connects for a domain
	// (the host:port of the node's challenge listener): a real CA would
	// resolve the name and go to port 80.
	challengeAddr func(domain string) string

	mu       sync.Mutex
	nonces   map[string]bool
	accounts map[string]*ecdsa.PublicKey // account URL → key
	orders   map[string]*order
	authzs   map[string]*authz
	certs    map[string][]byte // certificate URL → PEM chain
	next     int
	// Validations counts HTTP-01 checks that passed; Issued the
	// certificates signed.
	validations, issued int
}

type order struct {
	Status         string       `json:"status"`
	Expires        string       `json:"expires"`
	Identifiers    []identifier `json:"identifiers"`
	Authorizations []string     `json:"authorizations"`
	Finalize       string       `json:"finalize"`
	Certificate    string       `json:"certificate,omitempty"`
	url            string
}

type identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type authz struct {
	Status     string       `json:"status"`
	Expires    string       `json:"expires"`
	Identifier identifier   `json:"identifier"`
	Challenges []*challenge `json:"challenges"`
	order      *order
	thumbprint string
}

type challenge struct {
	Type   string `json:"type"`
	URL    string `json:"url"`
	Token  string `json:"token"`
	Status string `json:"status"`
	authz  *authz
}

// New starts the CA on loopback until the test ends.
func New(t testing.TB, ca *testcerts.CA, challengeAddr func(domain string) string) *Server {
	s := &Server{t: t, ca: ca, challengeAddr: challengeAddr, nonces: map[string]bool{},
		accounts: map[string]*ecdsa.PublicKey{}, orders: map[string]*order{}, authzs: map[string]*authz{},
		certs: map[string][]byte{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// DirectoryURL is what --acme-directory names.
func (s *Server) DirectoryURL() string { return s.srv.URL + "/acme/directory" }

// Close stops the CA, as an unreachable one would be.
func (s *Server) Close() { s.srv.Close() }

// Counts returns the HTTP-01 validations that passed and the certificates
// issued.
func (s *Server) Counts() (validations, issued int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.validations, s.issued
}

func (s *Server) url(kind string) string {
	s.next++
	return fmt.Sprintf("%s/acme/%s/%d", s.srv.URL, kind, s.next)
}

func (s *Server) nonce(w http.ResponseWriter) {
	n := rand.Text()
	s.nonces[n] = true
	w.Header().Set("Replay-Nonce", n)
}

func problem(w http.ResponseWriter, status int, typ, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "urn:ietf:params:acme:error:" + typ, "detail": detail})
}

func reply(w http.ResponseWriter, status int, location string, v any) {
	if location != "" {
		w.Header().Set("Location", location)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nonce(w)
	base := s.srv.URL + "/acme/"
	switch {
	case r.URL.Path == "/acme/directory":
		reply(w, http.StatusOK, "", map[string]any{"newNonce": base + "new-nonce", "newAccount": base + "new-account",
			"newOrder": base + "new-order", "revokeCert": base + "revoke", "keyChange": base + "key-change",
			"meta": map[string]any{"termsOfService": base + "terms"}})
		return
	case r.URL.Path == "/acme/new-nonce":
		w.WriteHeader(http.StatusOK)
		return
	case r.Method != http.MethodPost:
		problem(w, http.StatusMethodNotAllowed, "malformed", "POST only")
		return
	}
	key, kid, payload, err := s.verify(r)
	if err != nil {
		if strings.Contains(err.Error(), "nonce") {
			problem(w, http.StatusBadRequest, "badNonce", err.Error())
		} else {
			problem(w, http.StatusUnauthorized, "unauthorized", err.Error())
		}
		return
	}
	full := s.srv.URL + r.URL.Path
	switch {
	case r.URL.Path == "/acme/new-account":
		for u, k := range s.accounts {
			if k.Equal(key) {
				reply(w, http.StatusOK, u, map[string]any{"status": "valid"})
				return
			}
		}
		u := s.url("acct")
		s.accounts[u] = key
		reply(w, http.StatusCreated, u, map[string]any{"status": "valid"})
	case r.URL.Path == "/acme/new-order":
		var req struct{ Identifiers []identifier }
		if err := json.Unmarshal(payload, &req); err != nil || len(req.Identifiers) == 0 {
			problem(w, http.StatusBadRequest, "malformed", "identifiers")
			return
		}
		o := &order{Status: "pending", Expires: time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
			Identifiers: req.Identifiers, Finalize: s.url("finalize"), url: s.url("order")}
		for _, id := range req.Identifiers {
			a := &authz{Status: "pending", Expires: o.Expires, Identifier: id, order: o, thumbprint: thumbprint(s.accounts[kid])}
			c := &challenge{Type: "http-01", URL: s.url("chall"), Token: token(), Status: "pending", authz: a}
			a.Challenges = []*challenge{c}
			au := s.url("authz")
			s.authzs[au] = a
			s.authzs[c.URL] = a
			o.Authorizations = append(o.Authorizations, au)
		}
		s.orders[o.url] = o
		s.orders[o.Finalize] = o
		reply(w, http.StatusCreated, o.url, o)
	case strings.HasPrefix(r.URL.Path, "/acme/order/"):
		o, ok := s.orders[full]
		if !ok {
			problem(w, http.StatusNotFound, "malformed", "no such order")
			return
		}
		reply(w, http.StatusOK, o.url, o)
	case strings.HasPrefix(r.URL.Path, "/acme/authz/"):
		a, ok := s.authzs[full]
		if !ok {
			problem(w, http.StatusNotFound, "malformed", "no such authorization")
			return
		}
		var req struct{ Status string }
		if json.Unmarshal(payload, &req) == nil && req.Status == "deactivated" {
			a.Status = "deactivated"
		}
		reply(w, http.StatusOK, "", a)
	case strings.HasPrefix(r.URL.Path, "/acme/chall/"):
		a, ok := s.authzs[full]
		if !ok {
			problem(w, http.StatusNotFound, "malformed", "no such challenge")
			return
		}
		c := a.Challenges[0]
		if c.Status == "pending" && len(payload) > 0 {
			// Validate as the CA would, while the client waits.
			s.mu.Unlock()
			err := s.validate(a.Identifier.Value, c.Token, a.thumbprint)
			s.mu.Lock()
			if err != nil {
				s.t.Logf("testacme: HTTP-01 for %s failed: %v", a.Identifier.Value, err)
				c.Status, a.Status = "invalid", "invalid"
			} else {
				s.validations++
				c.Status, a.Status = "valid", "valid"
				s.orderReady(a.order)
			}
		}
		reply(w, http.StatusOK, "", c)
	case strings.HasPrefix(r.URL.Path, "/acme/finalize/"):
		o, ok := s.orders[full]
		if !ok || o.Status != "ready" {
			problem(w, http.StatusForbidden, "orderNotReady", "the order is not ready")
			return
		}
		var req struct{ CSR string }
		der, err := base64.RawURLEncoding.DecodeString(func() string { json.Unmarshal(payload, &req); return req.CSR }())
		csr, err2 := x509.ParseCertificateRequest(der)
		if err != nil || err2 != nil || csr.CheckSignature() != nil || !sameNames(csr.DNSNames, o.Identifiers) {
			problem(w, http.StatusBadRequest, "badCSR", fmt.Sprintf("csr: %v %v", err, err2))
			return
		}
		leaf := s.ca.Sign(s.t, csr)
		caPEM, err := os.ReadFile(s.ca.File)
		if err != nil {
			problem(w, http.StatusInternalServerError, "serverInternal", err.Error())
			return
		}
		var chain bytes.Buffer
		pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: leaf})
		chain.Write(caPEM)
		o.Certificate = s.url("cert")
		s.certs[o.Certificate] = chain.Bytes()
		o.Status = "valid"
		s.issued++
		reply(w, http.StatusOK, o.url, o)
	case strings.HasPrefix(r.URL.Path, "/acme/cert/"):
		chain, ok := s.certs[full]
		if !ok {
			problem(w, http.StatusNotFound, "malformed", "no such certificate")
			return
		}
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.Write(chain)
	default:
		problem(w, http.StatusNotFound, "malformed", "unknown resource "+r.URL.Path)
	}
}

func (s *Server) orderReady(o *order) {
	for _, u := range o.Authorizations {
		if s.authzs[u].Status != "valid" {
			return
		}
	}
	o.Status = "ready"
}

func sameNames(names []string, ids []identifier) bool {
	if len(names) != len(ids) {
		return false
	}
	for i, id := range ids {
		if names[i] != id.Value {
			return false
		}
	}
	return true
}

func token() string { return rand.Text() }

// validate fetches the key authorisation from the node's challenge
// listener, with the domain as the Host, as a CA's HTTP-01 check does.
func (s *Server) validate(domain, token, thumbprint string) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+s.challengeAddr(domain)+"/.well-known/acme-challenge/"+token, nil)
	if err != nil {
		return err
	}
	req.Host = domain
	c := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<12))
	if want := token + "." + thumbprint; resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != want {
		return fmt.Errorf("%s: %q, want %q", resp.Status, b, want)
	}
	return nil
}

// verify checks the request's JWS: signature, single-use nonce, URL, and
// the key (a new account's jwk, or an account's kid).
func (s *Server) verify(r *http.Request) (key *ecdsa.PublicKey, kid string, payload []byte, err error) {
	var msg struct{ Protected, Payload, Signature string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&msg); err != nil {
		return nil, "", nil, fmt.Errorf("body: %w", err)
	}
	hb, err := base64.RawURLEncoding.DecodeString(msg.Protected)
	if err != nil {
		return nil, "", nil, err
	}
	var h struct {
		Alg, Nonce, URL, Kid string
		JWK                  *struct{ Crv, Kty, X, Y string }
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, "", nil, err
	}
	if !s.nonces[h.Nonce] {
		return nil, "", nil, fmt.Errorf("nonce %q was not issued or was used", h.Nonce)
	}
	delete(s.nonces, h.Nonce)
	if h.URL != s.srv.URL+r.URL.Path {
		return nil, "", nil, fmt.Errorf("url %q signed for %q", h.URL, r.URL.Path)
	}
	if h.Alg != "ES256" {
		return nil, "", nil, fmt.Errorf("alg %s: this CA takes ES256", h.Alg)
	}
	switch {
	case h.JWK != nil && r.URL.Path == "/acme/new-account":
		x, errX := base64.RawURLEncoding.DecodeString(h.JWK.X)
		y, errY := base64.RawURLEncoding.DecodeString(h.JWK.Y)
		if h.JWK.Kty != "EC" || h.JWK.Crv != "P-256" || errX != nil || errY != nil {
			return nil, "", nil, fmt.Errorf("jwk %+v", h.JWK)
		}
		key = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	case h.Kid != "":
		if key = s.accounts[h.Kid]; key == nil {
			return nil, "", nil, fmt.Errorf("unknown account %q", h.Kid)
		}
		kid = h.Kid
	default:
		return nil, "", nil, fmt.Errorf("neither jwk (new accounts) nor kid")
	}
	sig, err := base64.RawURLEncoding.DecodeString(msg.Signature)
	if err != nil || len(sig) != 64 {
		return nil, "", nil, fmt.Errorf("signature of %d bytes", len(sig))
	}
	digest := sha256.Sum256([]byte(msg.Protected + "." + msg.Payload))
	if !ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return nil, "", nil, fmt.Errorf("bad signature")
	}
	payload, err = base64.RawURLEncoding.DecodeString(msg.Payload)
	return key, kid, payload, err
}

// thumbprint is the RFC 7638 thumbprint of an account key.
func thumbprint(k *ecdsa.PublicKey) string {
	if k == nil {
		return ""
	}
	pad := func(b []byte) []byte { return append(make([]byte, 32-len(b)), b...) }
	jwk := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`,
		base64.RawURLEncoding.EncodeToString(pad(k.X.Bytes())), base64.RawURLEncoding.EncodeToString(pad(k.Y.Bytes())))
	sum := sha256.Sum256([]byte(jwk))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
