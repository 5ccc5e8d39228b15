package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// signInAs tries the password grant against a node; it returns the access
// token, or "" with the node's answer.
func signInAs(t *testing.T, base, user, password string) (string, string) {
	t.Helper()
	resp, err := http.PostForm(base+"/oauth2/v2.0/token", url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &tok) != nil {
		return "", resp.Status + " " + string(b)
	}
	return tok.AccessToken, ""
}

// The admin whose password is lost gets back in through the node on its
// machine: `herald users reset-password` talks to the socket in the data
// directory, which only the node's system user may open, and needs no
// sign-in. The old password stops working, and the audit log says who.
func TestResetPasswordThroughTheDataDirectory(t *testing.T) {
	n := testnode.Start(t, nil)
	dir := n.Config.DataDir
	var old string
	deadline := time.Now().Add(20 * time.Second)
	for old == "" && time.Now().Before(deadline) { // the first admin comes just after ready
		old, _ = signInAs(t, n.URL, "admin", testnode.AdminPassword)
	}
	if old == "" {
		t.Fatal("the admin never signed in with its first password")
	}
	fi, err := os.Stat(filepath.Join(dir, node.LocalSocket))
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("the local socket: %v, %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(filepath.Join(dir, node.LocalSocket))); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the local socket's directory: %v, %v; want one only the node's user may enter", fi, err)
	}

	code, out, errOut := runCLI(t, nil, "users", "reset-password", "--data-dir", dir)
	m := regexp.MustCompile(`new password of admin \(shown only this once\): (\S+)`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("reset-password: exit %d, %q, %q", code, out, errOut)
	}
	real, _ := filepath.EvalSymlinks(dir)
	if want := "through the node of data directory " + real + ", run by user "; !strings.Contains(errOut, want) {
		t.Fatalf("reset-password does not say which node took it: %q, want %q", errOut, want)
	}
	if tok, why := signInAs(t, n.URL, "admin", m[1]); tok == "" {
		t.Fatalf("the admin cannot sign in with the new password: %s", why)
	}
	if tok, _ := signInAs(t, n.URL, "admin", testnode.AdminPassword); tok != "" {
		t.Fatal("the old password still signs in")
	}

	// From the environment, where other users of the machine cannot read
	// it as they can a command line.
	code, out, errOut = runCLI(t, map[string]string{"HERALD_USER_PASSWORD": "chosen-password-1"}, "users", "reset-password", "--data-dir", dir, "admin")
	if code != 0 || !strings.Contains(out, "set the password of admin") {
		t.Fatalf("reset-password with HERALD_USER_PASSWORD: exit %d, %q, %q", code, out, errOut)
	}
	tok, why := signInAs(t, n.URL, "admin", "chosen-password-1")
	if tok == "" {
		t.Fatalf("the admin cannot sign in with the chosen password: %s", why)
	}

	req, _ := http.NewRequest(http.MethodGet, n.URL+"/v1.0/admin/auditLog?$top=50", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var log struct {
		Value []struct {
			Actor struct {
				Type string `json:"type"`
				Name string `json:"name"`
			} `json:"actor"`
			Action string `json:"action"`
			Target string `json:"target"`
		} `json:"value"`
	}
	err = json.NewDecoder(resp.Body).Decode(&log)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	resets := 0
	for _, r := range log.Value {
		if r.Action == "user.passwordReset" && r.Target == "admin" && r.Actor.Type == "system" && r.Actor.Name == "local socket" {
			resets++
		}
	}
	if resets != 2 {
		t.Errorf("the audit log holds %d resets by the local socket, want 2: %+v", resets, log.Value)
	}

	// The public listener knows nothing of it.
	resp, err = http.Post(n.URL+"/local/resetPassword", "application/json", strings.NewReader(`{"userPrincipalName":"admin"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /local/resetPassword on the public listener: %s, want 404", resp.Status)
	}
	if tok, _ := signInAs(t, n.URL, "admin", "chosen-password-1"); tok == "" {
		t.Error("the public listener's answer changed the admin's password")
	}

	// What goes wrong says what to do.
	if code, _, errOut = runCLI(t, nil, "users", "reset-password", "--data-dir", dir, "nobody"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("an unknown user: exit %d, %q", code, errOut)
	}
	if code, _, errOut = runCLI(t, nil, "users", "reset-password", "--data-dir", dir, "--user-password", "short", "admin"); code == 0 || !strings.Contains(errOut, "password") {
		t.Errorf("a short password: exit %d, %q", code, errOut)
	}
	if code, _, errOut = runCLI(t, nil, "users", "reset-password", "--data-dir", t.TempDir()); code == 0 || !strings.Contains(errOut, "none is running there") {
		t.Errorf("a directory without a node: exit %d, %q", code, errOut)
	}
}

// The command sends a password, and believes an answer, only through a
// path no other user could have laid: here another user's directory, with
// a socket in its local/, reached through their symlink in a sticky
// directory anyone may write to (as /tmp). The socket is served by this
// test's own process, so only the path check can refuse it.
func TestResetPasswordTrustsNoSocketAnotherUserCouldHavePut(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making another user's directory needs root")
	}
	const other = 65534
	base := t.TempDir()
	sticky := filepath.Join(base, "tmp")
	theirs := filepath.Join(base, "theirs")
	local := filepath.Join(theirs, "local")
	for _, d := range []string{sticky, theirs, local} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{theirs, local} {
		if err := os.Chown(d, other, other); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(local, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	reached := make(chan struct{}, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			reached <- struct{}{}
			c.Close()
		}
	}()
	link := filepath.Join(sticky, "herald-data")
	if err := os.Symlink(theirs, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, other, other); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, nil, "users", "reset-password", "--data-dir", link, "--user-password", "not-for-them-1")
	if code == 0 || !strings.Contains(errOut, "cannot be trusted") {
		t.Errorf("through another user's symlink in a sticky directory: exit %d, %q", code, errOut)
	}
	select {
	case <-reached:
		t.Error("the command connected to a socket another user could have put there")
	default:
	}
}

// A node that takes the request and never answers (stopped with SIGSTOP,
// or stuck) does not hold the command for good: it gives up and says
// what to check. The socket is this test's own, in a directory of its own.
func TestResetPasswordGivesUpOnANodeThatDoesNotAnswer(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "local")
	if err := os.Mkdir(local, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(local, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			held <- c // read nothing, answer nothing
		}
	}()
	defer func() {
		select {
		case c := <-held:
			c.Close()
		default:
		}
	}()
	before := localResetTimeout
	localResetTimeout = 300 * time.Millisecond
	defer func() { localResetTimeout = before }()
	code, _, errOut := runCLI(t, nil, "users", "reset-password", "--data-dir", dir)
	if code == 0 || !strings.Contains(errOut, "did not answer within 300ms") || !strings.Contains(errOut, "run this again") {
		t.Fatalf("a node that never answers: exit %d, %q", code, errOut)
	}
}
