package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// AddNode adds a voter and records its addresses; on a follower it asks the
// leader to.
func (c *Cluster) AddNode(ctx context.Context, id, raftAddr, httpAddr string) error {
	return c.addNode(ctx, joinRequest{NodeRecord: raft.NodeRecord{ID: id, RaftAddr: raftAddr, HTTPAddr: httpAddr}}, false)
}

// RemoveNode removes a member; on a follower it asks the leader to.
func (c *Cluster) RemoveNode(ctx context.Context, id string) error {
	return c.removeNode(ctx, id, false)
}

func (c *Cluster) addNode(ctx context.Context, req joinRequest, forwarded bool) error {
	rec := req.NodeRecord
	if rec.ID == "" || !validHostPort(rec.RaftAddr) || !validHostPort(rec.HTTPAddr) {
		return resource.Errorf(resource.CodeInvalidRequest, "a node needs an id, a raftAddr and an httpAddr (host:port)")
	}
	if c.tr == nil {
		// Without a key or certificates the members could not
		// authenticate one another, so a second member is refused.
		return resource.Errorf(resource.CodeInvalidRequest, "%s", ErrNeedKey)
	}
	if !c.store.IsLeader() {
		if forwarded {
			return raft.ErrNotLeader
		}
		return c.callLeader(ctx, "/internal/cluster/join", req, nil)
	}
	member, err := c.checkJoin(ctx, rec)
	if err != nil {
		return err
	}
	if err := c.checkJoiner(ctx, rec, member); err != nil {
		var silent *silentJoinerError
		if !req.Own && errors.As(err, &silent) {
			// An admin's "cluster join" with a wrong address, or before
			// the node runs, was told "the cluster has no leader".
			if errors.Is(err, ErrWrongKey) || errors.Is(err, ErrUntrustedPeer) {
				return resource.Errorf(resource.CodeInvalidRequest,
					"node %s at %s does not hold this cluster's key or certificates: start it with the cluster's --cluster-key", rec.ID, rec.RaftAddr)
			}
			return resource.Errorf(resource.CodeInvalidRequest,
				"node %s does not answer at %s (its --raft-addr): start it with this cluster's key first, or check the address", rec.ID, rec.RaftAddr)
		}
		return err
	}
	if member && req.Own && !req.HoldsState {
		c.log.Error("a voter asked to join without Raft state: its data directory was emptied or lost; it is sent the "+
			"log again, but until it holds it its vote could elect a node that missed acknowledged writes if the nodes "+
			"that hold them are down; next time run herald cluster remove before starting a node on an empty directory",
			"node_id", rec.ID, "raft", rec.RaftAddr)
	}
	if req.HoldsState && !c.isVoter(rec.ID) {
		c.log.Warn("refused a removed node's request to join again", "node_id", rec.ID, "raft", rec.RaftAddr, "http", rec.HTTPAddr)
		return resource.Invalid(targetRemoved, "node %s holds this cluster's data but is not a member: it was removed. "+
			"To have it join again, empty its data directory and start it: it joins as a new node and is sent the data", rec.ID)
	}
	// A member that restarted where it was asks again; its entry stands.
	if !member {
		if err := c.store.Raft().AddVoter(hraft.ServerID(rec.ID), hraft.ServerAddress(rec.RaftAddr), 0, 10*time.Second).Error(); err != nil {
			if errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) {
				return raft.ErrNotLeader
			}
			return resource.Errorf(resource.CodeInvalidRequest, "add %s: %v", rec.ID, err)
		}
	}
	if nodes, err := c.store.Nodes(); err != nil || nodes[rec.ID] != rec {
		if _, err := c.store.Propose(ctx, &raft.Command{Op: raft.OpSetNode, Now: time.Now().UnixNano(), Node: &rec}); err != nil {
			return err
		}
	}
	c.rebalanceSoon()
	return nil
}

// isVoter reports whether id is in the latest configuration, at whatever
// address.
func (c *Cluster) isVoter(id string) bool {
	conf, err := c.store.Configuration()
	if err != nil {
		return true // the join's other checks read it too, and would have failed
	}
	return slices.ContainsFunc(conf, func(s raft.NodeRecord) bool { return s.ID == id })
}

// checkJoin vets a join on the leader against the configuration. It
// reports whether rec is already a voter at its Raft address. A node id is
// one member: a node that comes back at a new address replaces its old entry
// (Raft address here, HTTP address in the node table), but only when nothing
// answers as that member at the old one; otherwise two nodes were given the
// same id, and the second is refused. A Raft address that belongs to another
// member is refused too.
func (c *Cluster) checkJoin(ctx context.Context, rec raft.NodeRecord) (member bool, err error) {
	conf, err := c.store.Configuration()
	if err != nil {
		return false, err
	}
	nodes, err := c.store.Nodes()
	if err != nil {
		return false, err
	}
	for _, s := range conf {
		switch {
		case s.ID == rec.ID && sameEndpoint(ctx, s.RaftAddr, rec.RaftAddr):
			member = true
		case s.ID == rec.ID:
			if c.answersAs(ctx, s, nodes[s.ID].HTTPAddr) {
				return false, resource.Errorf(resource.CodeNameExists,
					"node id %q is taken by a live member (raft %s, http %s): give the new node another --node-id "+
						"(the default is the host name, which nodes on one machine share)",
					rec.ID, s.RaftAddr, orNone(nodes[s.ID].HTTPAddr))
			}
			c.log.Info("a member came back at a new address; replacing its entry", "node_id", rec.ID,
				"old_raft", s.RaftAddr, "raft", rec.RaftAddr, "http", rec.HTTPAddr)
		case s.RaftAddr == rec.RaftAddr:
			return false, resource.Errorf(resource.CodeNameExists,
				"raft address %s belongs to member %q: give the new node another --raft-addr, or remove %q first (herald cluster remove %s)",
				rec.RaftAddr, s.ID, s.ID, s.ID)
		}
	}
	return member, nil
}

// answersAs reports whether the member s still answers at its recorded HTTP
// address as itself: the same id and the same Raft address. The leader is
// this very process.
func (c *Cluster) answersAs(ctx context.Context, s raft.NodeRecord, httpAddr string) bool {
	if s.ID == c.id {
		return true
	}
	if httpAddr == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var h hello
	err := c.callAt(ctx, httpAddr, http.MethodGet, "/internal/cluster/hello", nil, &h)
	return err == nil && h.ID == s.ID && sameEndpoint(ctx, h.RaftAddr, s.RaftAddr)
}

// sameEndpoint reports whether two Raft addresses reach the same place:
// equal, or with the same port and a host address in common. A node now
// names itself by host name where a cluster formed before names were kept
// holds its IP address (transport.go).
func sameEndpoint(ctx context.Context, a, b string) bool {
	if a == b {
		return true
	}
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ips := func(h string) []string {
		if net.ParseIP(h) != nil {
			return []string{net.ParseIP(h).String()}
		}
		addrs, _ := net.DefaultResolver.LookupHost(ctx, h)
		return addrs
	}
	ia := ips(ha)
	for _, x := range ips(hb) {
		if slices.Contains(ia, x) {
			return true
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "not recorded"
	}
	return s
}

// rebalanceSoon gives the new membership its slots without holding up the
// request that changed it; housekeeping retries if this fails.
func (c *Cluster) rebalanceSoon() {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Rebalance(ctx); err != nil {
			c.log.Warn("could not rebalance the slots", "error", err)
		}
	}()
}

func (c *Cluster) removeNode(ctx context.Context, id string, forwarded bool) error {
	if !c.store.IsLeader() {
		if forwarded {
			return raft.ErrNotLeader
		}
		return c.callLeader(ctx, "/internal/cluster/remove", raft.NodeRecord{ID: id}, nil)
	}
	f := c.store.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	member, voters := false, 0
	for _, s := range f.Configuration().Servers {
		member = member || string(s.ID) == id
		if s.Suffrage == hraft.Voter && string(s.ID) != id {
			voters++
		}
	}
	if member && voters == 0 {
		// Raft refuses it, and a cluster of no one could not be asked
		// for anything again: a definite no, before anything changes.
		return resource.Errorf(resource.CodeInvalidRequest, "%s is the cluster's last voter; it cannot be removed.", id)
	}
	nodes, err := c.store.Nodes()
	if err != nil {
		return err
	}
	if _, recorded := nodes[id]; !member && !recorded {
		return resource.NotFound("node")
	}
	// Forget the addresses first: removing the leader itself ends its
	// leadership, after which it could no longer write the table.
	if _, recorded := nodes[id]; recorded {
		if _, err := c.store.Propose(ctx, &raft.Command{Op: raft.OpRemoveNode, Now: time.Now().UnixNano(), ID: id}); err != nil {
			return err
		}
	}
	if member {
		if err := c.store.Raft().RemoveServer(hraft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
			return raft.ErrUnknownOutcome
		}
	}
	c.rebalanceSoon()
	return nil
}

func validHostPort(s string) bool {
	h, p, err := net.SplitHostPort(s)
	return err == nil && h != "" && p != ""
}

// callAt makes an internal request to the node whose HTTP address is addr
// (what --join lists): its public listener says where its inter-node port
// is, and the request goes there over the authenticated transport.
func (c *Cluster) callAt(ctx context.Context, addr, method, path string, body, out any) error {
	peer, err := c.lookupPeer(ctx, "http", addr)
	if errors.Is(err, errHTTPSListener) {
		peer, err = c.lookupPeer(ctx, "https", addr)
	}
	if err != nil {
		return err
	}
	return c.callNode(ctx, peer.ID, peer.RaftAddr, method, path, body, out, false)
}

// errHTTPSListener is a peer's public listener answering plain HTTP with
// Go's "HTTP request to an HTTPS server" (--tls-cert or --acme-domain).
var errHTTPSListener = errors.New("the public listener speaks HTTPS")

// lookupPeer asks the node at addr where its inter-node port is.
func (c *Cluster) lookupPeer(ctx context.Context, scheme, addr string) (peerInfo, error) {
	var peer peerInfo
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+"/internal/cluster/peer", nil)
	if err != nil {
		return peer, err
	}
	resp, err := c.lookup.Do(req)
	if err != nil {
		return peer, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode == http.StatusBadRequest && bytes.Contains(b, []byte("HTTP request to an HTTPS server")) {
		return peer, errHTTPSListener
	}
	if err == nil {
		err = json.Unmarshal(b, &peer)
	}
	if err != nil || resp.StatusCode != http.StatusOK || peer.ID == "" || !validHostPort(peer.RaftAddr) {
		return peer, fmt.Errorf("%s did not say where its inter-node port is (%s, %v)", addr, resp.Status, err)
	}
	return peer, nil
}

// Announce records this node's own addresses when the replica lacks them
// (the first node of a cluster was never joined) or they changed.
func (c *Cluster) Announce(ctx context.Context) error {
	rec := raft.NodeRecord{ID: c.id, HTTPAddr: c.opts.HTTPAdvert, RaftAddr: c.store.RaftAddr()}
	nodes, err := c.store.Nodes()
	if err != nil || nodes[c.id] == rec {
		return err
	}
	_, err = c.State().Propose(ctx, &raft.Command{Op: raft.OpSetNode, Now: time.Now().UnixNano(), Node: &rec})
	return err
}

// AdvertiseHTTP is the HTTP address other nodes reach this one at: the
// listener's, with the Raft address's host when it listens on every
// interface.
func AdvertiseHTTP(listen net.Addr, raftAddr string) string {
	host, port, _ := net.SplitHostPort(listen.String())
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host, _, _ = net.SplitHostPort(raftAddr)
	}
	return net.JoinHostPort(host, port)
}
