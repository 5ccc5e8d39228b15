package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/herald-notify/herald/bench"
)

// benchCommand is `herald bench SCENARIO`: see package bench. Without
// --server it measures nodes of its own, started from this binary.
func benchCommand() *cli.Command {
	var subs []*cli.Command
	for _, name := range bench.Scenarios {
		subs = append(subs, benchScenario(name))
	}
	subs = append(subs, fanoutServerCommand())
	return &cli.Command{
		Name:      "bench",
		Usage:     "measure Herald: " + strings.Join(bench.Scenarios, ", "),
		UsageText: "herald bench ingest|latency|conns|feed|webpush|webhook [--server URL] [--cluster 3] [--json] ...",
		Description: "Starts its own node (or --cluster 3 nodes) in a temporary directory, sets up users, an\n" +
			"application and subscriptions through the public API, runs the scenario with a progress line\n" +
			"on standard error, and prints a table (or with --json one JSON object on the last line).\n" +
			"Every scenario also measures the same client against a bare net/http handler that answers\n" +
			"the same request: this machine's ceiling. The latency scenario also runs its load against\n" +
			"a bare fan-out server that stores nothing: the publish→receipt times this machine gives\n" +
			"(not with --server, which may be elsewhere).\n\n" +
			"With --server the bench signs in as an admin and measures that server. Its limits apply:\n" +
			"start it with --app-rate 0 --user-rate 0 --max-notifications-per-user 0\n" +
			"--max-subscriptions-per-user 0 --max-streams-per-user 0 --max-conns 0 (and, for webpush and\n" +
			"webhook, --webpush-allow-private --webhook-allow-private --delivery-per-host 32).",
		Subcommands: subs,
		Action: func(c *cli.Context) error {
			return errors.New("bench: name a scenario: " + strings.Join(bench.Scenarios, ", "))
		},
	}
}

// benchScenario is `herald bench NAME`, a subcommand so that its flags may
// follow the scenario's name.
func benchScenario(name string) *cli.Command {
	return &cli.Command{
		Name:  name,
		Usage: "run the " + name + " scenario",
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "cluster", Value: 1, Usage: "nodes to start: 1, or 3 (ingest, latency: load through every node)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object on the last line instead of a table"},
			&cli.DurationFlag{Name: "duration", Aliases: []string{"d"}, Usage: "how long the load runs (default 10s)"},
			&cli.IntFlag{Name: "concurrency", Aliases: []string{"c"}, Usage: "concurrent client workers (default 64; webpush, webhook 8)"},
			&cli.IntFlag{Name: "users", Usage: "users (default ingest 1, latency 200, conns 100, feed 1)"},
			&cli.IntFlag{Name: "streams", Usage: "live streams over the users (default latency, conns 1000)"},
			&cli.Float64Flag{Name: "rate", Usage: "sends per second (latency; default 500)"},
			&cli.StringFlag{Name: "transport", Value: "sse", Usage: "sse or ws (latency, conns)"},
			&cli.IntFlag{Name: "notifications", Usage: "notifications stored per user (feed; default 1000)"},
			&cli.IntFlag{Name: "subscriptions", Usage: "delivery endpoints of the one user (webpush, webhook; default 100)"},
			&cli.StringFlag{Name: "profile", TakesFile: true, Usage: "write Go's profiles of the nodes over the load (CPU, allocations, blocking, locks, heap, a trace of its first 5 s; conns: heap and goroutines with the streams open) to `DIR`"},
		}, benchClientFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return fmt.Errorf("bench %s: unexpected %q (flags take the form --name value)", name, c.Args().First())
			}
			o := bench.Options{
				Scenario: name, Cluster: c.Int("cluster"),
				Duration: c.Duration("duration"), Concurrency: c.Int("concurrency"), Users: c.Int("users"),
				Streams: c.Int("streams"), Rate: c.Float64("rate"), Transport: c.String("transport"),
				Notifications: c.Int("notifications"), Subscriptions: c.Int("subscriptions"),
				Profile: c.String("profile"), Progress: c.App.ErrWriter,
			}
			// The bench starts its own node unless --server is given.
			if c.String("server") != "" {
				server, err := serverURL(c)
				if err != nil {
					return err
				}
				o.Server, o.Token, o.Username, o.Password = server, c.String("token"), c.String("username"), c.String("password")
			}
			res, err := bench.Run(c.Context, o)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				b, err := json.Marshal(res)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(c.App.Writer, "%s\n", b)
				return err
			}
			return res.WriteTable(c.App.Writer)
		},
	}
}

// benchClientFlags are the client commands' connection flags, but with a
// --server that has no default and is not read from HERALD_SERVER: a shell
// set up for the client commands would otherwise turn "start a node of its
// own" into a load test of that server.
func benchClientFlags() []cli.Flag {
	flags := clientFlags()
	for i, f := range flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Name == "server" {
			flags[i] = &cli.StringFlag{Category: sf.Category, Name: "server",
				Usage: "`URL` of a Herald server to measure (host:port means http://host:port); without it the bench starts " +
					"nodes of its own. HERALD_SERVER is not read here"}
		}
	}
	return flags
}

// fanoutServerCommand is the latency scenario's ceiling, a bare fan-out
// server the bench starts as a child process (bench.ServeFanout); hidden,
// it is not for people.
func fanoutServerCommand() *cli.Command {
	return &cli.Command{
		Name:   "fanout-server",
		Hidden: true,
		Flags:  []cli.Flag{&cli.StringFlag{Name: "listen", Required: true}},
		Action: func(c *cli.Context) error {
			l, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return err
			}
			return bench.ServeFanout(c.Context, l)
		},
	}
}
