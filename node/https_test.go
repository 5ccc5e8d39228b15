package node_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testcerts"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// copyFile puts src's bytes at dst the way a renewal does: a new file
// renamed over the old, so the node never reads half a file.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// tlsConfigured is a test node whose public listener serves the pair at
// cert and key, which start as a copy of first.
func tlsConfigured(t *testing.T, first testcerts.Files) (cfg node.Config, cert, key string) {
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	copyFile(t, first.Cert, cert)
	copyFile(t, first.Key, key)
	cfg = testnode.Config(t, t.TempDir())
	cfg.TLSCert, cfg.TLSKey = cert, key
	return cfg, cert, key
}

// httpsClient trusts only ca and opens a new connection for every request,
// so that each one sees the certificate served at that moment.
func httpsClient(ca *testcerts.CA) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, DisableKeepAlives: true}}
}

func servedSerial(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET /healthz over HTTPS: %s, TLS %v", resp.Status, resp.TLS != nil)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.String()
}

func serialOf(t *testing.T, f testcerts.Files) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.SerialNumber.String()
}

func TestHTTPSServesAndReloadsItsCertificate(t *testing.T) {
	ca := testcerts.NewCA(t, "public")
	first := ca.Server(t, "first", "127.0.0.1", "localhost")
	second := ca.Server(t, "second", "127.0.0.1", "localhost")
	third := ca.Server(t, "third", "127.0.0.1", "localhost")
	cfg, certPath, keyPath := tlsConfigured(t, first)
	n := testnode.Start(t, &cfg)
	if !strings.HasPrefix(n.URL, "https://") {
		t.Fatalf("node URL %s", n.URL)
	}
	c := httpsClient(ca)
	if got, want := servedSerial(t, c, n.URL), serialOf(t, first); got != want {
		t.Fatalf("serves serial %s, want the first pair's %s", got, want)
	}

	// A plain-HTTP client is told to use HTTPS, and nothing is served.
	resp, err := http.Get("http://" + n.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP to the HTTPS listener: %s", resp.Status)
	}

	// A connection opened before the reload, held across it.
	held, err := tls.Dial("tcp", n.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldReader := bufio.NewReader(held)
	ask := func(what string) {
		t.Helper()
		fmt.Fprintf(held, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", n.Addr())
		r, err := http.ReadResponse(heldReader, nil)
		if err != nil {
			t.Fatalf("%s: the held connection: %v", what, err)
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			t.Fatalf("%s: the held connection got %s", what, r.Status)
		}
	}
	ask("before the reload")

	copyFile(t, second.Cert, certPath)
	copyFile(t, second.Key, keyPath)
	if err := n.ReloadTLS(); err != nil {
		t.Fatalf("reload of a good pair: %v", err)
	}
	if got, want := servedSerial(t, c, n.URL), serialOf(t, second); got != want {
		t.Fatalf("after the reload a new client sees serial %s, want the second pair's %s", got, want)
	}
	ask("after the reload")
	if got := held.ConnectionState().PeerCertificates[0].SerialNumber.String(); got != serialOf(t, first) {
		t.Errorf("the held connection's certificate changed to %s", got)
	}

	// A certificate with another pair's key, then a truncated key: each
	// reload fails, and the second pair stays in service.
	copyFile(t, third.Cert, certPath)
	if err := n.ReloadTLS(); err == nil || !strings.Contains(err.Error(), "private key does not match") {
		t.Errorf("reload of a certificate with the wrong key: %v", err)
	}
	copyFile(t, third.Key, keyPath)
	b, _ := os.ReadFile(third.Key)
	if err := os.WriteFile(keyPath, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadTLS(); err == nil {
		t.Error("reload of a truncated key succeeded")
	}
	if got, want := servedSerial(t, c, n.URL), serialOf(t, second); got != want {
		t.Fatalf("after failed reloads a new client sees serial %s, want the second pair's %s", got, want)
	}
	ask("after the failed reloads")
}

// The certificate's expiry is a metric, so that an alert can fire before a
// pair the operator renews by hand runs out; it follows a reload.
func TestCertificateExpiryIsAMetric(t *testing.T) {
	ca := testcerts.NewCA(t, "public")
	issued := time.Now().Unix()
	first := ca.Server(t, "first", "127.0.0.1", "localhost")
	for time.Now().Unix() == issued { // the second pair expires a second later at least
		time.Sleep(10 * time.Millisecond)
	}
	second := ca.Server(t, "second", "127.0.0.1", "localhost")
	cfg, certPath, keyPath := tlsConfigured(t, first)
	n := testnode.Start(t, &cfg)
	c := httpsClient(ca)
	notAfter := func(f testcerts.Files) string {
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("herald_tls_certificate_not_after_seconds %g", float64(pair.Leaf.NotAfter.Unix()))
	}
	scrape := func() string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, n.URL+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+testnode.MetricsToken)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if m, want := scrape(), notAfter(first); !strings.Contains(m, want+"\n") {
		t.Fatalf("metrics lack %q", want)
	}
	copyFile(t, second.Cert, certPath)
	copyFile(t, second.Key, keyPath)
	if err := n.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if m, want := scrape(), notAfter(second); !strings.Contains(m, want+"\n") {
		t.Errorf("after the reload, metrics lack %q", want)
	}
}

func TestHSTSOnlyOverTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "public")
	cfg, _, _ := tlsConfigured(t, ca.Server(t, "srv", "127.0.0.1"))
	secure := testnode.Start(t, &cfg)
	plain := testnode.Start(t, nil)
	c := httpsClient(ca)
	for _, path := range []string{"/healthz", "/ui/", "/v1.0/me", "/no/such/path"} {
		resp, err := c.Get(secure.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
			t.Errorf("HTTPS %s (%d): Strict-Transport-Security %q", path, resp.StatusCode, got)
		}
		resp, err = http.Get(plain.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got, ok := resp.Header["Strict-Transport-Security"]; ok {
			t.Errorf("plain HTTP %s: Strict-Transport-Security %q", path, got)
		}
	}
}

// metricsGet asks url for /metrics with token ("" for none), returning the
// status and the error code of a Graph error body.
func metricsGet(t *testing.T, url, token string) (int, string) {
	t.Helper()
	status, b := bearerDo(t, http.MethodGet, url+"/metrics", token)
	if status == http.StatusOK {
		if !strings.Contains(string(b), "herald_raft_applied_index ") {
			t.Errorf("%s/metrics: 200 without Herald's metrics", url)
		}
		return status, ""
	}
	return status, errorCode(t, fmt.Sprintf("%s/metrics %d", url, status), b)
}

// bearerDo sends method url with token as a bearer token (none if empty)
// and returns the status and the body.
func bearerDo(t *testing.T, method, url, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// errorCode is the contract's error code in body, failing the test when
// body is not the contract's error shape.
func errorCode(t *testing.T, what string, body []byte) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Errorf("%s: not the contract's error shape: %.200s", what, body)
	}
	return e.Error.Code
}

func TestMetricsNeedAnAdminOrTheScrapeToken(t *testing.T) {
	n := testnode.Start(t, nil)
	c := clientFor(t, n, "")
	admin, err := c.PasswordToken(context.Background(), "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clientFor(t, n, admin.AccessToken).CreateUser(context.Background(),
		client.NewUser{UserPrincipalName: "bob", DisplayName: "Bob", Password: "bob-password-1"}); err != nil {
		t.Fatal(err)
	}
	bob, err := c.PasswordToken(context.Background(), "bob", "bob-password-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who, token string
		status     int
		code       string
	}{
		{"nobody", "", http.StatusUnauthorized, "unauthenticated"},
		{"a wrong token", "not-the-metrics-token-at-all", http.StatusUnauthorized, "unauthenticated"},
		{"a user", bob.AccessToken, http.StatusForbidden, "accessDenied"},
		{"an admin", admin.AccessToken, http.StatusOK, ""},
		{"the scrape token", testnode.MetricsToken, http.StatusOK, ""},
	} {
		if status, code := metricsGet(t, n.URL, tc.token); status != tc.status || code != tc.code {
			t.Errorf("%s: %d %q, want %d %q", tc.who, status, code, tc.status, tc.code)
		}
	}
}

func TestMetricsOnTheirOwnListener(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	cfg.MetricsAddr = "127.0.0.1:0"
	n := testnode.Start(t, &cfg)
	admin, err := clientFor(t, n, "").PasswordToken(context.Background(), "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	metrics := "http://" + n.MetricsAddr()
	// The public /metrics is the console's, for admins only: scrapers
	// go to the metrics listener.
	for _, tc := range []struct {
		who, token string
		status     int
		code       string
	}{
		{"nobody", "", http.StatusUnauthorized, "unauthenticated"},
		{"the scrape token", testnode.MetricsToken, http.StatusForbidden, "accessDenied"},
		{"an admin", admin.AccessToken, http.StatusOK, ""},
	} {
		if status, code := metricsGet(t, n.URL, tc.token); status != tc.status || code != tc.code {
			t.Errorf("public /metrics with --metrics-addr, %s: %d %q, want %d %q", tc.who, status, code, tc.status, tc.code)
		}
	}
	if status, code := metricsGet(t, metrics, ""); status != http.StatusUnauthorized || code != "unauthenticated" {
		t.Errorf("metrics listener without the token: %d %q, want 401", status, code)
	}
	if status, _ := metricsGet(t, metrics, testnode.MetricsToken); status != http.StatusOK {
		t.Errorf("metrics listener with the token: %d", status)
	}
	resp, err := http.Get(metrics + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("metrics listener serves /healthz: %s", resp.Status)
	}

	// Without a scrape token the separate listener is as open as the
	// network it is bound to.
	open := testnode.Config(t, t.TempDir())
	open.MetricsAddr, open.MetricsToken = "127.0.0.1:0", ""
	o := testnode.Start(t, &open)
	if status, _ := metricsGet(t, "http://"+o.MetricsAddr(), ""); status != http.StatusOK {
		t.Errorf("tokenless metrics listener: %d", status)
	}
	if status, _ := metricsGet(t, o.URL, ""); status != http.StatusUnauthorized {
		t.Errorf("public /metrics of a node with a metrics listener, no token: %d", status)
	}
}

func TestPublicListenerSettingsRefused(t *testing.T) {
	ca := testcerts.NewCA(t, "public")
	a, b := ca.Server(t, "a", "127.0.0.1"), ca.Server(t, "b", "127.0.0.1")
	for _, tc := range []struct {
		name string
		set  func(*node.Config)
		want string
	}{
		{"cert without key", func(c *node.Config) { c.TLSCert = a.Cert }, "--tls-cert and --tls-key go together"},
		{"key without cert", func(c *node.Config) { c.TLSKey = a.Key }, "--tls-cert and --tls-key go together"},
		{"cert and acme", func(c *node.Config) {
			c.TLSCert, c.TLSKey, c.ACMEDomain = a.Cert, a.Key, []string{"herald.example.com"}
		},
			"not both"},
		{"acme email alone", func(c *node.Config) { c.ACMEEmail = "ops@example.com" }, "need --acme-domain"},
		{"acme address", func(c *node.Config) { c.ACMEDomain = []string{"192.0.2.7"} }, "an address, not a host name"},
		{"acme wildcard", func(c *node.Config) { c.ACMEDomain = []string{"*.example.com"} }, "wildcards"},
		{"acme single label", func(c *node.Config) { c.ACMEDomain = []string{"herald"} }, "fully qualified"},
		{"acme url", func(c *node.Config) { c.ACMEDomain = []string{"https://herald.example.com"} }, "bare host name"},
		{"acme http on the api port", func(c *node.Config) {
			c.HTTPAddr, c.ACMEDomain, c.ACMEHTTPAddr = "127.0.0.1:8443", []string{"herald.example.com"}, ":8443"
		}, "port of its own"},
		{"short metrics token", func(c *node.Config) { c.MetricsToken = "short" }, "want 16 or more"},
		{"profiling without a metrics listener", func(c *node.Config) { c.Profiling = true }, "give --metrics-addr too"},
		{"metrics on the api port", func(c *node.Config) { c.HTTPAddr, c.MetricsAddr = ":8750", "127.0.0.1:8750" }, "address of its own"},
		{"mismatched pair", func(c *node.Config) { c.TLSCert, c.TLSKey = a.Cert, b.Key }, "private key does not match"},
		{"missing file", func(c *node.Config) { c.TLSCert, c.TLSKey = a.Cert+".gone", a.Key }, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testnode.Config(t, t.TempDir())
			tc.set(&cfg)
			n, err := node.Start(context.Background(), cfg, quietLogger())
			if err == nil {
				n.Close(context.Background())
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

// A cluster whose public listeners speak HTTPS: a joining node finds the
// others' inter-node ports through their HTTPS listeners.
func TestClusterJoinsOverHTTPSListeners(t *testing.T) {
	ca := testcerts.NewCA(t, "public")
	srv := ca.Server(t, "srv", "127.0.0.1")
	c1 := clusterConfig(t, "n1")
	c1.TLSCert, c1.TLSKey = srv.Cert, srv.Key
	c2 := clusterConfig(t, "n2", c1.HTTPAddr)
	c2.TLSCert, c2.TLSKey = srv.Cert, srv.Key
	n1 := testnode.Start(t, &c1)
	n2 := testnode.Start(t, &c2)
	pollUntil(t, "both nodes in the configuration", func() error {
		for _, n := range []*testnode.Node{n1, n2} {
			cfg := n.Store().Raft().GetConfiguration()
			if err := cfg.Error(); err != nil {
				return err
			}
			if got := len(cfg.Configuration().Servers); got != 2 {
				return fmt.Errorf("%s sees %d servers", n.Config.NodeID, got)
			}
		}
		return nil
	})
	if got, want := servedSerial(t, httpsClient(ca), n2.URL), serialOf(t, srv); got != want {
		t.Errorf("n2 serves %s", got)
	}
}

// A listener that cannot bind stops the start with its flag's name, and
// leaves nothing running: the same data directory starts right after.
func TestBusyExtraListenerStopsTheStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	for _, tc := range []struct {
		set  func(*node.Config)
		want string
	}{
		{func(c *node.Config) { c.MetricsAddr = busy.Addr().String() }, "--metrics-addr"},
		{func(c *node.Config) {
			c.ACMEDomain, c.ACMEHTTPAddr = []string{"herald.test"}, busy.Addr().String()
			c.ACMEDirectory = "http://127.0.0.1:1/directory"
		}, "--acme-http-addr"},
	} {
		cfg := testnode.Config(t, dir)
		tc.set(&cfg)
		n, err := node.Start(context.Background(), cfg, quietLogger())
		if err == nil {
			n.Close(context.Background())
			t.Fatalf("started with %s busy", tc.want)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %q, want it to name %s", err, tc.want)
		}
	}
	cfg := testnode.Config(t, dir)
	testnode.Start(t, &cfg)
}
