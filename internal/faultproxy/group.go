package faultproxy

import (
	"errors"
	"time"
)

// Group applies a fault to several proxies at once: the links of one pair of
// nodes (a Raft port and an HTTP port, say), or every link of one node, which
// is how a test cuts a node off.
type Group []*Proxy

// Cut cuts every link of the group (see Proxy.Cut).
func (g Group) Cut() { g.each((*Proxy).Cut) }

// CutDirection cuts direction d of every link (see Proxy.CutDirection).
func (g Group) CutDirection(d Direction) { g.each(func(p *Proxy) { p.CutDirection(d) }) }

// Pause pauses every link (see Proxy.Pause).
func (g Group) Pause() { g.each((*Proxy).Pause) }

// Resume ends a Pause of every link.
func (g Group) Resume() { g.each((*Proxy).Resume) }

// SetLatency delays every link by d each way.
func (g Group) SetLatency(d time.Duration) { g.each(func(p *Proxy) { p.SetLatency(d) }) }

// DropConnections resets the open connections of every link once.
func (g Group) DropConnections() { g.each((*Proxy).DropConnections) }

// Heal clears every fault of every link.
func (g Group) Heal() { g.each((*Proxy).Heal) }

// Close closes every proxy of the group.
func (g Group) Close() error {
	var errs []error
	for _, p := range g {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

func (g Group) each(f func(*Proxy)) {
	for _, p := range g {
		f(p)
	}
}
