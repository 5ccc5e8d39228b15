package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-notify/herald/httpapi"
	"github.com/herald-notify/herald/internal/localsock"
	"github.com/herald-notify/herald/node"
)

// resetPasswordCommand gives a user a new password through the node that
// runs on this machine, over the socket in its data directory: no sign-in,
// since it is the way back in when the admin's password is lost.
func resetPasswordCommand() *cli.Command {
	return &cli.Command{
		Name:      "reset-password",
		Usage:     "give a user a new password through the node on this machine, without signing in",
		UsageText: "herald users reset-password [--data-dir DIR] [--user-password PASSWORD] [UPN]",
		Description: "For the admin whose password is lost: run it on a machine where a node of the cluster\n" +
			"runs, as a system user who may open that node's data directory (the user herald runs as, or\n" +
			"root). UPN is the user to reset, admin when not given. Without HERALD_USER_PASSWORD or\n" +
			"--user-password a password is generated and printed once. The user's sessions end on every\n" +
			"node, and the audit log records the reset.",
		ArgsUsage: "[UPN]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: "./herald-data", EnvVars: []string{"HERALD_DATA_DIR"},
				Usage: "`DIR` of the node running on this machine"},
			userPasswordFlag("the new `PASSWORD` (at least 8 characters; default: generated)"),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return fmt.Errorf("users reset-password: name one user, not %d", c.NArg())
			}
			upn := "admin"
			if c.NArg() == 1 {
				upn = c.Args().First()
			}
			out, via, err := localReset(c.Context, c.String("data-dir"),
				httpapi.LocalResetRequest{UserPrincipalName: upn, Password: c.String("user-password")})
			if err != nil {
				return err
			}
			// Which node took it: the data directory named may not be
			// the one meant (./herald-data in someone else's directory).
			fmt.Fprintln(c.App.ErrWriter, via)
			if c.Bool("json") {
				return printJSON(c.App.Writer, out)
			}
			if out.Password != "" {
				fmt.Fprintf(c.App.Writer, "new password of %s (shown only this once): %s\n", out.UserPrincipalName, out.Password)
			} else {
				fmt.Fprintf(c.App.Writer, "set the password of %s\n", out.UserPrincipalName)
			}
			if !out.AccountEnabled {
				fmt.Fprintf(c.App.ErrWriter, "note: %s is disabled; an admin enables it again (herald users, or the web console)\n", out.UserPrincipalName)
			}
			return nil
		},
	}
}

// userPasswordFlag is the password a command gives a user. The
// environment is the better place for it: a process's command line is
// open to every user of the machine while it runs, its environment only to
// its own user and root.
func userPasswordFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "user-password", EnvVars: []string{"HERALD_USER_PASSWORD"},
		Usage: usage + "; other users of this machine can read a command line, so prefer the variable"}
}

// maxSocketPath is the longest path a Unix socket may have on Linux (the
// 108 bytes of sun_path, one of them the terminating zero).
const maxSocketPath = 107

// localReset asks the node whose data directory is dir, once it has
// checked, as the node did, that no user but the node's and root could
// have put a socket there, and that the process that answers is the
// node's user's or root's: a password is not sent, nor an answer
// believed, otherwise.
func localReset(ctx context.Context, dir string, in httpapi.LocalResetRequest) (*httpapi.LocalResetAnswer, string, error) {
	ctx, cancel := context.WithTimeout(ctx, localResetTimeout)
	defer cancel()
	given := filepath.Join(dir, filepath.Dir(node.LocalSocket))
	// Whose the socket's directory is, where it leads; the checks below
	// walk the path as given too, symlinks and all.
	resolved, err := filepath.EvalSymlinks(given)
	var owner int
	if err == nil {
		owner, err = localsock.Owner(resolved)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// The node may run and have declined to serve the socket.
		if o, oerr := localsock.Owner(dir); oerr == nil {
			if _, cerr := localsock.CheckPath(dir, o, o != os.Geteuid()); cerr != nil {
				return nil, "", fmt.Errorf("a node on %s serves no socket for resets: %w; let no other user write there (chmod go-w) and restart it", dir, cerr)
			}
		}
		return nil, "", noNode(dir, filepath.Join(dir, node.LocalSocket))
	case errors.Is(err, fs.ErrPermission):
		return nil, "", noAccess(filepath.Join(dir, node.LocalSocket))
	}
	var real string
	if err == nil {
		real, err = localsock.CheckPath(given, owner, owner != os.Geteuid())
	}
	if err == nil {
		err = localsock.Private(real, owner)
	}
	path := filepath.Join(real, filepath.Base(node.LocalSocket))
	if err != nil {
		return nil, "", fmt.Errorf("%s cannot be trusted to reach the node: %w", filepath.Join(dir, node.LocalSocket), err)
	}
	if len(path) > maxSocketPath {
		return nil, "", fmt.Errorf("the data directory's path %s is too long for a socket (over %d bytes), so the node serves none; "+
			"move the data directory to a shorter path and restart the node", dir, maxSocketPath-len(node.LocalSocket)-1)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		if err := localsock.Trusted(c, owner); err != nil {
			c.Close()
			return nil, fmt.Errorf("not the node: %w", err)
		}
		return c, nil
	}}}
	body, err := json.Marshal(in)
	if err != nil {
		return nil, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://local/local/resetPassword", bytes.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	switch {
	case errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED):
		return nil, "", noNode(dir, path)
	case errors.Is(err, syscall.EACCES):
		return nil, "", noAccess(path)
	case errors.Is(err, context.DeadlineExceeded):
		return nil, "", fmt.Errorf("the node on %s did not answer within %v: it may be stopped or stuck; see its log, "+
			"and run this again (the reset may or may not have been made)", dir, localResetTimeout)
	case err != nil:
		return nil, "", fmt.Errorf("reach the node through %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return nil, "", fmt.Errorf("users reset-password: %s (%s)", e.Error.Message, e.Error.Code)
		}
		return nil, "", fmt.Errorf("users reset-password: the node answered %s", resp.Status)
	}
	var out httpapi.LocalResetAnswer
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, "", fmt.Errorf("users reset-password: the node's answer: %w", err)
	}
	return &out, fmt.Sprintf("through the node of data directory %s, run by %s", filepath.Dir(real), userName(owner)), nil
}

// localResetTimeout bounds a reset: a node stopped (SIGSTOP) or stuck
// would otherwise hold the command for good. A variable for the tests.
var localResetTimeout = time.Minute

// userName is the system user uid, by name where the system has one.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("user %s (%d)", u.Username, uid)
	}
	return fmt.Sprintf("user %d", uid)
}

func noNode(dir, path string) error {
	return fmt.Errorf("no node answers on data directory %s (nothing listens on %s): none is running there, or its socket "+
		"was removed while it ran (a restart makes it again); start it, or give its --data-dir", dir, path)
}

func noAccess(path string) error {
	return fmt.Errorf("%s may not be opened by this system user: run as the user herald runs as, or as root", path)
}
