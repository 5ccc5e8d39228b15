// Command herald is the Herald notification server and its admin client
// (API.md §9). It is thin: serve loads the config and hands over to node.Run;
// the other commands are calls of the client package.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/node"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is main without the process exit, so that tests can drive the command
// line and read what it prints.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Only the first signal asks for a graceful stop; restoring the default
	// handling lets a second Ctrl-C end a shutdown that hangs.
	context.AfterFunc(ctx, stop)

	app := newApp()
	app.Writer, app.ErrWriter = stdout, stderr
	if err := app.RunContext(ctx, args); err != nil {
		fmt.Fprintf(stderr, "herald: %s\n", describeError(err))
		return 1
	}
	return 0
}

// describeError gives the "<code>: <message>" form for server errors.
func describeError(err error) string {
	var e *client.Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}

func newApp() *cli.App {
	app := &cli.App{
		Name:         "herald",
		Usage:        "a self-hosted user notification server",
		Version:      version,
		OnUsageError: returnUsageError,
		Commands: []*cli.Command{
			serveCommand(),
			sendCommand(),
			usersCommand(),
			appsCommand(),
			clusterCommand(),
			backupCommand(),
			restoreCommand(),
			benchCommand(),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					_, err := fmt.Fprintln(c.App.Writer, version)
					return err
				},
			},
		},
	}
	setUsageErrorHandler(app.Commands)
	return app
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
// scrolling the message away under the whole help text.
func returnUsageError(_ *cli.Context, err error, _ bool) error { return err }

func serveCommand() *cli.Command {
	cfgFlags := serveConfigFlags()
	flags := []cli.Flag{configFileFlag(), peerDialFlag()}
	for _, f := range cfgFlags {
		flags = append(flags, f.flag)
	}
	return &cli.Command{
		Name:  "serve",
		Usage: "run a Herald node",
		Description: "Every flag is also an environment variable HERALD_<FLAG> (upper case, - as _) and a key\n" +
			"of the YAML config file. Flags beat the environment, which beats the file.",
		Flags: flags,
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c, cfgFlags)
			if err != nil {
				return err
			}
			if cfg.Dial, err = parsePeerDial(c.StringSlice("peer-dial")); err != nil {
				return err
			}
			logger, err := newLogger(cfg, c.App.ErrWriter)
			if err != nil {
				return err
			}
			return node.Run(c.Context, cfg, logger)
		},
	}
}

// Flags and helpers shared by the client commands.

const defaultServer = "http://127.0.0.1:8750"

// clientFlags are the connection flags of a client command. passwordFlag is
// "password" except in "users add", where --password is the new user's.
func clientFlags(passwordFlag string) []cli.Flag {
	const cat = "Connection"
	return []cli.Flag{
		&cli.StringFlag{Category: cat, Name: "server", Value: defaultServer, EnvVars: []string{"HERALD_SERVER"}, Usage: "`URL` of a Herald server"},
		&cli.StringFlag{Category: cat, Name: "token", EnvVars: []string{"HERALD_TOKEN"}, Usage: "bearer `TOKEN` of an admin"},
		&cli.StringFlag{Category: cat, Name: "username", EnvVars: []string{"HERALD_USERNAME"}, Usage: "sign in as `UPN` (when no token is given)"},
		&cli.StringFlag{Category: cat, Name: passwordFlag, EnvVars: []string{"HERALD_PASSWORD"}, Usage: "password of --username"},
	}
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print the server's JSON instead of text"}
}

// connect returns a client that holds a token: --token if given, else one
// obtained by signing in with --username and the password flag.
func connect(c *cli.Context, passwordFlag string) (*client.Client, error) {
	cl, err := client.New(c.String("server"))
	if err != nil {
		return nil, err
	}
	if tok := c.String("token"); tok != "" {
		return cl.With(client.WithToken(tok)), nil
	}
	user, pass := c.String("username"), c.String(passwordFlag)
	if user == "" || pass == "" {
		return nil, fmt.Errorf("no credentials: give --token (HERALD_TOKEN), or --username and --%s (HERALD_USERNAME, HERALD_PASSWORD)", passwordFlag)
	}
	tok, err := cl.PasswordToken(c.Context, user, pass)
	if err != nil {
		return nil, err
	}
	return cl.With(client.WithToken(tok.AccessToken)), nil
}

// clientAction is the action of a client command that asks the server one
// thing and prints the answer: as the server's JSON with --json, else as
// text.
func clientAction[T any](call func(*cli.Context, *client.Client) (T, error), text func(*cli.Context, T) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		cl, err := connect(c, "password")
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
		UsageText: "herald send --user UPN --app HOST --title T [--body B] [--raw R] [--priority P]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "user", Required: true, Usage: "`UPN` or id of the user"},
			&cli.StringFlag{Name: "app", Required: true, Usage: "targetHostName of the application the notification is for"},
			&cli.StringFlag{Name: "title", Usage: "title of the visual notification"},
			&cli.StringFlag{Name: "body", Usage: "body of the visual notification (needs --title)"},
			&cli.StringFlag{Name: "raw", Usage: "rawContent for the client app"},
			&cli.StringFlag{Name: "priority", Usage: "None, Low or High"},
			&cli.StringFlag{Name: "group", Usage: "groupName"},
			&cli.StringFlag{Name: "app-notification-id", Usage: "appNotificationId; sending the same one again replaces the notification"},
			jsonFlag(),
		}, clientFlags("password")...),
		Action: func(c *cli.Context) error {
			title, body, raw := c.String("title"), c.String("body"), c.String("raw")
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
			cl, err := connect(c, "password")
			if err != nil {
				return err
			}
			n, err := cl.SendToUser(c.Context, c.String("user"), &client.Notification{
				TargetHostName:    c.String("app"),
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
				UsageText: "herald users add --upn UPN --display-name NAME --password PASSWORD [--admin]",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "upn", Required: true, Usage: "userPrincipalName (the sign-in name)"},
					&cli.StringFlag{Name: "display-name", Usage: "display name"},
					&cli.StringFlag{Name: "password", Required: true, Usage: "the new user's password (at least 8 characters)"},
					&cli.BoolFlag{Name: "admin", Usage: "give the user the admin role"},
					jsonFlag(),
				}, clientFlags("auth-password")...),
				Action: func(c *cli.Context) error {
					cl, err := connect(c, "auth-password")
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
						Password:          c.String("password"),
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
				Flags: append([]cli.Flag{jsonFlag()}, clientFlags("password")...),
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
				Flags:     clientFlags("password"),
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return errors.New("users remove: name at least one user (UPN or id)")
					}
					cl, err := connect(c, "password")
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
				}, clientFlags("password")...),
				Action: func(c *cli.Context) error {
					cl, err := connect(c, "password")
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
				Flags: append([]cli.Flag{jsonFlag()}, clientFlags("password")...),
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
				UsageText: "herald apps add-secret --app ID [--name NAME]",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "app", Required: true, Usage: "the application's `ID` (the id, not the appId)"},
					&cli.StringFlag{Name: "name", Usage: "display name of the secret"},
					jsonFlag(),
				}, clientFlags("password")...),
				Action: func(c *cli.Context) error {
					cl, err := connect(c, "password")
					if err != nil {
						return err
					}
					p, err := cl.AddPassword(c.Context, c.String("app"), c.String("name"))
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

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "inspect and change the cluster's membership (as an admin), or make a cluster key",
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "show the leader and the state of every node",
				Flags: append([]cli.Flag{jsonFlag()}, clientFlags("password")...),
				Action: clientAction(func(c *cli.Context, cl *client.Client) (*client.ClusterStatus, error) {
					return cl.Cluster(c.Context)
				}, func(c *cli.Context, st *client.ClusterStatus) error {
					fmt.Fprintf(c.App.Writer, "leader: %s  term: %d  commit index: %d  slots: %d\n\n",
						orDash(st.LeaderID), st.Term, st.CommitIndex, st.SlotCount)
					tw := newTable(c.App.Writer)
					fmt.Fprintln(tw, "ID\tSTATE\tVOTER\tHTTP\tRAFT\tAPPLIED\tSLOTS\tLIVE\tLAST CONTACT")
					for _, n := range st.Nodes {
						contact := fmt.Sprintf("%dms", n.LastContactMs)
						if n.State == "leader" {
							contact = "-"
						}
						fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\t%d\t%d\t%d\t%s\n", n.ID, n.State, n.Voter,
							orDash(n.HTTPAddr), orDash(n.RaftAddr), n.AppliedIndex, n.Slots, n.LiveConnections, contact)
					}
					return tw.Flush()
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
				}, clientFlags("password")...),
				Action: func(c *cli.Context) error {
					cl, err := connect(c, "password")
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
				Flags: clientFlags("password"),
				Action: func(c *cli.Context) error {
					if c.NArg() > 1 && slices.ContainsFunc(c.Args().Tail(), func(a string) bool { return strings.HasPrefix(a, "-") }) {
						return errors.New("cluster remove: put the flags before the id: herald cluster remove [--server URL] ID")
					}
					if c.NArg() != 1 {
						return errors.New("cluster remove: name one node by its id (herald cluster status lists them)")
					}
					cl, err := connect(c, "password")
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
		UsageText: "herald backup --out FILE",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "out", Required: true, TakesFile: true, Usage: "`FILE` to write, - for standard output"},
		}, clientFlags("password")...),
		Action: func(c *cli.Context) error {
			cl, err := connect(c, "password")
			if err != nil {
				return err
			}
			out := c.String("out")
			if out == "-" {
				_, err := cl.Backup(c.Context, c.App.Writer)
				return err
			}
			n, err := backupToFile(c.Context, cl, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "wrote %d bytes to %s\n", n, out)
			return nil
		},
	}
}

// backupToFile writes the backup beside path and renames it into place only
// once it is complete and synced, so that a broken transfer never leaves a
// truncated file under the name a restore would be pointed at.
func backupToFile(ctx context.Context, cl *client.Client, path string) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.partial")
	if err != nil {
		return 0, err
	}
	n, err := cl.Backup(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return n, err
	}
	return n, nil
}
