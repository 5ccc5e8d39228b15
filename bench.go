package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-notify/herald/loadgen"
)

// benchCommand is `herald bench`: a load generator against a running
// server. It registers a throw-away application, user and subscription,
// posts notifications as the application while live streams receive them,
// prints what it measured, and deletes what it made.
func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure a running server: notification ingest and live-stream fan-out",
		Description: "The server's rate limits apply to the bench's application; start the server with\n" +
			"--app-rate 0 --user-rate 0 --max-notifications-per-user 0 to measure its capacity.",
		Flags: append(clientFlags(),
			&cli.IntFlag{Name: "notifications", Aliases: []string{"n"}, Value: 20000, Usage: "notifications to post"},
			&cli.IntFlag{Name: "concurrency", Aliases: []string{"c"}, Value: 64, Usage: "concurrent posting workers"},
			&cli.IntFlag{Name: "streams", Value: 100, Usage: "live SSE streams of the user that receive every notification"},
			&cli.DurationFlag{Name: "wait", Value: 30 * time.Second, Usage: "how long to wait for the streams to catch up"},
		),
		Action: func(c *cli.Context) error {
			user, pass := c.String("username"), c.String("password")
			if user == "" || pass == "" {
				return fmt.Errorf("bench signs in as an admin: give --username and --password (HERALD_USERNAME, HERALD_PASSWORD)")
			}
			opts := loadgen.Options{Notifications: c.Int("notifications"), Concurrency: c.Int("concurrency"),
				Streams: c.Int("streams"), Wait: c.Duration("wait")}
			if opts.Notifications < 1 || opts.Concurrency < 1 || opts.Streams < 0 {
				return fmt.Errorf("--notifications and --concurrency must be at least 1, --streams at least 0")
			}
			server, err := serverURL(c)
			if err != nil {
				return err
			}
			t, err := loadgen.Setup(c.Context, server, user, pass)
			if err != nil {
				return err
			}
			defer t.Cleanup(c.Context)
			rep, err := loadgen.Run(c.Context, t, opts)
			if err != nil {
				return err
			}
			fmt.Fprint(c.App.Writer, rep)
			return nil
		},
	}
}
