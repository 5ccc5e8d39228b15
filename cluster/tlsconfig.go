package cluster

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
	"os"
	"time"
)

// MinKeyLength is the shortest cluster key a node accepts: 32 characters
// from `herald cluster key` carry well over 128 bits.
const MinKeyLength = 32

// CheckKey refuses a cluster key too short to resist guessing, saying how
// to make a good one. The empty key (no cluster) passes.
func CheckKey(key string) error {
	if key != "" && len(key) < MinKeyLength {
		return fmt.Errorf("--cluster-key is %d characters long; it needs at least %d: make one with `herald cluster key` and give the same key to every node",
			len(key), MinKeyLength)
	}
	return nil
}

// TLSFiles are the operator's certificate, its private key and the CA that
// signs every node's certificate (--cluster-tls-cert, -key, -ca).
type TLSFiles struct {
	Cert, Key, CA string
}

func (f TLSFiles) set() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// tlsConfigs builds the acceptor's and the dialer's TLS 1.3 configurations.
//
// With the operator's files both sides present their certificate and
// verify the other's chain against the CA. The host name is not checked:
// nodes dial one another by IP and are recorded under whatever address the
// operator gave, so the CA's signature is the identity.
//
// Without them each node makes a throwaway self-signed certificate: it
// gives the session its encryption, and the cluster key, proved bound to
// the session (transport.go), gives the authentication. The certificate is
// derived from nothing, so it says nothing about the key.
func tlsConfigs(files TLSFiles) (server, client *tls.Config, err error) {
	var cert tls.Certificate
	var verify func(rawCerts [][]byte, _ [][]*x509.Certificate) error
	if files.set() {
		if files.Cert == "" || files.Key == "" || files.CA == "" {
			return nil, nil, errors.New("--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together: give all three")
		}
		if cert, err = tls.LoadX509KeyPair(files.Cert, files.Key); err != nil {
			return nil, nil, fmt.Errorf("cluster TLS certificate: %w", err)
		}
		pem, err := os.ReadFile(files.CA)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("cluster TLS CA: no PEM certificate in %s", files.CA)
		}
		verify = verifyChain(pool)
	} else if cert, err = selfSigned(); err != nil {
		return nil, nil, err
	}
	base := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Every connection proves itself afresh; a resumed session would
		// skip the certificate check.
		SessionTicketsDisabled: true,
		// The chain is checked by verify, not by name (see above); without
		// operator files there is nothing to check here.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: verify,
	}
	server, client = base.Clone(), base.Clone()
	if verify != nil {
		server.ClientAuth = tls.RequireAnyClientCert
	}
	return server, client, nil
}

// verifyChain checks that the peer's certificate chains to the CA, for
// either use (a node's certificate serves as client and as server).
func verifyChain(pool *x509.CertPool) func([][]byte, [][]*x509.Certificate) error {
	return func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		if len(rawCerts) == 0 {
			return fmt.Errorf("%w: no certificate", ErrUntrustedPeer)
		}
		certs := make([]*x509.Certificate, len(rawCerts))
		for i, raw := range rawCerts {
			c, err := x509.ParseCertificate(raw)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrUntrustedPeer, err)
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("%w: %v", ErrUntrustedPeer, err)
		}
		return nil
	}
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "herald node"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
