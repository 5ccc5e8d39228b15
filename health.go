package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// healthcheckCommand is `herald healthcheck`: the probe of a container's
// HEALTHCHECK or a service manager. It asks the node on this machine for
// /healthz (or /readyz with --ready) and exits 0 on 200, 1 otherwise, so it
// needs no curl in the image. It finds the node from the same settings as
// serve (--config, HERALD_HTTP_ADDR, --http-addr), so a container that
// configures serve through the environment needs no extra arguments here.
func healthcheckCommand() *cli.Command {
	// Every serve flag is accepted, so that the probe can be given serve's
	// own arguments, and the config file reads as serve reads it; only
	// --http-addr is shown, as the only one that matters here.
	cfgFlags := serveConfigFlags()
	flags := []cli.Flag{configFileFlag()}
	for _, f := range cfgFlags {
		if f.name() != "http-addr" {
			reflect.ValueOf(f.flag).Elem().FieldByName("Hidden").SetBool(true)
		}
		flags = append(flags, f.flag)
	}
	return &cli.Command{
		Name:  "healthcheck",
		Usage: "exit 0 if the local node is up (/healthz), or ready with --ready (/readyz)",
		Description: "The node is found the way serve finds its settings: --config, HERALD_HTTP_ADDR, --http-addr;\n" +
			"a wildcard address (\":8750\", \"0.0.0.0:8750\") is probed on loopback. A node serving HTTPS is\n" +
			"probed over HTTPS without checking its certificate: the probe sends no credentials. It probes the\n" +
			"node on this machine, or --url: HERALD_SERVER, the client commands' server, is not read.",
		Flags: append(flags,
			&cli.StringFlag{Name: "url", Usage: "probe this `URL` instead: a path in it is used as is; without one, /healthz (or /readyz with --ready) of that server"},
			&cli.BoolFlag{Name: "ready", Usage: "probe /readyz: the node has a leader and has caught up with it"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "give up after this long"},
		),
		Action: func(c *cli.Context) error {
			target, serverName := c.String("url"), ""
			if target != "" && !strings.Contains(target, "://") {
				target = "http://" + target // host:port, as --server takes it
			}
			if u, err := url.Parse(target); target != "" && err == nil && (u.Path == "" || u.Path == "/") {
				// A server's address alone: its probe, not its / (a
				// redirect to the web UI, which the probe counts as down).
				u.Path = "/healthz"
				if c.Bool("ready") {
					u.Path = "/readyz"
				}
				target = u.String()
			}
			if target == "" {
				cfg, err := loadConfig(c, cfgFlags)
				if err != nil {
					return err
				}
				if cfg.HTTPAddr == "" {
					return errors.New("healthcheck: --http-addr (HERALD_HTTP_ADDR) is empty: give the node's address, or --url")
				}
				path := "/healthz"
				if c.Bool("ready") {
					path = "/readyz"
				}
				// A node configured for HTTPS is asked over HTTPS at
				// once: a plain request first made the node log a TLS
				// handshake error at every probe (every 10 s under the
				// image's HEALTHCHECK).
				scheme := "http://"
				if cfg.TLSCert != "" || len(cfg.ACMEDomain) > 0 {
					scheme = "https://"
				}
				target = scheme + probeHost(cfg.HTTPAddr) + path
				// A node that gets its certificates from ACME picks one by
				// the name the client asks for, and refuses a handshake
				// without a name: ask for the public one.
				if u, err := url.Parse(cfg.PublicURL); err == nil && u.Hostname() != "" {
					serverName = u.Hostname()
				}
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			status, answered, err := probe(ctx, target, serverName)
			if err != nil {
				return fmt.Errorf("healthcheck %s: %w", answered, err)
			}
			fmt.Fprintf(c.App.Writer, "%s: %s\n", answered, status)
			return nil
		},
	}
}

// probeHost turns a listen address into one to connect to: an empty or
// wildcard host means every interface, of which loopback is the one that
// is surely there.
func probeHost(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0", "::", "[::]":
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// probe GETs target and succeeds on 200; it also returns the URL that
// answered. A node that serves HTTPS answers a plain HTTP request with Go's
// "Client sent an HTTP request to an HTTPS server" 400; the probe then asks
// again over HTTPS.
func probe(ctx context.Context, target, serverName string) (string, string, error) {
	tr := &http.Transport{
		Proxy: nil, // a probe of this machine must not go through a proxy
		// The probe reaches the node by an address the certificate need
		// not name, and sends nothing secret.
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: serverName},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return 0, "", err
		}
		resp, err := cl.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, strings.TrimSpace(string(body)), nil
	}
	code, body, err := get(target)
	if err == nil && code == http.StatusBadRequest && strings.Contains(body, "HTTPS server") && strings.HasPrefix(target, "http://") {
		target = "https://" + strings.TrimPrefix(target, "http://")
		code, body, err = get(target)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return "", target, errors.New("no answer in time")
		}
		return "", target, err
	}
	status := fmt.Sprintf("%d %s", code, http.StatusText(code))
	if code != http.StatusOK {
		if body != "" {
			status += ": " + body
		}
		return "", target, errors.New(status)
	}
	return status, target, nil
}
