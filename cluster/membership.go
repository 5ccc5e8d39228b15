package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// AddNode adds a voter and records its addresses; on a follower it asks the
// leader to.
func (c *Cluster) AddNode(ctx context.Context, id, raftAddr, httpAddr string) error {
	return c.addNode(ctx, raft.NodeRecord{ID: id, RaftAddr: raftAddr, HTTPAddr: httpAddr}, false)
}

// RemoveNode removes a member; on a follower it asks the leader to.
func (c *Cluster) RemoveNode(ctx context.Context, id string) error {
	return c.removeNode(ctx, id, false)
}

func (c *Cluster) addNode(ctx context.Context, rec raft.NodeRecord, forwarded bool) error {
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
		return c.callLeader(ctx, "/internal/cluster/join", rec, nil)
	}
	if err := c.store.Raft().AddVoter(hraft.ServerID(rec.ID), hraft.ServerAddress(rec.RaftAddr), 0, 10*time.Second).Error(); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) {
			return raft.ErrNotLeader
		}
		return resource.Errorf(resource.CodeInvalidRequest, "add %s: %v", rec.ID, err)
	}
	if nodes, err := c.store.Nodes(); err != nil || nodes[rec.ID] != rec {
		if _, err := c.store.Propose(ctx, &raft.Command{Op: raft.OpSetNode, Now: time.Now().UnixNano(), Node: &rec}); err != nil {
			return err
		}
	}
	c.rebalanceSoon()
	return nil
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
	member := false
	for _, s := range f.Configuration().Servers {
		member = member || string(s.ID) == id
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

// joinLoop asks the listed nodes to add this one until one of them has, or
// the node stops. A restarted member asks again, which refreshes its
// recorded addresses and is otherwise a no-op. Failures are logged the
// first time and then once a minute with a count; a wrong cluster key is
// said to be one.
func (c *Cluster) joinLoop() {
	defer c.wg.Done()
	rec := raft.NodeRecord{ID: c.id, HTTPAddr: c.opts.HTTPAdvert, RaftAddr: c.store.RaftAddr()}
	failures := newThrottle(time.Minute)
	for {
		for _, addr := range c.opts.Join {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			go func() {
				select {
				case <-c.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := c.join(ctx, addr, rec)
			cancel()
			if err == nil {
				c.log.Info("joined the cluster", "via", addr)
				return
			}
			if errors.Is(err, ErrWrongKey) {
				failures.do("key "+addr, func(n int) {
					c.log.Error("cannot join: wrong cluster key; give this node the cluster's --cluster-key", "via", addr, "times", n)
				})
				continue
			}
			failures.do("join "+addr, func(n int) {
				c.log.Warn("join failed; retrying", "via", addr, "error", err, "times", n)
			})
		}
		select {
		case <-c.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// join asks the node whose HTTP address is addr to add rec: its public
// listener says where its inter-node port is, and the request goes there.
func (c *Cluster) join(ctx context.Context, addr string, rec raft.NodeRecord) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/internal/cluster/peer", nil)
	if err != nil {
		return err
	}
	resp, err := c.lookup.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var peer peerInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&peer); err != nil || resp.StatusCode != http.StatusOK ||
		peer.ID == "" || !validHostPort(peer.RaftAddr) {
		return fmt.Errorf("%s did not say where its inter-node port is (%s, %v)", addr, resp.Status, err)
	}
	return c.callNode(ctx, peer.ID, peer.RaftAddr, http.MethodPost, "/internal/cluster/join", rec, nil, false)
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
