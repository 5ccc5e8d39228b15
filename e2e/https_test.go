package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testcerts"
)

// The real binary over HTTPS: the client commands reach it with the CA in
// SSL_CERT_FILE (and fail without it), SIGHUP swaps the certificate without
// a restart, a bad pair on SIGHUP leaves the old one, and /metrics takes the
// scrape token.
func TestServeOverHTTPSReloadsOnSIGHUP(t *testing.T) {
	t.Parallel()
	ca := testcerts.NewCA(t, "e2e-public")
	first := ca.Server(t, "first", "127.0.0.1", "localhost")
	second := ca.Server(t, "second", "127.0.0.1", "localhost")
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	put := func(f testcerts.Files) {
		for src, dst := range map[string]string{f.Cert: certPath, f.Key: keyPath} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst+".new", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(dst+".new", dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(first)
	const scrape = "e2e-metrics-scrape-token"
	srv := launch(t, serverOpts{DataDir: t.TempDir(), Env: []string{"HERALD_ADMIN_PASSWORD=" + adminPassword},
		Args: []string{"--tls-cert", certPath, "--tls-key", keyPath, "--metrics-token", scrape}})
	srv.URL = "https://" + srv.HTTPAddr
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, DisableKeepAlives: true}}
	get := func(path, token string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	serial := func(f testcerts.Files) string {
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf.SerialNumber.String()
	}
	serving := func(want string) func() error {
		return func() error {
			resp, err := get("/readyz", "")
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return errors.New(resp.Status)
			}
			if got := resp.TLS.PeerCertificates[0].SerialNumber.String(); got != want {
				return fmt.Errorf("serves serial %s, want %s", got, want)
			}
			return nil
		}
	}
	eventually(t, startTimeout, "ready over HTTPS with the first certificate", serving(serial(first)))

	env := []string{"SSL_CERT_FILE=" + ca.File, "HERALD_SERVER=" + srv.URL, "HERALD_USERNAME=admin", "HERALD_PASSWORD=" + adminPassword}
	if out := runCLI(t, env, "users", "list"); !strings.Contains(out, "admin") {
		t.Errorf("users list over HTTPS:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	untrusted := exec.CommandContext(ctx, heraldBin, "users", "list")
	untrusted.Env = cleanEnv(env[1:]...)
	if out, err := untrusted.CombinedOutput(); err == nil || !strings.Contains(string(out), "certificate") {
		t.Errorf("users list without the CA: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"wrong-token-wrong-token", http.StatusUnauthorized}, {scrape, http.StatusOK}} {
		resp, err := get("/metrics", tc.token)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.want {
			t.Errorf("/metrics with %q: %s, want %d", tc.token, resp.Status, tc.want)
		}
	}

	put(second)
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the second certificate served after SIGHUP", serving(serial(second)))

	// A truncated key: SIGHUP logs why and the second pair stays.
	b, _ := os.ReadFile(second.Key)
	if err := os.WriteFile(keyPath, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the failed reload logged", func() error {
		if !strings.Contains(srv.log.String(), "keeping the certificate in use") {
			return errors.New("not in the log yet")
		}
		return nil
	})
	if err := serving(serial(second))(); err != nil {
		t.Errorf("after a bad pair: %v", err)
	}
	select {
	case <-srv.exited:
		t.Fatalf("the server exited: %v", srv.waitErr)
	default:
	}
}
