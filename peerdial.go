package main

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/urfave/cli/v2"
)

// peerDialFlag is for fault-injection harnesses (chaos/), not operators: it
// sends this node's connections to another node's address through a relay,
// so that a harness can put one fault proxy on each directed link between
// real processes. A node advertises one Raft address to every peer, so
// rewriting on the dialing side is the only way two nodes reach the same
// peer through different proxies. Hidden from help.
func peerDialFlag() cli.Flag {
	return &cli.StringSliceFlag{
		Name:   "peer-dial",
		Hidden: true,
		Usage:  "`ADDR=VIA,...`: dial VIA whenever this node dials another node's ADDR (test harnesses)",
	}
}

// parsePeerDial turns ADDR=VIA pairs into a dial function; nil when empty.
func parsePeerDial(pairs []string) (func(ctx context.Context, addr string) (net.Conn, error), error) {
	via := map[string]string{}
	for _, p := range cleanList(pairs) {
		from, to, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("peer-dial %q: want ADDR=VIA", p)
		}
		for _, a := range []string{from, to} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("peer-dial %q: %w", p, err)
			}
		}
		via[from] = to
	}
	if len(via) == 0 {
		return nil, nil
	}
	var d net.Dialer
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if to, ok := via[addr]; ok {
			addr = to
		}
		return d.DialContext(ctx, "tcp", addr)
	}, nil
}
