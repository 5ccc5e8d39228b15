package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/herald-notify/herald/raft"
)

// restoreCommand is `herald restore`: load a backup made by `herald backup`
// (GET /v1.0/admin/backup) into a new data directory. Started there, the
// node is a one-node cluster holding the backup's data.
func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "load a backup into an empty data directory",
		UsageText: "herald restore --in FILE --data-dir DIR [--force]",
		Description: "The directory is filled only once the whole backup has loaded: a broken or truncated\n" +
			"backup leaves it as it was. A directory that holds anything is refused unless --force is\n" +
			"given; a running herald's directory is always refused.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "in", Required: true, TakesFile: true, Usage: "backup `FILE` (- for standard input)"},
			&cli.StringFlag{Name: "data-dir", Required: true, Usage: "`DIR` to create the node's state in"},
			&cli.BoolFlag{Name: "force", Usage: "replace what --data-dir holds (with the node stopped)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("restore: unexpected %q: give the backup with --in FILE", c.Args().First())
			}
			in := c.App.Reader
			name := c.String("in")
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			dir := c.String("data-dir")
			var n int64
			var id string
			err := restoreDataDir(dir, c.Bool("force"), func(tmp string) error {
				p := startProgress(c.App.ErrWriter, "restore: read")
				var err error
				id, err = raft.Restore(tmp, p.Reader(in))
				n = p.Stop()
				if errors.Is(err, raft.ErrBadSnapshot) {
					return fmt.Errorf("restore from %s (after %s): %w; the file is damaged or cut short, and %s is left "+
						"as it was: restore another copy of the backup, or take a new one", name, formatBytes(n), err, c.String("data-dir"))
				}
				if err != nil {
					return fmt.Errorf("restore from %s (after %s): %w", name, formatBytes(n), err)
				}
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "restored %s into %s as cluster %s; start it with: herald serve --data-dir %s "+
				"(a cluster's node: with its usual --bootstrap-expect and --join, once every node is restored from this file; "+
				"a node that keeps other data is refused)\n", formatBytes(n), dir, id, dir)
			return nil
		},
	}
}
