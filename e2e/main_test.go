// Package e2e tests the real herald binary from the outside: it builds the
// binary once, runs it as a subprocess on loopback ports and a temporary data
// directory, and talks to it only over HTTP, SSE, WebSocket and its command
// line, as a user would.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/freeport"
)

// heraldBin is the binary under test, built once by TestMain.
var heraldBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "herald-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		defer removeImages()
		bin, err := buildBinary(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e: build herald:", err)
			return 1
		}
		heraldBin = bin
		return m.Run()
	}()
	os.Exit(code)
}

// buildBinary runs "go build" in the repository root, the parent of this
// package's directory (the working directory of "go test").
func buildBinary(dir string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root := filepath.Dir(wd)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("repository root not found at %s: %w", root, err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "herald")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	return bin, nil
}

// Timeouts of the waits in these tests. They bound how long a failure takes
// to be reported; a passing run never waits them out.
const (
	startTimeout = 20 * time.Second
	eventTimeout = 5 * time.Second
)

// eventually calls f until it returns nil or the timeout passes, and then
// fails the test with f's last error.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func freeAddr(t testing.TB) string { return freeport.Addr(t) }

// cleanEnv is the test's environment without any HERALD_ variable, so that
// a developer's own settings cannot leak into the server under test.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// logBuffer collects a process's output for the test to read while the
// process keeps writing.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is one running "herald serve" process.
type server struct {
	URL      string
	HTTPAddr string
	RaftAddr string
	DataDir  string
	env      []string
	extra    []string // serve flags beyond the data dir and addresses
	args     []string

	cmd     *exec.Cmd
	log     *logBuffer // stdout and stderr
	exited  chan struct{}
	waitErr error
}

// serverOpts says how to start a server.
type serverOpts struct {
	DataDir string   // required
	Env     []string // KEY=value added to the cleaned environment
	Args    []string // extra serve flags
	// HTTPAddr and RaftAddr reuse the ports of an earlier run; empty picks
	// free ones.
	HTTPAddr, RaftAddr string
}

// startServer runs "herald serve" and waits until /readyz answers 200. The
// process is killed when the test ends.
func startServer(t *testing.T, o serverOpts) *server {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s := launch(t, o)
		err := s.waitReady(startTimeout)
		if err == nil {
			return s
		}
		// Another process may take a port between freeAddr and the bind;
		// try again on new ports, but only when we chose them.
		if attempt < 3 && o.HTTPAddr == "" && strings.Contains(s.log.String(), "address already in use") {
			s.kill(t)
			continue
		}
		t.Fatalf("herald serve did not become ready: %v\n--- server log ---\n%s", err, s.log.String())
	}
}

func launch(t *testing.T, o serverOpts) *server {
	t.Helper()
	s := &server{HTTPAddr: o.HTTPAddr, RaftAddr: o.RaftAddr, DataDir: o.DataDir, env: o.Env,
		extra: o.Args, log: &logBuffer{}, exited: make(chan struct{})}
	if s.HTTPAddr == "" {
		s.HTTPAddr = freeAddr(t)
	}
	if s.RaftAddr == "" {
		s.RaftAddr = freeAddr(t)
	}
	s.URL = "http://" + s.HTTPAddr
	s.args = append([]string{"serve", "--data-dir", s.DataDir, "--http-addr", s.HTTPAddr,
		"--raft-addr", s.RaftAddr}, o.Args...)
	s.cmd = exec.Command(heraldBin, s.args...)
	s.cmd.Env = cleanEnv(o.Env...)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start herald: %v", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.kill(t)
		if t.Failed() {
			t.Logf("--- log of herald %s ---\n%s", strings.Join(s.args, " "), s.log.String())
		}
	})
	return s
}

// restart starts a new process on the same data directory and ports.
func (s *server) restart(t *testing.T) *server {
	t.Helper()
	return startServer(t, serverOpts{DataDir: s.DataDir, Env: s.env, HTTPAddr: s.HTTPAddr, RaftAddr: s.RaftAddr,
		Args: s.extra})
}

func (s *server) waitReady(timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("the process exited: %v", s.waitErr)
		default:
		}
		resp, err := hc.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz: %s", resp.Status)
		}
		last = err
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("deadline of %s passed: %v", timeout, last)
}

// kill ends the process with SIGKILL, as a crash or power loss would, and
// waits for it to be gone.
func (s *server) kill(t testing.TB) {
	select {
	case <-s.exited:
		return
	default:
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill herald: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("herald did not exit after SIGKILL")
	}
}

// terminate sends SIGTERM and waits up to timeout for the process to exit,
// returning its exit code.
func (s *server) terminate(t testing.TB, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(timeout):
		t.Fatalf("herald did not exit within %s of SIGTERM", timeout)
	}
	return s.cmd.ProcessState.ExitCode(), time.Since(start)
}

// runCLI runs a herald client command and returns its standard output; a
// non-zero exit fails the test.
func runCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, heraldBin, args...)
	cmd.Env = cleanEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("herald %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// api is an HTTP client of one server.
type api struct {
	base string
	hc   *http.Client
}

func newAPI(s *server) *api {
	return &api{base: s.URL, hc: &http.Client{Timeout: 10 * time.Second}}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends a request; body, when not nil, is sent as JSON. A path may also
// be an absolute URL (a nextLink).
func (a *api) do(method, path, token string, body any, hdr map[string]string) (*response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := path
	if !strings.HasPrefix(path, "http") {
		u = a.base + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// call is do that fails the test on a transport error or another status
// than want, and decodes the body into out when out is not nil.
func (a *api) call(t testing.TB, want int, method, path, token string, body any, hdr map[string]string, out any) *response {
	t.Helper()
	r, err := a.do(method, path, token, body, hdr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	if out != nil {
		if err := json.Unmarshal(r.Body, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, r.Body, err)
		}
	}
	return r
}

type tokenResponse struct {
	TokenType    string `json:"token_type"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// token posts a grant to the token endpoint.
func (a *api) token(form url.Values) (*tokenResponse, *response, error) {
	resp, err := a.hc.PostForm(a.base+"/oauth2/v2.0/token", form)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	r := &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	if resp.StatusCode != http.StatusOK {
		return nil, r, fmt.Errorf("token: status %d: %s", resp.StatusCode, b)
	}
	var tok tokenResponse
	if err := json.Unmarshal(b, &tok); err != nil {
		return nil, r, err
	}
	if tok.AccessToken == "" || tok.TokenType != "Bearer" {
		return nil, r, fmt.Errorf("token: no bearer access_token in %s", b)
	}
	return &tok, r, nil
}

// signIn gets a user token by the password grant. It polls, because the
// first admin is created just after the node reports ready.
func (a *api) signIn(t testing.TB, user, password string) string {
	t.Helper()
	var tok *tokenResponse
	eventually(t, eventTimeout, "sign in as "+user, func() error {
		var err error
		tok, _, err = a.token(url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}})
		return err
	})
	return tok.AccessToken
}

func (a *api) appToken(t testing.TB, appID, secret string) string {
	t.Helper()
	tok, _, err := a.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// Resource shapes, as much of them as the tests read.

type user struct {
	ID                string   `json:"id"`
	UserPrincipalName string   `json:"userPrincipalName"`
	DisplayName       string   `json:"displayName"`
	Roles             []string `json:"roles"`
}

type application struct {
	ID                  string `json:"id"`
	AppID               string `json:"appId"`
	TargetHostName      string `json:"targetHostName"`
	PasswordCredentials []struct {
		KeyID      string `json:"keyId"`
		SecretText string `json:"secretText"`
	} `json:"passwordCredentials"`
}

type subscription struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

type notification struct {
	ID                string `json:"id"`
	AppNotificationID string `json:"appNotificationId"`
	ReadState         string `json:"readState"`
	Status            string `json:"status"`
	Payload           struct {
		VisualContent struct {
			Title string `json:"title"`
			Body  string `json:"body"`
		} `json:"visualContent"`
	} `json:"payload"`
	Removed *struct {
		Reason string `json:"reason"`
	} `json:"@removed"`
}

type notificationPage struct {
	Value    []notification `json:"value"`
	NextLink string         `json:"@odata.nextLink"`
}

// fixture is an application, a user and the user's live subscription to it:
// what every sending test needs.
type fixture struct {
	adminToken string
	app        application
	appToken   string
	user       user
	userToken  string
	unsid      string
}

func newFixture(t *testing.T, a *api, adminPassword, host, upn string) *fixture {
	t.Helper()
	f := &fixture{adminToken: a.signIn(t, "admin", adminPassword)}
	a.call(t, http.StatusCreated, "POST", "/v1.0/applications", f.adminToken,
		map[string]any{"displayName": "App " + host, "targetHostName": host}, nil, &f.app)
	if f.app.AppID == "" || len(f.app.PasswordCredentials) == 0 || f.app.PasswordCredentials[0].SecretText == "" {
		t.Fatalf("application without appId or secretText: %+v", f.app)
	}
	password := upn + "-password"
	a.call(t, http.StatusCreated, "POST", "/v1.0/users", f.adminToken,
		map[string]any{"userPrincipalName": upn, "displayName": upn, "password": password, "roles": []string{"user"}}, nil, &f.user)
	f.userToken = a.signIn(t, upn, password)
	var sub subscription
	a.call(t, http.StatusCreated, "POST", "/v1.0/me/notificationSubscriptions", f.userToken,
		map[string]any{"targetHostName": host, "platformType": "web", "deviceName": upn + "'s laptop",
			"channel": map[string]string{"type": "live"}}, nil, &sub)
	if sub.ID == "" || sub.Status != "active" {
		t.Fatalf("subscription: %+v", sub)
	}
	f.unsid = sub.ID
	f.appToken = a.appToken(t, f.app.AppID, f.app.PasswordCredentials[0].SecretText)
	return f
}

// listFeed pages through the user's whole feed with $top and nextLink.
func (a *api) listFeed(t testing.TB, token, query string) []notification {
	t.Helper()
	var all []notification
	next := "/v1.0/me/notifications?" + query
	for pages := 0; next != ""; pages++ {
		if pages > 10000 {
			t.Fatalf("listing the feed: more than 10000 pages; is nextLink looping?")
		}
		var page notificationPage
		a.call(t, http.StatusOK, "GET", next, token, nil, nil, &page)
		all = append(all, page.Value...)
		next = page.NextLink
	}
	return all
}
