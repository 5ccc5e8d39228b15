package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// Joining (DESIGN.md, "One command line for every node").
//
// A node without Raft state becomes a member in one of two ways. With --join
// alone it asks the listed nodes to add it, and the leader does. With
// --bootstrap-expect N as well, every node of a new cluster runs the same
// line: each asks the listed nodes who they are (GET /internal/cluster/hello).
// Once a node hears of a cluster with a leader it joins it, as with --join
// alone. While nobody has state, a node that has heard from exactly N-1 others
// without state proposes the N of them, sorted by id, and bootstraps that
// configuration only when every one of the N proposes the same list: identical
// bootstraps give identical first log entries, so exactly one cluster forms
// whatever order the nodes start in. A node with Raft state ignores
// --bootstrap-expect, so the same line restarts a node or adds one later.

// hello is what a node says of itself to another that is joining.
type hello struct {
	ID              string `json:"id"`
	HTTPAddr        string `json:"httpAddr"`
	RaftAddr        string `json:"raftAddr"`
	BootstrapExpect int    `json:"bootstrapExpect"`
	// LeaderID is the leader this node knows of, if any.
	LeaderID string `json:"leaderId,omitempty"`
	// Servers is its Raft configuration: empty on a node without state.
	Servers []raft.NodeRecord `json:"servers,omitempty"`
	// Proposal is the configuration it would bootstrap, sorted by id; empty
	// until it has heard from all the nodes it expects.
	Proposal []raft.NodeRecord `json:"proposal,omitempty"`
	// ClusterID is the cluster whose data it holds (identity.go): a
	// restored node has one before it has Raft state.
	ClusterID string `json:"clusterId,omitempty"`
}

// joinState is what the join loop shares with the rest of the node.
type joinState struct {
	mu       sync.Mutex
	proposal []raft.NodeRecord
	err      error
	// failed is closed when joining failed for good (err says why).
	failed chan struct{}
	quiet  quietLog
}

// errStopped ends the join loop when the node stops.
var errStopped = errors.New("stopped")

func (c *Cluster) selfRecord() raft.NodeRecord {
	return raft.NodeRecord{ID: c.id, HTTPAddr: c.opts.HTTPAdvert, RaftAddr: c.store.RaftAddr()}
}

// hello answers GET /internal/cluster/hello.
func (c *Cluster) hello() hello {
	self := c.selfRecord()
	h := hello{ID: self.ID, HTTPAddr: self.HTTPAddr, RaftAddr: self.RaftAddr, BootstrapExpect: c.opts.BootstrapExpect}
	_, leader := c.store.Raft().LeaderWithID()
	h.LeaderID = string(leader)
	h.Servers, _ = c.store.Configuration()
	h.ClusterID, _ = c.store.ClusterID()
	c.join.mu.Lock()
	h.Proposal = c.join.proposal
	c.join.mu.Unlock()
	return h
}

// startJoin runs the join loop when there are nodes to join.
func (c *Cluster) startJoin() {
	if len(c.opts.Join) == 0 {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		var err error
		if c.opts.BootstrapExpect > 1 && !c.store.HasState() {
			err = c.discover()
		} else {
			err = c.askToJoin()
		}
		if err != nil && !errors.Is(err, errStopped) {
			c.log.Error("cannot join the cluster", "error", err)
			c.join.mu.Lock()
			c.join.err = err
			c.join.mu.Unlock()
			close(c.join.failed)
		}
	}()
}

// WaitMember waits until this node belongs to a cluster configuration (it
// was bootstrapped, or a leader replicated to it), or joining failed for
// good, which it returns with the reason.
func (c *Cluster) WaitMember(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !c.store.HasState() {
		select {
		case <-c.join.failed:
			c.join.mu.Lock()
			defer c.join.mu.Unlock()
			return c.join.err
		case <-ctx.Done():
			return fmt.Errorf("waiting to join the cluster: %w", ctx.Err())
		case <-c.stop:
			return raft.ErrClosed
		case <-tick.C:
		}
	}
	return nil
}

// JoinRefused is why joining failed for good (a node id taken, another
// cluster's data), once it has; nil until then.
func (c *Cluster) JoinRefused() error {
	select {
	case <-c.join.failed:
		c.join.mu.Lock()
		defer c.join.mu.Unlock()
		return c.join.err
	default:
		return nil
	}
}

// JoinFailed is closed when joining failed for good.
func (c *Cluster) JoinFailed() <-chan struct{} { return c.join.failed }

// askToJoin asks the listed nodes to add this one until one of them has, or
// the node stops. A restarted member asks again, which refreshes its
// recorded addresses and is otherwise a no-op. A refusal that asking again
// cannot change (this node's id is a live member's) ends it.
func (c *Cluster) askToJoin() error {
	rec := c.selfRecord()
	req := joinRequest{NodeRecord: rec, Own: true, HoldsState: c.store.HasState()}
	for {
		for _, addr := range c.opts.Join {
			if addr == rec.HTTPAddr {
				continue
			}
			ctx, cancel := c.stopContext(15 * time.Second)
			err := c.callAt(ctx, addr, http.MethodPost, "/internal/cluster/join", req, nil)
			cancel()
			if err == nil {
				c.log.Info("joined the cluster", "via", addr)
				return nil
			}
			if refusedForGood(err) {
				return err
			}
			problem := joinProblem(err)
			c.join.quiet.log(c.log, slog.LevelWarn, "join:"+addr+"|"+problem, "join failed; retrying", "via", addr, "error", problem)
		}
		if err := c.pause(500 * time.Millisecond); err != nil {
			return err
		}
	}
}

// joinProblem says what went wrong with a request to a node being joined in
// the operator's terms: a refusal of the request's signature most often means
// another cluster key, and a connection that failed is not a lost leadership.
func joinProblem(err error) string {
	switch {
	case errors.Is(err, ErrWrongKey):
		return "wrong cluster key: give this node the cluster's --cluster-key"
	case errors.Is(err, ErrUntrustedPeer):
		return "not trusted: its certificate is not signed by this node's --cluster-tls-ca, or the other way round"
	case errors.Is(err, raft.ErrUnknownOutcome):
		return strings.TrimPrefix(err.Error(), raft.ErrUnknownOutcome.Error()+": ")
	}
	return err.Error()
}

// unlistedAlone reports whether the answers of a node's --join leave it
// looking unlisted by the others: none of them is this node under another
// name, and none has formed a cluster it could join (or nobody answered).
func unlistedAlone(self raft.NodeRecord, peers []hello) bool {
	for _, p := range peers {
		if p.ID == self.ID && p.RaftAddr == self.RaftAddr || len(p.Servers) > 0 {
			return false
		}
	}
	return true
}

// refusedForGood tells a refusal that retrying cannot change (the id or the
// address is taken by a live member, the node was removed) from a failure
// that may pass.
func refusedForGood(err error) bool {
	var re *resource.Error
	return errors.As(err, &re) && (re.Code == resource.CodeNameExists || re.Target == targetClusterID || re.Target == targetRemoved)
}

// joinRequest is a node's request to be added. HoldsState says it has Raft
// state of its own: a member that restarts, or one that was removed. The
// leader adds such a node only if it is a member already (perhaps at a new
// address): a removed node that came back with its usual --join would
// otherwise be a voter again at its next start, undoing the removal
// without anyone asking (found by an operator's review). An admin's
// "cluster join" sends no HoldsState, and adds it back while it runs; a
// stopped one joins anew once its data directory is emptied.
type joinRequest struct {
	raft.NodeRecord
	// Own: the node asks for itself, at its start (an admin's "cluster
	// join" asks for another); only then does HoldsState say anything.
	Own        bool `json:"own,omitempty"`
	HoldsState bool `json:"holdsState,omitempty"`
}

// targetRemoved marks the refusal of a removed node's own request to join.
const targetRemoved = "removed"

// unlistedWarnAfter is how long a node missing from its own --join waits
// for a new cluster before it says so.
const unlistedWarnAfter = 5 * time.Second

// discover is the join loop of --bootstrap-expect on a node without state.
func (c *Cluster) discover() error {
	self := c.selfRecord()
	c.log.Info("asking the other nodes: joining their cluster if it exists, else forming a new one", "bootstrap_expect", c.opts.BootstrapExpect,
		"join", strings.Join(c.opts.Join, ","))
	listed := slices.ContainsFunc(c.opts.Join, func(a string) bool {
		return strings.EqualFold(a, self.HTTPAddr) || strings.EqualFold(a, c.opts.HTTPAddr)
	})
	start := time.Now()
	for {
		if c.store.HasState() {
			return nil
		}
		own, err := c.store.ClusterID()
		if err != nil {
			return err
		}
		peers, others := sameHistory(own, c.askAll(self))
		for _, p := range others {
			c.join.quiet.log(c.log, slog.LevelError, "other:"+p.ID+"|"+p.ClusterID,
				"a node to join holds another cluster's data and is left out: empty its --data-dir, or restore it "+
					"from the same backup as this node, and start it again",
				"node", p.ID, "addr", p.HTTPAddr, "its_cluster", p.ClusterID, "this_cluster", own)
		}
		if !listed && time.Since(start) > unlistedWarnAfter && unlistedAlone(self, peers) {
			// The others find the members by their --join lists: if
			// theirs do not name this node either (a typo in a port),
			// it is never asked, and waits without a word of why.
			c.log.Warn("still no cluster, and this node's address is not in its --join: unless the other nodes' --join "+
				"name it, they cannot find it; the simplest is the same --join on every node, each node's address in it",
				"address", self.HTTPAddr, "join", strings.Join(c.opts.Join, ","))
			listed = true // once
		}
		c.join.mu.Lock()
		mine := c.join.proposal
		c.join.mu.Unlock()
		d := decide(self, own, c.opts.BootstrapExpect, peers, mine)
		c.join.mu.Lock()
		c.join.proposal = d.proposal
		c.join.mu.Unlock()
		if d.emptied {
			c.join.quiet.log(c.log, slog.LevelError, "emptied",
				"this node starts without Raft state, yet the cluster lists it as a voter: its data directory was "+
					"emptied or lost; a leader sends it the log again, but until then its vote could elect a node that "+
					"missed acknowledged writes if the nodes that hold them are down: stop it, run herald cluster remove "+
					"on a member, then start it again (docs/operations.md, Replace a node)", "node_id", self.ID)
		}
		switch d.kind {
		case fail:
			return d.err
		case joinVia:
			ctx, cancel := c.stopContext(15 * time.Second)
			err := c.callAt(ctx, d.via, http.MethodPost, "/internal/cluster/join", self, nil)
			cancel()
			if err == nil {
				c.log.Info("joined the cluster", "via", d.via)
				return nil
			}
			if refusedForGood(err) {
				return err
			}
			problem := joinProblem(err)
			c.join.quiet.log(c.log, slog.LevelWarn, "join:"+d.via+"|"+problem, "join failed; retrying", "via", d.via, "error", problem)
		case bootstrap:
			err := c.store.BootstrapCluster(d.proposal)
			if err == nil || errors.Is(err, raft.ErrAlreadyBootstrapped) {
				ids := make([]string, len(d.proposal))
				for i, s := range d.proposal {
					ids[i] = s.ID
				}
				c.log.Info("formed a new cluster", "members", strings.Join(ids, ","))
				return nil
			}
			c.log.Warn("could not bootstrap the cluster; retrying", "error", err)
		case wait:
			level := slog.LevelInfo
			if d.misconfigured {
				level = slog.LevelError
			}
			c.join.quiet.log(c.log, level, "wait:"+d.why, "waiting to form or join a cluster: "+d.why)
		}
		if err := c.pause(250 * time.Millisecond); err != nil {
			return err
		}
	}
}

// sameHistory splits the answers of the listed nodes into those a node of
// cluster own may form a cluster with or join, and those that hold another
// cluster's data: another identity, or Raft state from before its cluster
// had one (a node left out of a restore of a cluster below
// raft.IdentityLevel). A node without an identity (new, or of a cluster
// below the level) goes with any.
func sameHistory(own string, peers []hello) (same, others []hello) {
	for _, p := range peers {
		if own != "" && (p.ClusterID != "" && p.ClusterID != own || p.ClusterID == "" && len(p.Servers) > 0) {
			others = append(others, p)
		} else {
			same = append(same, p)
		}
	}
	return same, others
}

// askAll asks every listed node, at once, who it is. Nodes that do not
// answer are left out (and logged, sparingly).
func (c *Cluster) askAll(self raft.NodeRecord) []hello {
	var (
		mu  sync.Mutex
		out []hello
		wg  sync.WaitGroup
	)
	for _, addr := range c.opts.Join {
		if addr == self.HTTPAddr {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := c.stopContext(time.Second)
			defer cancel()
			var h hello
			if err := c.callAt(ctx, addr, http.MethodGet, "/internal/cluster/hello", nil, &h); err != nil {
				problem := joinProblem(err)
				c.join.quiet.log(c.log, slog.LevelInfo, "hello:"+addr+"|"+problem, "no answer yet from a node to join", "addr", addr, "error", problem)
				return
			}
			mu.Lock()
			out = append(out, h)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b hello) int { return strings.Compare(a.ID, b.ID) })
	return out
}

type decisionKind int

const (
	wait decisionKind = iota
	joinVia
	bootstrap
	fail
)

// decision is what a node without state does next in --bootstrap-expect.
type decision struct {
	kind decisionKind
	// via is the node to send the join request to (joinVia).
	via string
	// proposal is the configuration this node proposes (and, with
	// bootstrap, bootstraps); nil while it has none.
	proposal []raft.NodeRecord
	// why says what a wait waits for; misconfigured makes it an error that
	// only the operator can fix.
	why           string
	misconfigured bool
	err           error
	// emptied: the cluster lists this node, which has no Raft state, as
	// a voter it did not just form with: its data directory was emptied
	// or lost (a disk, a machine rebuilt under the same id). hashicorp/raft
	// lets an empty node vote for any candidate, and such a vote elected
	// a node that had missed acknowledged writes (an operator's review).
	// A guard that refused an empty node's votes was built and taken
	// back: a node cannot tell it lost its data from being new, and a new
	// member that refused its vote held elections up while it took the
	// log (a two-node cluster for good). So the node says so, loudly.
	emptied bool
}

// decide is one step of --bootstrap-expect, from what the listed nodes said
// of themselves (peers, sorted by id), the cluster whose data this node
// holds (own: a restored node's, or none) and this node's last proposal.
func decide(self raft.NodeRecord, own string, expect int, peers []hello, mine []raft.NodeRecord) decision {
	others := make([]hello, 0, len(peers))
	seen := map[string]hello{}
	for _, p := range peers {
		if p.ID == self.ID {
			if p.RaftAddr == self.RaftAddr {
				continue // this node, listed under another name
			}
			return decision{kind: fail, err: fmt.Errorf("node id %q is also the id of the node at %s (raft %s): "+
				"give every node its own --node-id (the default is the host name, which nodes on one machine share)",
				self.ID, p.HTTPAddr, p.RaftAddr)}
		}
		if q, dup := seen[p.ID]; dup {
			if q.RaftAddr != p.RaftAddr {
				return decision{kind: wait, misconfigured: true, why: fmt.Sprintf(
					"the nodes at %s and %s share the node id %q; give each its own --node-id", q.HTTPAddr, p.HTTPAddr, p.ID)}
			}
			continue
		}
		seen[p.ID] = p
		others = append(others, p)
	}

	// A cluster exists: join it, or wait to be brought in.
	var formed []string
	for _, p := range others {
		if len(p.Servers) == 0 {
			continue
		}
		formed = append(formed, p.ID)
		if i := slices.IndexFunc(p.Servers, func(s raft.NodeRecord) bool { return s.ID == self.ID }); i >= 0 &&
			p.Servers[i].RaftAddr == self.RaftAddr {
			if sameServers(p.Servers, mine) {
				// It bootstrapped what this node proposed: do the same.
				return decision{kind: bootstrap, proposal: mine}
			}
			return decision{kind: wait, proposal: mine, why: "this node is a member; the leader has not reached it yet", emptied: true}
		}
		if p.LeaderID != "" {
			return decision{kind: joinVia, via: p.HTTPAddr, proposal: mine}
		}
	}
	if len(formed) > 0 {
		return decision{kind: wait, why: "the cluster of " + strings.Join(formed, ",") + " has no leader yet"}
	}

	// Nobody has state: a new cluster, once exactly expect nodes agree.
	have := len(others) + 1
	switch {
	case have < expect:
		return decision{kind: wait, why: fmt.Sprintf("heard from %d of the %d nodes of --bootstrap-expect", have, expect)}
	case have > expect:
		return decision{kind: wait, misconfigured: true, why: fmt.Sprintf(
			"%d nodes without a cluster answer, but --bootstrap-expect is %d: start exactly that many with it, "+
				"and add more once the cluster has formed", have, expect)}
	}
	proposal := []raft.NodeRecord{{ID: self.ID, RaftAddr: self.RaftAddr}}
	for _, p := range others {
		if p.BootstrapExpect != expect {
			return decision{kind: wait, misconfigured: true, why: fmt.Sprintf(
				"the node %s at %s has --bootstrap-expect %d, this one %d: give every node the same",
				p.ID, p.HTTPAddr, p.BootstrapExpect, expect)}
		}
		if p.ClusterID != own {
			// A new cluster starts with the data its nodes hold: restored
			// from one backup on every node, or none on any.
			return decision{kind: wait, misconfigured: true, why: fmt.Sprintf(
				"the node %s at %s holds %s, this one %s: restore every node of a new cluster from the same backup, or none "+
					"(a node that cannot be restored joins later: give the restored ones --bootstrap-expect as many as they are, "+
					"and start it, empty, once they have formed)",
				p.ID, p.HTTPAddr, restoredAs(p.ClusterID), restoredAs(own))}
		}
		proposal = append(proposal, raft.NodeRecord{ID: p.ID, RaftAddr: p.RaftAddr})
	}
	slices.SortFunc(proposal, func(a, b raft.NodeRecord) int { return strings.Compare(a.ID, b.ID) })
	for _, p := range others {
		if !sameServers(p.Proposal, proposal) {
			return decision{kind: wait, proposal: proposal, why: p.ID + " does not propose the same members yet"}
		}
	}
	return decision{kind: bootstrap, proposal: proposal}
}

func restoredAs(id string) string {
	if id == "" {
		return "no restored data"
	}
	return "the data of cluster " + id
}

// sameServers compares two configurations by id and Raft address, in any
// order.
func sameServers(a, b []raft.NodeRecord) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	key := func(s []raft.NodeRecord) []string {
		out := make([]string, len(s))
		for i, r := range s {
			out[i] = r.ID + "\x00" + r.RaftAddr
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// stopContext is a context with timeout d that also ends when the node
// stops.
func (c *Cluster) stopContext(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// pause waits d, or returns errStopped when the node stops first.
func (c *Cluster) pause(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.stop:
		return errStopped
	case <-t.C:
		return nil
	}
}

// quietLog logs a condition that repeats at its first occurrence and then
// at most once a minute with how often it recurred, so that a node waiting
// for its peers does not fill the log twice a second.
type quietLog struct {
	mu   sync.Mutex
	seen map[string]*quietEntry
}

type quietEntry struct {
	logged time.Time
	count  int
}

const quietInterval = time.Minute

func (q *quietLog) log(l *slog.Logger, level slog.Level, key, msg string, args ...any) {
	q.mu.Lock()
	if q.seen == nil || len(q.seen) > 1000 {
		// Keys hold error texts; a flood of distinct ones must not grow
		// without bound.
		q.seen = map[string]*quietEntry{}
	}
	e := q.seen[key]
	now := time.Now()
	switch {
	case e == nil:
		q.seen[key] = &quietEntry{logged: now}
	case now.Sub(e.logged) >= quietInterval:
		args = append(args, "repeated", e.count+1)
		e.logged, e.count = now, 0
	default:
		e.count++
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	l.Log(context.Background(), level, msg, args...)
}
