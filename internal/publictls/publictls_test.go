package publictls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePair writes a self-signed pair valid from notBefore to notAfter.
func writePair(t *testing.T, dir, name string, notBefore, notAfter time.Time) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

func served(t *testing.T, k *KeyPair) string {
	t.Helper()
	c, err := k.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.Subject.CommonName
}

func TestExpiredCertificateIsRefusedAtStartAndOnReload(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	goodCert, goodKey := writePair(t, dir, "good.test", now.Add(-time.Hour), now.Add(time.Hour))
	oldCert, oldKey := writePair(t, dir, "old.test", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	if _, err := LoadKeyPair(oldCert, oldKey); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired certificate at start: %v", err)
	}
	k, err := LoadKeyPair(goodCert, goodKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range [][2]string{{oldCert, goodCert}, {oldKey, goodKey}} {
		b, _ := os.ReadFile(f[0])
		os.WriteFile(f[1], b, 0o600)
	}
	if err := k.Reload(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("reload of an expired pair: %v", err)
	}
	if got := served(t, k); got != "good.test" {
		t.Errorf("after a refused reload it serves %s", got)
	}
	os.Remove(goodCert)
	if err := k.Reload(); err == nil {
		t.Error("reload with the certificate file gone succeeded")
	}
	if got := served(t, k); got != "good.test" {
		t.Errorf("after a missing file it serves %s", got)
	}
}

// A certificate that is not valid yet (a clock behind the CA's, a pair
// staged early) is refused like an expired one: it used to be served, and
// every client refused it.
func TestNotYetValidCertificateIsRefusedAtStartAndOnReload(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	goodCert, goodKey := writePair(t, dir, "good.test", now.Add(-time.Hour), now.Add(time.Hour))
	earlyCert, earlyKey := writePair(t, dir, "early.test", now.Add(48*time.Hour), now.Add(96*time.Hour))
	if _, err := LoadKeyPair(earlyCert, earlyKey); err == nil || !strings.Contains(err.Error(), "is not valid before") {
		t.Fatalf("a certificate not valid yet at start: %v", err)
	}
	k, err := LoadKeyPair(goodCert, goodKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range [][2]string{{earlyCert, goodCert}, {earlyKey, goodKey}} {
		b, _ := os.ReadFile(f[0])
		os.WriteFile(f[1], b, 0o600)
	}
	if err := k.Reload(); err == nil || !strings.Contains(err.Error(), "is not valid before") {
		t.Errorf("reload of a pair not valid yet: %v", err)
	}
	if got := served(t, k); got != "good.test" {
		t.Errorf("after a refused reload it serves %s", got)
	}
}

func TestCheckDomain(t *testing.T) {
	for d, ok := range map[string]bool{
		"herald.example.com": true, "xn--bcher-kva.example": true, "herald.example.com.": true,
		"": false, "herald": false, "192.0.2.1": false, "[2001:db8::1]": false, "2001:db8::1": false,
		"*.example.com": false, "herald.example.com:443": false, "https://herald.example.com": false,
	} {
		if err := CheckDomain(d); (err == nil) != ok {
			t.Errorf("CheckDomain(%q) = %v", d, err)
		}
	}
}

func TestChallengeListenerRedirectsToTheAPIPort(t *testing.T) {
	a, err := NewACME(ACMEOptions{Domains: []string{"herald.example.com"}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for port, want := range map[string]string{
		"8750": "https://herald.example.com:8750/v1.0/me?x=1",
		"443":  "https://herald.example.com/v1.0/me?x=1",
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "http://herald.example.com/v1.0/me?x=1", nil)
		a.HTTPHandler(port).ServeHTTP(rec, req)
		if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != want {
			t.Errorf("API on %s: %d to %q, want 301 to %q", port, rec.Code, rec.Header().Get("Location"), want)
		}
	}
	// A challenge path autocert has no token for is not redirected.
	rec := httptest.NewRecorder()
	a.HTTPHandler("8750").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://herald.example.com/.well-known/acme-challenge/nope", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("unknown challenge token: %d", rec.Code)
	}
}
