// Package publictls holds the certificates of a node's public listener (the
// REST API and the web UI): the operator's key pair, reloaded in place so that
// a renewed certificate needs no restart, or certificates obtained through
// ACME (autocert).
package publictls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// KeyPair is the operator's certificate and key, read from two PEM files.
// Reload reads them again; handshakes that begin after it see the new pair,
// while connections already open keep the one they were made with.
type KeyPair struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadKeyPair reads the pair, refusing a key that does not match the
// certificate or a certificate that has expired or is not valid yet.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile}
	c, err := k.read()
	if err != nil {
		return nil, err
	}
	k.cur.Store(c)
	return k, nil
}

func (k *KeyPair) read() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls-cert %s and tls-key %s: %w", k.certFile, k.keyFile, err)
	}
	// LoadX509KeyPair fills Leaf since Go 1.23.
	now := time.Now()
	if now.After(c.Leaf.NotAfter) {
		return nil, fmt.Errorf("tls-cert %s expired on %s", k.certFile, c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	// Every client refuses it as well ("not yet valid"), and a reload
	// would have dropped the good pair for it.
	if now.Before(c.Leaf.NotBefore) {
		return nil, fmt.Errorf("tls-cert %s is not valid before %s, and this machine's clock says %s",
			k.certFile, c.Leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return &c, nil
}

// Reload reads the files again and, if they hold a good pair, serves it
// from the next handshake on. On any error the pair in use stays.
func (k *KeyPair) Reload() error {
	c, err := k.read()
	if err != nil {
		return err
	}
	k.cur.Store(c)
	return nil
}

// Leaf is the certificate being served.
func (k *KeyPair) Leaf() *x509.Certificate { return k.cur.Load().Leaf }

// GetCertificate is the tls.Config hook.
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.cur.Load(), nil
}

// ServerConfig is the TLS configuration of the public listener around a
// certificate hook. http.Server.ServeTLS adds "h2" to NextProtos.
func ServerConfig(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: get}
}

// ACMEOptions configure automatic certificates.
type ACMEOptions struct {
	// Domains are the host names certificates are obtained for; a
	// handshake for any other name is refused.
	Domains []string
	// Email is the contact the CA may write to about the account.
	Email string
	// DirectoryURL is the ACME server; empty: Let's Encrypt's production.
	DirectoryURL string
	// CacheDir keeps the account key and the certificates, so that a
	// restart does not ask the CA again.
	CacheDir string
	// HTTPClient talks to the ACME server; nil: the default client. Tests
	// pass one that trusts their own ACME server.
	HTTPClient *http.Client
}

// ACME obtains and renews certificates for the configured domains.
type ACME struct {
	m *autocert.Manager
	// fallback answers handshakes that name no host (clients that connect
	// by address, such as another node looking up this one's inter-node
	// port): autocert cannot, and they do not verify it anyway.
	fallback *tls.Certificate
}

// NewACME sets up the manager. Nothing is asked of the CA until the first
// handshake for one of the domains.
func NewACME(o ACMEOptions) (*ACME, error) {
	if len(o.Domains) == 0 {
		return nil, errors.New("acme: no domain")
	}
	for _, d := range o.Domains {
		if err := CheckDomain(d); err != nil {
			return nil, err
		}
	}
	fb, err := selfSigned()
	if err != nil {
		return nil, err
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(o.Domains...),
		Cache:      autocert.DirCache(o.CacheDir),
		Email:      o.Email,
	}
	if o.DirectoryURL != "" || o.HTTPClient != nil {
		m.Client = &acme.Client{DirectoryURL: o.DirectoryURL, HTTPClient: o.HTTPClient}
	}
	return &ACME{m: m, fallback: fb}, nil
}

// CheckDomain refuses what no public CA issues a certificate for through
// HTTP-01 or TLS-ALPN-01: addresses, wildcards, names without a dot.
func CheckDomain(d string) error {
	switch {
	case d == "":
		return errors.New("acme-domain: empty name")
	case net.ParseIP(strings.Trim(d, "[]")) != nil:
		return fmt.Errorf("acme-domain %q: an address, not a host name; ACME certificates are for names", d)
	case strings.Contains(d, "*"):
		return fmt.Errorf("acme-domain %q: wildcards need a DNS challenge, which Herald does not do", d)
	case !strings.Contains(strings.Trim(d, "."), "."):
		return fmt.Errorf("acme-domain %q: want a fully qualified host name, such as herald.example.com", d)
	case strings.ContainsAny(d, ":/ "):
		return fmt.Errorf("acme-domain %q: want a bare host name, without scheme, port or path", d)
	}
	return nil
}

// GetCertificate is the tls.Config hook: autocert's for named hosts
// (including TLS-ALPN-01 challenges), the fallback for nameless handshakes.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" {
		return a.fallback, nil
	}
	return a.m.GetCertificate(hello)
}

// ServerConfig is the public listener's TLS configuration, which also
// answers TLS-ALPN-01 challenges when the listener is on port 443.
func (a *ACME) ServerConfig() *tls.Config {
	c := ServerConfig(a.GetCertificate)
	c.NextProtos = []string{"h2", "http/1.1", acme.ALPNProto}
	return c
}

// HTTPHandler answers HTTP-01 challenges on port 80 and sends every other
// request to the same path over HTTPS on httpsPort.
func (a *ACME) HTTPHandler(httpsPort string) http.Handler {
	return a.m.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if httpsPort != "" && httpsPort != "443" {
			host = net.JoinHostPort(host, httpsPort)
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
	}))
}

// Prefetch asks for the certificate of domain now rather than at the first
// visitor's handshake, so that a problem with the CA shows in the log at
// start.
func (a *ACME) Prefetch(domain string) (*x509.Certificate, error) {
	c, err := a.m.GetCertificate(&tls.ClientHelloInfo{ServerName: domain,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256}})
	if err != nil {
		return nil, err
	}
	return c.Leaf, nil
}

// selfSigned makes the throwaway certificate of nameless handshakes.
func selfSigned() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "herald (no server name)"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
