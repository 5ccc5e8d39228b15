package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testacme"
	"github.com/herald-notify/herald/internal/testcerts"
	"github.com/herald-notify/herald/internal/testnode"
)

// clientFor a name: every connection goes to addr, with the name as SNI and
// Host, trusting only pool.
func namedClient(addr string, ca *testcerts.CA) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool()},
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
}

// A node with --acme-domain gets its certificate from an ACME CA through
// the HTTP-01 challenge, serves it, keeps it in the data directory and
// serves it from there after a restart with the CA gone.
func TestACMECertificateThroughHTTP01(t *testing.T) {
	const domain = "herald.test"
	ca := testcerts.NewCA(t, "acme-ca")
	challenge := testnode.FreeAddr(t)
	acme := testacme.New(t, ca, func(string) string { return challenge })
	cfg := testnode.Config(t, t.TempDir())
	cfg.ACMEDomain = []string{domain}
	cfg.ACMEDirectory = acme.DirectoryURL()
	cfg.ACMEEmail = "ops@herald.test"
	cfg.ACMEHTTPAddr = challenge
	n := testnode.Start(t, &cfg)
	c := namedClient(n.Addr(), ca)

	var served *tls.ConnectionState
	pollUntil(t, "the ACME certificate served", func() error {
		resp, err := c.Get("https://" + domain + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		served = resp.TLS
		if got := resp.Header.Get("Strict-Transport-Security"); got == "" {
			t.Errorf("no HSTS over the ACME certificate")
		}
		return nil
	})
	leaf := served.PeerCertificates[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != domain || leaf.Issuer.CommonName != "acme-ca" {
		t.Errorf("served %v issued by %s", leaf.DNSNames, leaf.Issuer.CommonName)
	}
	if v, issued := acme.Counts(); v != 1 || issued != 1 {
		t.Errorf("the CA validated %d challenges and issued %d certificates, want 1 and 1", v, issued)
	}

	// A name not configured gets no certificate; a handshake that names
	// none (a client going by address) gets the throwaway one.
	if _, err := tls.Dial("tcp", n.Addr(), &tls.Config{ServerName: "other.test", InsecureSkipVerify: true}); err == nil {
		t.Error("a handshake for another name succeeded")
	}
	conn, err := tls.Dial("tcp", n.Addr(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("a nameless handshake: %v", err)
	}
	if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "herald (no server name)" {
		t.Errorf("a nameless handshake got %q", cn)
	}
	conn.Close()

	// Plain requests to the challenge listener are sent to HTTPS on the
	// API's port.
	req, _ := http.NewRequest(http.MethodGet, "http://"+challenge+"/ui/?x=1", nil)
	req.Host = domain
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, port, _ := net.SplitHostPort(n.Addr())
	if want := fmt.Sprintf("https://%s:%s/ui/?x=1", domain, port); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
		t.Errorf("plain request: %s to %q, want 301 to %q", resp.Status, resp.Header.Get("Location"), want)
	}

	if _, err := os.Stat(filepath.Join(cfg.DataDir, "acme", domain)); err != nil {
		t.Errorf("the certificate is not kept in the data directory: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	acme.Close()
	again := testnode.Start(t, &cfg)
	resp, err = namedClient(again.Addr(), ca).Get("https://" + domain + "/healthz")
	if err != nil {
		t.Fatalf("after a restart with the CA gone: %v", err)
	}
	resp.Body.Close()
	if resp.TLS.PeerCertificates[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Error("after a restart the node serves another certificate")
	}
}
