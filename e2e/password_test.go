package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// passwordInLog matches the first admin's password in the text log line
// that announces it, quoted or not.
var passwordInLog = regexp.MustCompile(`password=("(?:[^"\\]|\\.)*"|\S+)`)

// TestFirstStartPrintsAdminPasswordOnce starts a server without
// HERALD_ADMIN_PASSWORD: its log shows the generated password, which signs
// in as admin; a restart on the same data directory does not show it again.
func TestFirstStartPrintsAdminPasswordOnce(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{DataDir: t.TempDir(),
		Args: []string{"--shutdown-timeout", shutdownTimeout.String()}})
	var password string
	eventually(t, eventTimeout, "the generated admin password in the log", func() error {
		m := passwordInLog.FindStringSubmatch(srv.log.String())
		if m == nil {
			return fmt.Errorf("no password= in the log")
		}
		password = m[1]
		if strings.HasPrefix(password, `"`) {
			var err error
			if password, err = strconv.Unquote(password); err != nil {
				return err
			}
		}
		return nil
	})
	if len(password) < 8 {
		t.Fatalf("generated password %q is shorter than 8 characters", password)
	}
	if c := strings.Count(srv.log.String(), password); c != 1 {
		t.Errorf("the password appears %d times in the log, want once", c)
	}
	a := newAPI(srv)
	token := a.signIn(t, "admin", password)
	var me user
	a.call(t, http.StatusOK, "GET", "/v1.0/me", token, nil, nil, &me)
	if me.UserPrincipalName != "admin" {
		t.Fatalf("signed in with the logged password as %+v", me)
	}

	if code, _ := srv.terminate(t, shutdownTimeout+5*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	srv = srv.restart(t)
	if log := srv.log.String(); strings.Contains(log, password) || passwordInLog.MatchString(log) {
		t.Errorf("the restarted server logs the admin password again:\n%s", log)
	}
	newAPI(srv).signIn(t, "admin", password)
}

// TestChangedAdminPasswordIsSaidToBeIgnored restarts a node with another
// HERALD_ADMIN_PASSWORD, as an admin who lost the password might: the old
// password still signs in, and the log says why the new one does not, and
// what does reset it. It used to start without a word.
func TestChangedAdminPasswordIsSaidToBeIgnored(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{DataDir: t.TempDir(), Env: []string{"HERALD_ADMIN_PASSWORD=" + adminPassword}})
	if strings.Contains(srv.log.String(), "is ignored") {
		t.Errorf("the first start says the password is ignored:\n%s", srv.log.String())
	}
	if code, _ := srv.terminate(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	again := startServer(t, serverOpts{DataDir: srv.DataDir, HTTPAddr: srv.HTTPAddr, RaftAddr: srv.RaftAddr,
		Env: []string{"HERALD_ADMIN_PASSWORD=a-changed-admin-password"}})
	newAPI(again).signIn(t, "admin", adminPassword)
	log := again.log.String()
	if !strings.Contains(log, "HERALD_ADMIN_PASSWORD) is ignored") || !strings.Contains(log, "herald users reset-password") {
		t.Errorf("the restart does not say the changed password is ignored:\n%s", log)
	}
}
