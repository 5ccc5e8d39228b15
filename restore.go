package main

import (
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
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "in", Required: true, TakesFile: true, Usage: "backup `FILE` (- for standard input)"},
			&cli.StringFlag{Name: "data-dir", Required: true, Usage: "`DIR` to create the node's state in; must not hold a node"},
		},
		Action: func(c *cli.Context) error {
			in := os.Stdin
			if name := c.String("in"); name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			dir := c.String("data-dir")
			if err := raft.Restore(dir, in); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "restored into %s; start it with: herald serve --data-dir %s\n", dir, dir)
			return nil
		},
	}
}
