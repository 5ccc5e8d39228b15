// Command herald is the Herald notification server and its admin client
// (API.md §9). It is thin: serve loads the config and hands over to node.Run;
// the other commands are calls of the client package.
package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/cluster"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// stdin is what commands read standard input from; tests replace it.
var stdin io.Reader = os.Stdin

// run is main without the process exit, so that tests can drive the command
// line and read what it prints.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Only the first signal asks for a graceful stop; restoring the default
	// handling lets a second Ctrl-C end a shutdown that hangs.
	context.AfterFunc(ctx, stop)

	app := newApp()
	app.Reader, app.Writer, app.ErrWriter = stdin, stdout, stderr
	app.Metadata = map[string]any{argsKey: args}
	if err := checkCommand(app, args); err != nil {
		fmt.Fprintf(stderr, "herald: %s\n", err)
		return 1
	}
	if err := app.RunContext(ctx, args); err != nil {
		fmt.Fprintf(stderr, "herald: %s\n", describeError(err))
		return 1
	}
	return 0
}

// describeError gives the "<code>: <message>" form for server errors,
// and says what to do about the connection errors an admin meets first.
func describeError(err error) string {
	var e *client.Error
	if errors.As(err, &e) {
		if e.Status == http.StatusBadRequest && strings.Contains(e.Message, "HTTP request to an HTTPS server") {
			return e.Error() + " (the node serves HTTPS: give --server https://HOST:PORT)"
		}
		return e.Error()
	}
	var unknownCA x509.UnknownAuthorityError
	// SSL_CERT_FILE is read where Go verifies with its own roots, not
	// where it asks the system's verifier.
	if errors.As(err, &unknownCA) && runtime.GOOS != "darwin" && runtime.GOOS != "windows" {
		return err.Error() + " (a certificate of your own CA, or self-signed: SSL_CERT_FILE=ca.pem herald ... makes this command trust it)"
	}
	return err.Error()
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "herald",
		Usage:   "a self-hosted user notification server",
		Version: readBuildVersion().Short(),
		// The shell completion script asks the binary (completion.go).
		EnableBashCompletion: true,
		OnUsageError:         returnUsageError,
		Commands: []*cli.Command{
			serveCommand(),
			sendCommand(),
			usersCommand(),
			appsCommand(),
			clusterCommand(),
			backupCommand(),
			restoreCommand(),
			benchCommand(),
			healthcheckCommand(),
			completionCommand(),
			{
				Name:  "version",
				Usage: "print the version, the commit it was built from and the Go release",
				Action: func(c *cli.Context) error {
					_, err := fmt.Fprint(c.App.Writer, readBuildVersion().Long())
					return err
				},
			},
		},
	}
	setUsageErrorHandler(app.Commands)
	return app
}

// checkCommand refuses an unknown command, or an unknown subcommand of a
// command that has them, before urfave/cli answers it with a help page or
// "No help topic for ...": the user learns that the word was wrong and
// which words are right.
func checkCommand(app *cli.App, args []string) error {
	cmds, path := app.Commands, "herald"
	var leaf *cli.Command
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "-") || len(cmds) == 0 {
			// flags and arguments: urfave/cli and the command check
			// those, but for the required flags, which it reports
			// under the whole help text.
			return checkRequired(leaf, path, args)
		}
		var found *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				found = c
				break
			}
		}
		if found == nil {
			if a == "help" || a == "h" {
				return nil
			}
			var names []string
			for _, c := range cmds {
				if !c.Hidden {
					names = append(names, c.Name)
				}
			}
			prefix := strings.TrimPrefix(strings.TrimPrefix(path, "herald"), " ")
			if prefix != "" {
				prefix += ": "
			}
			return fmt.Errorf("%sunknown command %q; the commands are: %s (%s --help describes them)",
				prefix, a, strings.Join(names, ", "), path)
		}
		cmds, path, leaf = found.Subcommands, path+" "+found.Name, found
	}
	return checkRequired(leaf, path, args)
}

// checkRequired names the required flags of cmd that args and the
// environment leave out, in one line; urfave/cli printed the command's
// whole help before its "Required flag ... not set".
func checkRequired(cmd *cli.Command, path string, args []string) error {
	if cmd == nil || len(cmd.Subcommands) > 0 {
		return nil
	}
	given := map[string]bool{}
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" { // "-": standard input, a value
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		given[name] = true
	}
	if given["h"] || given["help"] || given["generate-bash-completion"] {
		return nil
	}
	known := map[string]bool{}
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	for n := range given {
		if !known[n] {
			return nil // urfave/cli names the unknown flag first
		}
	}
	var missing []string
	for _, f := range cmd.Flags {
		if rf, ok := f.(cli.RequiredFlag); !ok || !rf.IsRequired() {
			continue
		}
		set := false
		for _, n := range f.Names() {
			set = set || given[n]
		}
		if ef, ok := f.(interface{ GetEnvVars() []string }); ok {
			for _, v := range ef.GetEnvVars() {
				set = set || os.Getenv(v) != ""
			}
		}
		if !set {
			missing = append(missing, "--"+f.Names()[0])
		}
	}
	name := strings.TrimPrefix(path, "herald ") // run prefixes "herald: "
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("%s: %s is required (%s --help describes it)", name, missing[0], path)
	}
	return fmt.Errorf("%s: %s are required (%s --help describes them)", name, strings.Join(missing, ", "), path)
}

// setUsageErrorHandler gives every subcommand the app's handling of bad
// flags; urfave/cli applies the app's OnUsageError to the root only.
func setUsageErrorHandler(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = returnUsageError
		setUsageErrorHandler(c.Subcommands)
	}
}

// returnUsageError makes a bad flag read like any other error, instead of
// scrolling the message away under the whole help text. An unknown flag is
// named as typed, with the closest known one, as a config file's unknown
// key is: "flag provided but not defined: -tls-crt" said neither.
func returnUsageError(c *cli.Context, err error, _ bool) error {
	// The flag package names a flag with one dash, as the user did not.
	if name, ok := strings.CutPrefix(err.Error(), "flag needs an argument: -"); ok && len(name) > 1 {
		return fmt.Errorf("--%s needs a value", name)
	}
	if v, name, ok := strings.Cut(err.Error(), " for flag -"); ok && strings.HasPrefix(v, "invalid value ") {
		name, _, _ = strings.Cut(name, ":")
		return fmt.Errorf("--%s %s: not a valid value for it", name, strings.TrimPrefix(v, "invalid value "))
	}
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok || c == nil {
		return err
	}
	var known []string
	flags := c.App.Flags
	if c.Command != nil && c.Command.Name != "" {
		flags = c.Command.Flags
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if len(n) > 1 {
				known = append(known, n)
			}
		}
	}
	path := "herald"
	if c.Command != nil && c.Command.Name != "" {
		path = c.Command.HelpName
	}
	dash := "--"
	if len(name) == 1 {
		dash = "-"
	}
	msg := fmt.Sprintf("unknown flag %s%s", dash, name)
	if hint := suggest(name, known); strings.HasPrefix(hint, " (did you mean") {
		best := strings.TrimSuffix(strings.TrimPrefix(hint, " (did you mean \""), "\"?)")
		msg += fmt.Sprintf(" (did you mean --%s?)", best)
	}
	return fmt.Errorf("%s; %s --help lists the flags", msg, path)
}

func serveCommand() *cli.Command {
	cfgFlags := serveConfigFlags()
	flags := []cli.Flag{configFileFlag(), peerDialFlag(), &cli.BoolFlag{Category: "Node", Name: "print-config",
		Usage: "print the merged settings and where each came from (default, file, env, flag), and exit", EnvVars: []string{envName("print-config")}}}
	for _, f := range cfgFlags {
		flags = append(flags, f.flag)
	}
	return &cli.Command{
		Name:  "serve",
		Usage: "run a Herald node",
		Description: "Every flag is also an environment variable HERALD_<FLAG> (upper case, - as _) and a key\n" +
			"of the YAML config file with the flag's name (app-rate: 0). Flags beat the environment,\n" +
			"which beats the file. --print-config shows the result.",
		Flags: flags,
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c, cfgFlags)
			if err != nil {
				return err
			}
			if c.Bool("print-config") {
				return printConfig(c, cfgFlags)
			}
			if cfg.Dial, err = parsePeerDial(c.StringSlice("peer-dial")); err != nil {
				return err
			}
			logger, err := newLogger(cfg, c.App.ErrWriter)
			if err != nil {
				return err
			}
			release, err := lockDataDir(cfg.DataDir)
			if err != nil {
				return err
			}
			defer release()
			if err := checkSwapped(cfg.DataDir); err != nil {
				return err
			}
			limit, set, err := memoryLimit(cfg.Memory, os.Getenv) // memlimit.go
			if err != nil {
				return err
			}
			if set {
				debug.SetMemoryLimit(limit)
				tuned, stop := context.WithCancel(c.Context)
				defer stop()
				startMemoryTuner(tuned, limit, logger)
			}
			logger.Info("herald starting", "version", readBuildVersion().Short(), "data_dir", cfg.DataDir,
				"go_memory_limit_mib", debug.SetMemoryLimit(-1)>>20)
			err = node.Run(c.Context, cfg, logger)
			if errors.Is(err, syscall.EADDRINUSE) {
				// Most often a second node on one machine that kept the
				// default --raft-addr or --http-addr of the first.
				err = fmt.Errorf("%w (another process has that port: each node on one machine needs its own --http-addr and --raft-addr)", err)
			}
			return err
		},
	}
}

// Flags and helpers shared by the client commands.

const defaultServer = "http://127.0.0.1:8750"

// clientFlags are the connection flags of every client command.
// --auth-password is the old name of --password in "users add", kept so
// that scripts written for it still run.
func clientFlags() []cli.Flag {
	const cat = "Connection"
	return []cli.Flag{
		&cli.StringFlag{Category: cat, Name: "server", Value: defaultServer, EnvVars: []string{"HERALD_SERVER"}, Usage: "`URL` of a Herald server (host:port means http://host:port)"},
		&cli.StringFlag{Category: cat, Name: "token", EnvVars: []string{"HERALD_TOKEN"}, Usage: "bearer `TOKEN` of an admin"},
		&cli.StringFlag{Category: cat, Name: "username", EnvVars: []string{"HERALD_USERNAME"}, Usage: "sign in as `UPN` (when no token is given)"},
		&cli.StringFlag{Category: cat, Name: "password", EnvVars: []string{"HERALD_PASSWORD"}, Usage: "password of --username"},
		&cli.StringFlag{Category: cat, Name: "auth-password", Hidden: true},
	}
}

// serverURL is --server with http:// added to a bare host:port, the form
// every other address on Herald's command line takes.
func serverURL(c *cli.Context) (string, error) {
	return normalizeServer(c.String("server"))
}

func normalizeServer(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("--server is empty: give the server's URL or host:port")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("--server %q: want http://host:port, https://host or host:port", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print the server's JSON instead of text"}
}

// connect returns a client that holds a token: --token if given, else one
// obtained by signing in with --username and the password flag.
func connect(c *cli.Context) (*client.Client, error) {
	server, err := serverURL(c)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(server)
	if err != nil {
		return nil, err
	}
	if tok := c.String("token"); tok != "" {
		return cl.With(client.WithToken(tok)), nil
	}
	user, pass := c.String("username"), c.String("password")
	if pass == "" {
		pass = c.String("auth-password")
	}
	if user == "" || pass == "" {
		return nil, errors.New("no credentials: give --token (HERALD_TOKEN), or --username and --password (HERALD_USERNAME, HERALD_PASSWORD)")
	}
	tok, err := signInPatiently(c.Context, cl, user, pass, 15*time.Second, c.App.ErrWriter)
	if err != nil {
		return nil, err
	}
	return cl.With(client.WithToken(tok.AccessToken)), nil
}

// signInPatiently signs in, trying again for up to patience while the
// server answers 503 with Retry-After (a cluster still forming, or its
// first admin not created yet), so that a command run right after the
// nodes start waits for them rather than fails.
func signInPatiently(ctx context.Context, cl *client.Client, user, pass string, patience time.Duration, say io.Writer) (*client.Token, error) {
	ctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var last *client.Error // the server's last 503
	gaveUp := func(err error) error {
		if last == nil {
			return err
		}
		// A node cut off from its leader cannot sign anyone in; say so
		// rather than leave a timeout (operator review).
		if !errors.As(err, new(*client.Error)) {
			err = fmt.Errorf("%w (its last answer: %s)", err, last.Message)
		}
		return fmt.Errorf("%w; the server could not sign in within %s: a node cut off from its cluster's leader "+
			"signs no one in; ask another node, or use an admin token (--token), which needs no sign-in "+
			"(herald healthcheck --ready --url SERVER says whether the node has a leader)", err, patience)
	}
	for told := false; ; told = true {
		tok, err := cl.PasswordToken(ctx, user, pass)
		var ce *client.Error
		if err != nil && ctx.Err() != nil {
			return nil, gaveUp(err)
		}
		if err == nil || !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || ce.RetryAfter == 0 {
			return tok, err
		}
		if strings.Contains(ce.Message, "clock") {
			// Refused for this node's clock (cluster/clock.go): asking it
			// again will not help, and the message says what will.
			return tok, err
		}
		last = ce
		wait := ce.RetryAfter
		if time.Now().Add(wait).After(deadline) {
			return nil, gaveUp(err)
		}
		if !told {
			fmt.Fprintf(say, "herald: the server cannot sign in yet (%s); trying again for up to %s\n", ce.Message, patience)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, gaveUp(ctx.Err())
		case <-t.C:
		}
	}
}

// clientAction is the action of a client command that asks the server one
// thing and prints the answer: as the server's JSON with --json, else as
// text.
func clientAction[T any](call func(*cli.Context, *client.Client) (T, error), text func(*cli.Context, T) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		cl, err := connect(c)
		if err != nil {
			return err
		}
		v, err := call(c, cl)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return printJSON(c.App.Writer, v)
		}
		return text(c, v)
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sendCommand() *cli.Command {
	return &cli.Command{
		Name:      "send",
		Usage:     "send a notification to a user (as an admin)",
		UsageText: "herald send --user UPN --app HOST --title T [--body B|-] [--raw R|-] [--priority P]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "user", Required: true, Usage: "`UPN` or id of the user"},
			appFlag("the application the notification is for"),
			&cli.StringFlag{Name: "title", Usage: "title of the visual notification"},
			&cli.StringFlag{Name: "body", Usage: "body of the visual notification (needs --title; - reads it from standard input)"},
			&cli.StringFlag{Name: "raw", Usage: "rawContent for the client app (- reads it from standard input)"},
			&cli.StringFlag{Name: "priority", Usage: "None, Low or High"},
			&cli.StringFlag{Name: "group", Usage: "groupName"},
			&cli.StringFlag{Name: "app-notification-id", Usage: "appNotificationId; sending the same one again replaces the notification"},
			jsonFlag(),
		}, clientFlags()...),
		Action: func(c *cli.Context) error {
			title, body, raw := c.String("title"), c.String("body"), c.String("raw")
			if body == "-" && raw == "-" {
				return errors.New("send: only one of --body and --raw can be read from standard input")
			}
			for _, v := range []*string{&body, &raw} {
				if *v == "-" {
					b, err := io.ReadAll(c.App.Reader)
					if err != nil {
						return fmt.Errorf("send: reading standard input: %w", err)
					}
					// A shell's here-string or echo ends the text with a
					// newline that is not part of the message.
					*v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
				}
			}
			if title == "" && raw == "" {
				return errors.New("send: give --title, --raw, or both")
			}
			if body != "" && title == "" {
				return errors.New("send: --body needs --title")
			}
			p := &client.Payload{RawContent: raw}
			if title != "" {
				p.VisualContent = &client.VisualContent{Title: title, Body: body}
			}
			cl, err := connect(c)
			if err != nil {
				return err
			}
			host := c.String("app")
			if isGUID(host) {
				a, err := findApp(c.Context, cl, host)
				if err != nil {
					return err
				}
				host = a.TargetHostName
			}
			n, err := cl.SendToUser(c.Context, c.String("user"), &client.Notification{
				TargetHostName:    host,
				AppNotificationID: c.String("app-notification-id"),
				GroupName:         c.String("group"),
				Payload:           p,
				Priority:          c.String("priority"),
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, n)
			}
			_, err = fmt.Fprintln(c.App.Writer, n.ID)
			return err
		},
	}
}

func usersCommand() *cli.Command {
	return &cli.Command{
		Name:  "users",
		Usage: "manage users (as an admin)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "create a user",
				UsageText: "herald users add --upn UPN --display-name NAME --user-password PASSWORD [--admin]",
				Description: "--password is the password you sign in with, as in every command; the new user's\n" +
					"is --user-password.",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "upn", Required: true, Usage: "userPrincipalName (the sign-in name)"},
					&cli.StringFlag{Name: "display-name", Usage: "display name"},
					userPasswordFlag("the new user's `PASSWORD` (at least 8 characters)"),
					&cli.BoolFlag{Name: "admin", Usage: "give the user the admin role"},
					jsonFlag(),
				}, clientFlags()...),
				Action: func(c *cli.Context) error {
					if c.String("user-password") == "" {
						return errors.New("users add: give the new user's password in HERALD_USER_PASSWORD or with --user-password (--password is the password you sign in with, as in every command)")
					}
					cl, err := connect(c)
					if err != nil {
						return err
					}
					role := "user"
					if c.Bool("admin") {
						role = "admin"
					}
					u, err := cl.CreateUser(c.Context, client.NewUser{
						UserPrincipalName: c.String("upn"),
						DisplayName:       c.String("display-name"),
						Password:          c.String("user-password"),
						Roles:             []string{role},
					})
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, u)
					}
					_, err = fmt.Fprintf(c.App.Writer, "created user %s (id %s, roles %s)\n", u.UserPrincipalName, u.ID, strings.Join(u.Roles, ","))
					return err
				},
			},
			{
				Name:  "list",
				Usage: "list the users",
				Flags: append([]cli.Flag{jsonFlag()}, clientFlags()...),
				Action: clientAction(func(c *cli.Context, cl *client.Client) ([]client.User, error) {
					return cl.ListUsers(c.Context)
				}, func(c *cli.Context, users []client.User) error {
					tw := newTable(c.App.Writer)
					fmt.Fprintln(tw, "UPN\tDISPLAY NAME\tROLES\tENABLED\tCREATED\tID")
					for _, u := range users {
						created := "-"
						if !u.CreatedDateTime.IsZero() {
							created = u.CreatedDateTime.UTC().Format("2006-01-02 15:04")
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\n", u.UserPrincipalName, orDash(u.DisplayName),
							orDash(strings.Join(u.Roles, ",")), u.AccountEnabled, created, u.ID)
					}
					return tw.Flush()
				}),
			},
			{
				Name:      "remove",
				Usage:     "delete users with their tokens, subscriptions and notifications",
				ArgsUsage: "UPN|ID...",
				Flags:     clientFlags(),
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return errors.New("users remove: name at least one user (UPN or id)")
					}
					cl, err := connect(c)
					if err != nil {
						return err
					}
					for _, id := range c.Args().Slice() {
						if err := cl.DeleteUser(c.Context, id); err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "removed user %s\n", id)
					}
					return nil
				},
			},
			resetPasswordCommand(),
		},
	}
}

func appsCommand() *cli.Command {
	return &cli.Command{
		Name:  "apps",
		Usage: "manage applications (as an admin)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "register an application and print its first client secret",
				UsageText: `herald apps add --name "Contoso Tasks" --host tasks.contoso.com`,
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "name", Required: true, Usage: "display name"},
					&cli.StringFlag{Name: "host", Required: true, Usage: "targetHostName, a lower-case DNS name"},
					jsonFlag(),
				}, clientFlags()...),
				Action: func(c *cli.Context) error {
					cl, err := connect(c)
					if err != nil {
						return err
					}
					a, err := cl.CreateApplication(c.Context, client.NewApplication{
						DisplayName:    c.String("name"),
						TargetHostName: c.String("host"),
					})
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, a)
					}
					tw := newTable(c.App.Writer)
					fmt.Fprintf(tw, "id:\t%s\n", a.ID)
					fmt.Fprintf(tw, "appId:\t%s\n", a.AppID)
					fmt.Fprintf(tw, "targetHostName:\t%s\n", a.TargetHostName)
					for _, p := range a.PasswordCredentials {
						if p.SecretText != "" {
							fmt.Fprintf(tw, "secret:\t%s\n", p.SecretText)
						}
					}
					if err := tw.Flush(); err != nil {
						return err
					}
					fmt.Fprintln(c.App.ErrWriter, "The secret is shown only once; store it now.")
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list the applications",
				Flags: append([]cli.Flag{jsonFlag()}, clientFlags()...),
				Action: clientAction(func(c *cli.Context, cl *client.Client) ([]client.Application, error) {
					return cl.ListApplications(c.Context)
				}, func(c *cli.Context, apps []client.Application) error {
					tw := newTable(c.App.Writer)
					fmt.Fprintln(tw, "NAME\tTARGET HOST\tAPP ID\tSECRETS\tID")
					for _, a := range apps {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", a.DisplayName, a.TargetHostName, a.AppID, len(a.PasswordCredentials), a.ID)
					}
					return tw.Flush()
				}),
			},
			{
				Name:      "add-secret",
				Usage:     "add a client secret to an application",
				UsageText: "herald apps add-secret --app HOST|APPID|ID [--name NAME]",
				Flags: append([]cli.Flag{
					appFlag("the application to add the secret to"),
					&cli.StringFlag{Name: "name", Usage: "display name of the secret"},
					jsonFlag(),
				}, clientFlags()...),
				Action: func(c *cli.Context) error {
					cl, err := connect(c)
					if err != nil {
						return err
					}
					id := c.String("app")
					if !isGUID(id) {
						a, err := findApp(c.Context, cl, id)
						if err != nil {
							return err
						}
						id = a.ID
					}
					p, err := cl.AddPassword(c.Context, id, c.String("name"))
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, p)
					}
					tw := newTable(c.App.Writer)
					fmt.Fprintf(tw, "keyId:\t%s\n", p.KeyID)
					fmt.Fprintf(tw, "secret:\t%s\n", p.SecretText)
					if !p.EndDateTime.IsZero() {
						fmt.Fprintf(tw, "expires:\t%s\n", p.EndDateTime.UTC().Format("2006-01-02 15:04"))
					}
					if err := tw.Flush(); err != nil {
						return err
					}
					fmt.Fprintln(c.App.ErrWriter, "The secret is shown only once; store it now.")
					return nil
				},
			},
		},
	}
}

// aheadOf words the sign of a clock offset from the leader's.
func aheadOf(ms int64) string {
	if ms > 0 {
		return "ahead of"
	}
	return "behind"
}

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "inspect and change the cluster's membership (as an admin), or make a cluster key",
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "show the leader and the state of every node",
				Flags: append([]cli.Flag{jsonFlag()}, clientFlags()...),
				Action: clientAction(func(c *cli.Context, cl *client.Client) (*client.ClusterStatus, error) {
					return cl.Cluster(c.Context)
				}, func(c *cli.Context, st *client.ClusterStatus) error {
					fmt.Fprintf(c.App.Writer, "leader: %s  term: %d  commit index: %d  slots: %d  rules level: %d  cluster: %s\n\n",
						orDash(st.LeaderID), st.Term, st.CommitIndex, st.SlotCount, st.RulesLevel, orDash(st.ClusterID))
					tw := newTable(c.App.Writer)
					fmt.Fprintln(tw, "ID\tSTATE\tVOTER\tHTTP\tRAFT\tAPPLIED\tSLOTS\tLIVE\tLAST CONTACT")
					for _, n := range st.Nodes {
						contact := fmt.Sprintf("%dms", n.LastContactMs)
						switch {
						case n.State == "leader":
							contact = "-"
						case n.State == "unreachable" && n.LastContactMs == 0:
							contact = "unknown" // not answering, and not known for how long
						case n.State == "unreachable":
							contact = fmt.Sprintf("%dms ago (by the leader)", n.LastContactMs)
						}
						fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\t%d\t%d\t%d\t%s\n", n.ID, n.State, n.Voter,
							orDash(n.HTTPAddr), orDash(n.RaftAddr), n.AppliedIndex, n.Slots, n.LiveConnections, contact)
					}
					if err := tw.Flush(); err != nil {
						return err
					}
					for _, n := range st.Nodes {
						if st.ClusterID != "" && n.ClusterID != "" && n.ClusterID != st.ClusterID {
							fmt.Fprintf(c.App.Writer, "\n%s holds another cluster's data (cluster %s): the others refuse it. "+
								"Empty its --data-dir, or restore it from the same backup as the others, and start it again.\n", n.ID, n.ClusterID)
						}
						if n.Disk == "full" {
							fmt.Fprintf(c.App.Writer, "\n%s: its disk is below --disk-reserve; it refuses writes that add data (507) "+
								"while it leads, and hands the leadership to a node with room. Free space on it.\n", n.ID)
						}
						if n.ClockOffsetMs == nil {
							continue
						}
						if off := time.Duration(*n.ClockOffsetMs) * time.Millisecond; off.Abs() > cluster.ClockOffsetWarn {
							fmt.Fprintf(c.App.Writer, "\n%s: its clock is %s %s the leader's. Set the clocks right (NTP): "+
								"a node more than %s off the middle of the voters' clocks has its writes refused (503).\n",
								n.ID, off.Abs(), aheadOf(*n.ClockOffsetMs), cluster.MaxClockOffset)
						}
					}
					return nil
				}),
			},
			{
				Name:  "join",
				Usage: "add a node to the cluster as a voter",
				Description: "A node started with --join or --bootstrap-expect joins by itself; this adds one by\n" +
					"hand, or adds back a node removed with \"herald cluster remove\".",
				UsageText: "herald cluster join --id ID --raft-addr HOST:PORT --http-addr HOST:PORT",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "id", Required: true, Usage: "the node's `ID` (its --node-id)"},
					&cli.StringFlag{Name: "raft-addr", Required: true, Usage: "`HOST:PORT` the other nodes reach its Raft transport at"},
					&cli.StringFlag{Name: "http-addr", Required: true, Usage: "`HOST:PORT` the other nodes reach its HTTP API at"},
				}, clientFlags()...),
				Action: func(c *cli.Context) error {
					cl, err := connect(c)
					if err != nil {
						return err
					}
					id := c.String("id")
					if err := cl.AddClusterNode(c.Context, client.NewClusterNode{ID: id,
						RaftAddr: c.String("raft-addr"), HTTPAddr: c.String("http-addr")}); err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.App.Writer, "added node %s\n", id)
					return err
				},
			},
			{
				Name:      "remove",
				Usage:     "remove a node from the cluster",
				ArgsUsage: "ID",
				Description: "Remove a node before retiring it for good; a node that is only down for a while\n" +
					"keeps its place, and its users' deliveries move to the others meanwhile.",
				Flags: clientFlags(),
				Action: func(c *cli.Context) error {
					if c.NArg() > 1 && slices.ContainsFunc(c.Args().Tail(), func(a string) bool { return strings.HasPrefix(a, "-") }) {
						return errors.New("cluster remove: put the flags before the id: herald cluster remove [--server URL] ID")
					}
					if c.NArg() != 1 {
						return errors.New("cluster remove: name one node by its id (herald cluster status lists them)")
					}
					cl, err := connect(c)
					if err != nil {
						return err
					}
					id := c.Args().First()
					if err := cl.RemoveClusterNode(c.Context, id); err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.App.Writer, "removed node %s\n", id)
					return err
				},
			},
			{
				Name:  "key",
				Usage: "print a new random cluster key (needs no server)",
				Description: "Give the same key to every node: --cluster-key or HERALD_CLUSTER_KEY.\n" +
					"  KEY=$(herald cluster key)",
				Action: func(c *cli.Context) error {
					key, err := newClusterKey()
					if err != nil {
						return err
					}
					_, err = fmt.Fprintln(c.App.Writer, key)
					return err
				},
			},
		},
	}
}

// newClusterKey is 32 random bytes, base64url without padding: 43
// characters that survive a shell, a YAML file and an environment variable.
// A key that would start with "-" is drawn again, so that it never reads as
// a flag on a command line.
func newClusterKey() (string, error) {
	b := make([]byte, 32)
	for {
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("cluster key: %w", err)
		}
		if key := base64.RawURLEncoding.EncodeToString(b); key[0] != '-' {
			return key, nil
		}
	}
}

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:      "backup",
		Usage:     "save a consistent backup of the cluster's state (as an admin)",
		UsageText: "herald backup --out FILE [--force] [--stale | --data-dir DIR]",
		Description: "The file appears only once the whole backup has arrived and is on disk; an existing\n" +
			"file is kept unless --force is given. With --data-dir, the backup is read from a stopped\n" +
			"node's data directory on this machine, with no server and no sign-in.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "out", Required: true, TakesFile: true, Usage: "`FILE` to write, - for standard output"},
			&cli.BoolFlag{Name: "force", Usage: "replace --out if it exists"},
			&cli.BoolFlag{Name: "stale", Usage: "back up what the node holds even if it cannot confirm that it has every " +
				"acknowledged write (a node that has lost its cluster)"},
			&cli.StringFlag{Name: "data-dir", Usage: "back up the data directory `DIR` of a stopped node on this machine, " +
				"without a server or sign-in (a node whose cluster has lost its quorum, where no one can sign in)"},
		}, clientFlags()...),
		Action: func(c *cli.Context) error {
			out := c.String("out")
			force := c.Bool("force")
			if out != "-" && !force {
				if _, err := os.Stat(out); err == nil {
					return fmt.Errorf("backup: %s exists; give --force to replace it, or another --out", out)
				}
			}
			var backup func(context.Context, io.Writer) (int64, error)
			if dir := c.String("data-dir"); dir != "" {
				if c.Bool("stale") {
					return fmt.Errorf("backup: --stale asks a running node; --data-dir reads a stopped node's directory itself: give one of them")
				}
				release, err := lockStoppedDataDir(dir)
				if err != nil {
					return err
				}
				defer release()
				backup = func(ctx context.Context, w io.Writer) (int64, error) {
					return 0, raft.BackupDir(ctx, dir, w)
				}
			} else {
				cl, err := connect(c)
				if err != nil {
					return err
				}
				backup = cl.Backup
				if c.Bool("stale") {
					backup = cl.StaleBackup
				}
			}
			p := startProgress(c.App.ErrWriter, "backup: received")
			if out == "-" {
				_, err := backup(c.Context, p.Writer(c.App.Writer))
				p.Stop()
				return err
			}
			_, err := backupToFile(c.Context, backup, out, force, p)
			n := p.Stop()
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "wrote %s (%d bytes) to %s\n", formatBytes(n), n, out)
			return nil
		},
	}
}

// backupToFile writes the backup beside path and renames it into place only
// once it is complete and synced, so that a broken transfer never leaves a
// truncated file under the name a restore would be pointed at.
func backupToFile(ctx context.Context, backup func(context.Context, io.Writer) (int64, error), path string, force bool, p *progress) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.partial")
	if err != nil {
		// The error names the hidden partial file, which the admin never
		// asked for; say what it is about: the directory of --out.
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return 0, fmt.Errorf("--out %s: cannot write in %s: %w", path, filepath.Dir(path), err)
	}
	n, err := backup(ctx, p.Writer(f))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = placeFile(f.Name(), path, force)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return n, err
	}
	return n, nil
}

// appFlag is --app, which names an application the same way in every
// command: by its targetHostName, its appId or its id.
func appFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "app", Required: true, Usage: usage + ": its targetHostName, appId or id"}
}

// findApp looks up the application that ref names, as appFlag describes.
func findApp(ctx context.Context, cl *client.Client, ref string) (*client.Application, error) {
	apps, err := cl.ListApplications(ctx)
	if err != nil {
		return nil, err
	}
	for i, a := range apps {
		if a.ID == ref || a.AppID == ref || strings.EqualFold(a.TargetHostName, ref) {
			return &apps[i], nil
		}
	}
	return nil, fmt.Errorf("no application has the targetHostName, appId or id %q (herald apps list shows them)", ref)
}

// isGUID reports whether s has the shape of an id or appId (a UUID), which
// a targetHostName, a DNS name, never has.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}

// placeFile moves tmp to path. Without force a link, which fails on an
// existing name, puts it there, so that a file that appeared meanwhile is
// not replaced either; where links are not supported, a rename after a
// last look.
func placeFile(tmp, path string, force bool) error {
	if force {
		return os.Rename(tmp, path)
	}
	err := os.Link(tmp, path)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("backup: %s exists; give --force to replace it, or another --out", path)
	}
	if err == nil {
		return os.Remove(tmp)
	}
	if _, serr := os.Stat(path); serr == nil {
		return fmt.Errorf("backup: %s exists; give --force to replace it, or another --out", path)
	}
	return os.Rename(tmp, path)
}
