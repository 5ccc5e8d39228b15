package node

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// Inter-node HTTP (joining, forwarded writes, status probes) lives under
// /internal/cluster/ and is authenticated by an HMAC of the request keyed by
// the cluster key, never by user tokens: a request must be fresh (its time
// within clockSkew) and its nonce unseen, so a captured request cannot be
// replayed.

const (
	clusterAuthHeader = "Herald-Cluster-Auth"
	// forwardedHeader marks a request one node passed on to the leader, so
	// that a node that lost leadership meanwhile answers 503 instead of
	// forwarding again (no loops).
	forwardedHeader = "Herald-Forwarded"
	clockSkew       = time.Minute
	maxInternalBody = 1 << 20
)

type clusterAuth struct {
	// key is the cluster key. Without one every internal request is
	// refused: an HMAC keyed by nothing proves nothing, and these routes
	// share the public listener.
	key []byte

	mu   sync.Mutex
	seen map[string]time.Time // nonce → when it may be forgotten
}

func (a *clusterAuth) mac(method, path, ts, nonce string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, a.key)
	fmt.Fprintf(m, "herald-internal\n%s\n%s\n%s\n%s\n%x", method, path, ts, nonce, sum)
	return hex.EncodeToString(m.Sum(nil))
}

func (a *clusterAuth) sign(req *http.Request, body []byte) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := resource.NewSecret(16)
	req.Header.Set(clusterAuthHeader, ts+" "+nonce+" "+a.mac(req.Method, req.URL.Path, ts, nonce, body))
}

func (a *clusterAuth) verify(r *http.Request, body []byte) bool {
	if len(a.key) == 0 {
		return false
	}
	var ts, nonce, mac string
	if n, _ := fmt.Sscanf(r.Header.Get(clusterAuthHeader), "%s %s %s", &ts, &nonce, &mac); n != 3 {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	when := time.Unix(sec, 0)
	if time.Since(when).Abs() > clockSkew {
		return false
	}
	if !hmac.Equal([]byte(mac), []byte(a.mac(r.Method, r.URL.Path, ts, nonce, body))) {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if len(a.seen) > 10000 {
		for k, exp := range a.seen {
			if now.After(exp) {
				delete(a.seen, k)
			}
		}
	}
	if _, dup := a.seen[nonce]; dup {
		return false
	}
	a.seen[nonce] = when.Add(2 * clockSkew)
	return true
}

// forwarder is the State the API uses: reads from the local replica, writes
// proposed locally on the leader and forwarded to it from a follower.
type forwarder struct {
	*raft.Store
	n *Node
}

// Propose commits cmd through the leader. A follower answers only once it
// has applied the leader's index, so a client reading from the node it wrote
// through sees its write.
func (f forwarder) Propose(ctx context.Context, cmd *raft.Command) (any, error) {
	// ErrNotLeader means Raft refused the entry: nothing was committed, so
	// asking the (new) leader is safe. Give an election a moment.
	// The bound applies to finding a leader and forwarding; a local
	// proposal keeps the caller's context, as on a lone node.
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		if f.Store.IsLeader() {
			v, err := f.Store.Propose(ctx, cmd)
			if !errors.Is(err, raft.ErrNotLeader) {
				return v, err
			}
		} else {
			var w raft.WireResult
			err := f.n.callLeader(fctx, "/internal/cluster/propose", cmd, &w)
			if err == nil {
				var v any
				if v, err = w.Decode(); !errors.Is(err, raft.ErrNotLeader) {
					// The wait has the caller's whole context, not what the
					// round trip left of fctx: the write is done, and only
					// this replica's catching up remains.
					if w.Applied > 0 {
						if werr := f.Store.WaitApplied(ctx, w.Applied); werr != nil {
							f.n.log.Warn("forwarded write committed but not yet applied here", "index", w.Applied, "error", werr)
							// A 2xx now would break read-after-write on this
							// node; a 503 that says the write is done does not.
							return nil, resource.Errorf(resource.CodeUnavailable,
								"The write was committed, but this node has not caught up with it yet (%v); read it again shortly.", werr)
						}
					}
					return v, err
				}
			} else if !errors.Is(err, raft.ErrNotLeader) {
				return nil, forwardError(err)
			}
		}
		if f.n.waitLeaderChange(fctx) != nil {
			return nil, raft.ErrNotLeader
		}
	}
}

// waitLeaderChange waits briefly, for an election to settle, before a retry.
func (n *Node) waitLeaderChange(ctx context.Context) error {
	t := time.NewTimer(50 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// leaderRecord finds the leader's addresses, waiting for an election while
// ctx allows. With no leader it returns raft.ErrNotLeader (a 503).
func (n *Node) leaderRecord(ctx context.Context) (raft.NodeRecord, error) {
	for {
		if _, id := n.store.Raft().LeaderWithID(); id != "" {
			nodes, err := n.store.Nodes()
			if err != nil {
				return raft.NodeRecord{}, err
			}
			if rec, ok := nodes[string(id)]; ok && rec.HTTPAddr != "" {
				return rec, nil
			}
		}
		if err := n.waitLeaderChange(ctx); err != nil {
			return raft.NodeRecord{}, raft.ErrNotLeader
		}
	}
}

// callLeader POSTs body to path on the leader and decodes a 200 answer into
// out. Other answers become errors the API maps to the right status.
func (n *Node) callLeader(ctx context.Context, path string, body, out any) error {
	rec, err := n.leaderRecord(ctx)
	if err != nil {
		return err
	}
	if rec.ID == n.id {
		// This node just became leader; the caller retries locally.
		return raft.ErrNotLeader
	}
	return n.callNode(ctx, rec.HTTPAddr, http.MethodPost, path, body, out, true)
}

func (n *Node) callNode(ctx context.Context, addr, method, path string, body, out any, toLeader bool) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if toLeader {
		req.Header.Set(forwardedHeader, "1")
	}
	n.auth.sign(req, b)
	resp, err := n.client.Do(req)
	if err != nil {
		// The request may have reached the leader and committed.
		return fmt.Errorf("%w: %v", raft.ErrUnknownOutcome, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%w: %v", raft.ErrUnknownOutcome, err)
	}
	if resp.StatusCode == http.StatusOK {
		if out == nil {
			return nil
		}
		return json.Unmarshal(data, out)
	}
	var e struct {
		Error *resource.Error `json:"error"`
	}
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		return raft.ErrNotLeader
	case json.Unmarshal(data, &e) == nil && e.Error != nil:
		return &peerError{status: resp.StatusCode, err: e.Error}
	}
	return &peerError{status: resp.StatusCode, err: fmt.Errorf("%s %s: %s", path, addr, resp.Status)}
}

// peerError is a non-200 answer of another node. It unwraps to the error
// the peer sent, which admin requests (join, remove) pass on as they are.
type peerError struct {
	status int
	err    error
}

func (e *peerError) Error() string { return fmt.Sprintf("peer answered %d: %v", e.status, e.err) }
func (e *peerError) Unwrap() error { return e.err }

// forwardError is what a client gets when the leader refused a forwarded
// proposal outright. Rule-breaking commands come back in a 200 WireResult,
// so a refusal here (403 for clock skew or a bad signature, 400 for size,
// 500) is the cluster's fault, never the client's: it must not reach the
// client as accessDenied or invalidRequest.
func forwardError(err error) error {
	var pe *peerError
	if !errors.As(err, &pe) {
		return err
	}
	return resource.Errorf(resource.CodeUnavailable, "The leader could not take the forwarded write (%d); retry shortly.", pe.status)
}

// internalHandler serves /internal/cluster/ for the other nodes.
func (n *Node) internalHandler() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(ctx context.Context, r *http.Request, body []byte) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInternalBody))
			if err != nil {
				internalError(w, resource.Errorf(resource.CodeInvalidRequest, "body: %v", err))
				return
			}
			if !n.auth.verify(r, body) {
				// Say nothing about why: an unauthenticated peer learns
				// only that it is refused.
				internalError(w, resource.Errorf(resource.CodeAccessDenied, "forbidden"))
				return
			}
			v, err := h(r.Context(), r, body)
			if err != nil {
				internalError(w, err)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(v)
		})
	}
	handle("POST /internal/cluster/propose", func(ctx context.Context, r *http.Request, body []byte) (any, error) {
		var cmd raft.Command
		if err := json.Unmarshal(body, &cmd); err != nil {
			return nil, resource.Errorf(resource.CodeInvalidRequest, "command: %v", err)
		}
		// Only the leader proposes for others: a forwarded write is never
		// forwarded again.
		v, err := n.store.Propose(ctx, &cmd)
		return raft.EncodeResult(v, err, n.store.Applied())
	})
	handle("POST /internal/cluster/join", func(ctx context.Context, r *http.Request, body []byte) (any, error) {
		var rec raft.NodeRecord
		if err := json.Unmarshal(body, &rec); err != nil {
			return nil, resource.Errorf(resource.CodeInvalidRequest, "node: %v", err)
		}
		return struct{}{}, n.addNode(ctx, rec, r.Header.Get(forwardedHeader) != "")
	})
	handle("POST /internal/cluster/remove", func(ctx context.Context, r *http.Request, body []byte) (any, error) {
		var rec raft.NodeRecord
		if err := json.Unmarshal(body, &rec); err != nil {
			return nil, resource.Errorf(resource.CodeInvalidRequest, "node: %v", err)
		}
		return struct{}{}, n.removeNode(ctx, rec.ID, r.Header.Get(forwardedHeader) != "")
	})
	handle("GET /internal/cluster/status", func(ctx context.Context, r *http.Request, body []byte) (any, error) {
		return n.selfStatus(), nil
	})
	return mux
}

func internalError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var re *resource.Error
	switch {
	case errors.As(err, &re):
		switch re.Code {
		case resource.CodeNotFound:
			status = http.StatusNotFound
		case resource.CodeAccessDenied:
			status = http.StatusForbidden
		default:
			status = http.StatusBadRequest
		}
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrUnknownOutcome), errors.Is(err, raft.ErrClosed),
		errors.Is(err, raft.ErrTimeout):
		status = http.StatusServiceUnavailable
		re = resource.Errorf(resource.CodeUnavailable, "%v", err)
	default:
		re = resource.Errorf(resource.CodeGeneralException, "%v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": re})
}

// AddNode adds a voter and records its addresses; on a follower it asks the
// leader to.
func (n *Node) AddNode(ctx context.Context, id, raftAddr, httpAddr string) error {
	return n.addNode(ctx, raft.NodeRecord{ID: id, RaftAddr: raftAddr, HTTPAddr: httpAddr}, false)
}

// RemoveNode removes a member; on a follower it asks the leader to.
func (n *Node) RemoveNode(ctx context.Context, id string) error {
	return n.removeNode(ctx, id, false)
}

func (n *Node) addNode(ctx context.Context, rec raft.NodeRecord, forwarded bool) error {
	if rec.ID == "" || !validHostPort(rec.RaftAddr) || !validHostPort(rec.HTTPAddr) {
		return resource.Errorf(resource.CodeInvalidRequest, "a node needs an id, a raftAddr and an httpAddr (host:port)")
	}
	if len(n.auth.key) == 0 {
		// Without a key the members could not authenticate one another
		// (see clusterAuth), so a second member is refused.
		return resource.Errorf(resource.CodeInvalidRequest, "%s", errNeedKey)
	}
	if !n.store.IsLeader() {
		if forwarded {
			return raft.ErrNotLeader
		}
		return n.callLeader(ctx, "/internal/cluster/join", rec, nil)
	}
	if err := n.store.Raft().AddVoter(hraft.ServerID(rec.ID), hraft.ServerAddress(rec.RaftAddr), 0, 10*time.Second).Error(); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) {
			return raft.ErrNotLeader
		}
		return resource.Errorf(resource.CodeInvalidRequest, "add %s: %v", rec.ID, err)
	}
	if nodes, err := n.store.Nodes(); err != nil || nodes[rec.ID] != rec {
		if _, err := n.store.Propose(ctx, &raft.Command{Op: raft.OpSetNode, Now: time.Now().UnixNano(), Node: &rec}); err != nil {
			return err
		}
	}
	n.rebalanceSoon()
	return nil
}

// rebalanceSoon gives the new membership its slots without holding up the
// request that changed it; housekeeping retries if this fails.
func (n *Node) rebalanceSoon() {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.rebalance(ctx); err != nil {
			n.log.Warn("could not rebalance the slots", "error", err)
		}
	}()
}

func (n *Node) removeNode(ctx context.Context, id string, forwarded bool) error {
	if !n.store.IsLeader() {
		if forwarded {
			return raft.ErrNotLeader
		}
		return n.callLeader(ctx, "/internal/cluster/remove", raft.NodeRecord{ID: id}, nil)
	}
	f := n.store.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	member := false
	for _, s := range f.Configuration().Servers {
		member = member || string(s.ID) == id
	}
	nodes, err := n.store.Nodes()
	if err != nil {
		return err
	}
	if _, recorded := nodes[id]; !member && !recorded {
		return resource.NotFound("node")
	}
	// Forget the addresses first: removing the leader itself ends its
	// leadership, after which it could no longer write the table.
	if _, recorded := nodes[id]; recorded {
		if _, err := n.store.Propose(ctx, &raft.Command{Op: raft.OpRemoveNode, Now: time.Now().UnixNano(), ID: id}); err != nil {
			return err
		}
	}
	if member {
		if err := n.store.Raft().RemoveServer(hraft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
			return raft.ErrUnknownOutcome
		}
	}
	n.rebalanceSoon()
	return nil
}

func validHostPort(s string) bool {
	h, p, err := net.SplitHostPort(s)
	return err == nil && h != "" && p != ""
}

// joinLoop asks the listed nodes to add this one until one of them has, or
// the node stops. A restarted member asks again, which refreshes its
// recorded addresses and is otherwise a no-op.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	rec := raft.NodeRecord{ID: n.id, HTTPAddr: n.httpAdvert, RaftAddr: n.store.RaftAddr()}
	for {
		for _, addr := range n.cfg.Join {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			go func() {
				select {
				case <-n.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := n.callNode(ctx, addr, http.MethodPost, "/internal/cluster/join", rec, nil, false)
			cancel()
			if err == nil {
				n.log.Info("joined the cluster", "via", addr)
				return
			}
			n.log.Warn("join failed; retrying", "via", addr, "error", err)
		}
		select {
		case <-n.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// announce records this node's own addresses when the replica lacks them
// (the first node of a cluster was never joined) or they changed.
func (n *Node) announce(ctx context.Context) error {
	rec := raft.NodeRecord{ID: n.id, HTTPAddr: n.httpAdvert, RaftAddr: n.store.RaftAddr()}
	nodes, err := n.store.Nodes()
	if err != nil || nodes[n.id] == rec {
		return err
	}
	_, err = n.state.Propose(ctx, &raft.Command{Op: raft.OpSetNode, Now: time.Now().UnixNano(), Node: &rec})
	return err
}

// advertiseHTTP is the HTTP address other nodes reach this one at: the
// listener's, with the Raft address's host when it listens on every
// interface.
func advertiseHTTP(listen net.Addr, raftAddr string) string {
	host, port, _ := net.SplitHostPort(listen.String())
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host, _, _ = net.SplitHostPort(raftAddr)
	}
	return net.JoinHostPort(host, port)
}
