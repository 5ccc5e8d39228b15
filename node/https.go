package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/herald-notify/herald/httpapi"
	"github.com/herald-notify/herald/internal/publictls"
	"github.com/herald-notify/herald/ui"
)

// maxProfileWrite bounds how long the metrics listener takes to answer
// when it serves profiles: the longest CPU profile or trace, and then some.
const maxProfileWrite = httpapi.MaxProfileSeconds*time.Second + 30*time.Second

// minMetricsToken keeps a scrape token out of guessing range.
const minMetricsToken = 16

// checkPublicListener refuses HTTPS and metrics settings that cannot work
// together, before anything is opened.
func checkPublicListener(cfg Config) error {
	switch {
	case (cfg.TLSCert == "") != (cfg.TLSKey == ""):
		return errors.New("--tls-cert and --tls-key go together: give both PEM files, or neither")
	case cfg.TLSCert != "" && len(cfg.ACMEDomain) > 0:
		return errors.New("--tls-cert and --acme-domain both set: give your own certificate or have one obtained through ACME, not both")
	case len(cfg.ACMEDomain) == 0 && (cfg.ACMEEmail != "" || cfg.ACMEDirectory != ""):
		return errors.New("--acme-email and --acme-directory need --acme-domain, the host name to obtain a certificate for")
	case cfg.MetricsToken != "" && len(cfg.MetricsToken) < minMetricsToken:
		return fmt.Errorf("--metrics-token: %d characters; want %d or more", len(cfg.MetricsToken), minMetricsToken)
	case cfg.Profiling && cfg.MetricsAddr == "":
		return errors.New("--profiling serves Go's profiles on the metrics listener only: give --metrics-addr too")
	case cfg.MetricsAddr != "" && sameAddr(cfg.MetricsAddr, cfg.HTTPAddr):
		return fmt.Errorf("--metrics-addr %s is --http-addr: give the metrics listener an address of its own, or leave it empty", cfg.MetricsAddr)
	}
	for _, d := range cfg.ACMEDomain {
		if err := publictls.CheckDomain(d); err != nil {
			return err
		}
	}
	if len(cfg.ACMEDomain) > 0 && cfg.ACMEHTTPAddr != "" && sameAddr(cfg.ACMEHTTPAddr, cfg.HTTPAddr) {
		return fmt.Errorf("--acme-http-addr %s is --http-addr: the challenge listener is plain HTTP and needs a port of its own (usually :80)", cfg.ACMEHTTPAddr)
	}
	return nil
}

// sameAddr tells addresses that would clash, a port of 0 aside.
func sameAddr(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return a == b
	}
	if pa != pb || pa == "0" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wildcard(ha) || wildcard(hb)
}

// setupPublicTLS loads the operator's key pair or sets up ACME. It returns
// nil when the public listener is plain HTTP.
func (n *Node) setupPublicTLS() (*tls.Config, error) {
	cfg := n.cfg
	switch {
	case cfg.TLSCert != "":
		kp, err := publictls.LoadKeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, err
		}
		n.keyPair = kp
		return publictls.ServerConfig(kp.GetCertificate), nil
	case len(cfg.ACMEDomain) > 0:
		a, err := publictls.NewACME(publictls.ACMEOptions{Domains: cfg.ACMEDomain, Email: cfg.ACMEEmail,
			DirectoryURL: cfg.ACMEDirectory, CacheDir: filepath.Join(cfg.DataDir, "acme")})
		if err != nil {
			return nil, err
		}
		n.acme = a
		return a.ServerConfig(), nil
	}
	return nil, nil
}

// ReloadTLS reads --tls-cert and --tls-key again (SIGHUP calls it). New
// connections get the new pair; open ones, and live streams, keep theirs. A
// pair that does not load leaves the one in use, and the error says why.
func (n *Node) ReloadTLS() error {
	if n.keyPair == nil {
		n.log.Info("reload: no --tls-cert to reload")
		return nil
	}
	if err := n.keyPair.Reload(); err != nil {
		n.log.Error("reload: keeping the certificate in use", "error", err,
			"serving_until", n.keyPair.Leaf().NotAfter.UTC())
		return err
	}
	leaf := n.keyPair.Leaf()
	n.log.Info("reload: serving the new certificate", "subject", leaf.Subject.String(),
		"names", strings.Join(leaf.DNSNames, ","), "not_after", leaf.NotAfter.UTC())
	return nil
}

// startACME opens the HTTP-01 challenge listener and asks for the
// certificates in the background, so that a problem with the CA or the DNS
// shows in the log at start rather than at the first visitor.
func (n *Node) startACME() error {
	if n.acme == nil {
		return nil
	}
	if _, port, _ := net.SplitHostPort(n.listener.Addr().String()); n.cfg.ACMEHTTPAddr == "" && port != "443" {
		n.log.Warn("acme: no --acme-http-addr and --http-addr is not on port 443: a public CA can validate neither "+
			"HTTP-01 (port 80) nor TLS-ALPN-01 (port 443) unless a proxy forwards those ports here", "http", n.listener.Addr().String())
	}
	if addr := n.cfg.ACMEHTTPAddr; addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("--acme-http-addr %s (HTTP-01 challenges; ports below 1024 need root or CAP_NET_BIND_SERVICE; "+
				"empty leaves TLS-ALPN-01 on --http-addr port 443): %w", addr, err)
		}
		_, port, _ := net.SplitHostPort(n.listener.Addr().String())
		n.acmeHTTP = &http.Server{Handler: n.acme.HTTPHandler(port), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute,
			MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}
		n.serve(n.acmeHTTP, l, "acme http-01")
	}
	for _, d := range n.cfg.ACMEDomain {
		// Not waited for at shutdown: autocert bounds the attempt itself
		// (minutes), and a stopped node has nothing left to lose by it.
		go func() {
			leaf, err := n.acme.Prefetch(d)
			if err != nil {
				n.log.Error("acme: no certificate yet; HTTPS handshakes for this name fail until one is obtained",
					"domain", d, "error", err)
				return
			}
			n.log.Info("acme: certificate ready", "domain", d, "issuer", leaf.Issuer.String(), "not_after", leaf.NotAfter.UTC())
		}()
	}
	return nil
}

// startMetricsListener serves /metrics to scrapers on --metrics-addr.
func (n *Node) startMetricsListener() error {
	if n.cfg.MetricsAddr == "" {
		return nil
	}
	l, err := net.Listen("tcp", n.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-addr %s: %w", n.cfg.MetricsAddr, err)
	}
	n.metricsListener = l
	write := 30 * time.Second
	if n.cfg.Profiling {
		httpapi.EnableProfiling()
		// A CPU profile or a trace answers after the seconds asked for.
		write = maxProfileWrite
	}
	n.metricsHTTP = &http.Server{Handler: n.api.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: write, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}
	n.serve(n.metricsHTTP, l, "metrics")
	return nil
}

// MetricsAddr is the address of the --metrics-addr listener, or "".
func (n *Node) MetricsAddr() string {
	if n.metricsListener == nil {
		return ""
	}
	return n.metricsListener.Addr().String()
}

// TLS tells whether the public listener serves HTTPS.
func (n *Node) TLS() bool { return n.keyPair != nil || n.acme != nil }

func (n *Node) serve(srv *http.Server, l net.Listener, name string) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("listener stopped", "listener", name, "error", err)
		}
	}()
}

// hstsMaxAge is a year: what browsers' preload lists ask of a site, and
// long enough to outlast any visit that could be downgraded.
const hstsMaxAge = "max-age=31536000"

// securityHeaders tells browsers to come back over HTTPS only, on
// responses that came over TLS (a plain-HTTP answer cannot be trusted to
// say so, and RFC 6797 has browsers ignore it there), and gives every
// response under /ui/ the UI's headers, the session endpoints' included.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", hstsMaxAge)
		}
		if strings.HasPrefix(r.URL.Path, "/ui/") {
			ui.SecurityHeaders(w.Header())
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if strings.HasPrefix(r.URL.Path, "/v1.0/") || strings.HasPrefix(r.URL.Path, "/beta/") {
			// API answers hold users' data, and some a secret shown once
			// (a client secret, a webhook's): no cache may keep them.
			// A handler may say otherwise (the live stream: no-cache).
			w.Header().Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

// openProfiling reports whether /debug/pprof/ is served without a token
// on a metrics listener that other hosts may reach.
func (n *Node) openProfiling() bool {
	if n.metricsListener == nil || !n.cfg.Profiling || n.cfg.MetricsToken != "" {
		return false
	}
	ap, err := netip.ParseAddrPort(n.metricsListener.Addr().String())
	return err != nil || !ap.Addr().IsLoopback()
}

// metricsWhere says in the start-up log where /metrics is served.
func (n *Node) metricsWhere() string {
	switch {
	case n.metricsListener != nil && n.cfg.Profiling:
		access := "open"
		if n.cfg.MetricsToken != "" {
			access = "metrics token"
		}
		return n.metricsListener.Addr().String() + " (" + access + "; with /debug/pprof/); public listener (admin token)"
	case n.metricsListener != nil && n.cfg.MetricsToken != "":
		return n.metricsListener.Addr().String() + " (metrics token); public listener (admin token)"
	case n.metricsListener != nil:
		return n.metricsListener.Addr().String() + " (open); public listener (admin token)"
	case n.cfg.MetricsToken != "":
		return "public listener (admin or metrics token)"
	}
	return "public listener (admin token)"
}
