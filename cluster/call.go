package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// leaderRecord finds the leader's id and Raft address (where its
// inter-node port is), waiting for an election while ctx allows. With no
// leader it returns raft.ErrNotLeader (a 503).
func (c *Cluster) leaderRecord(ctx context.Context) (raft.NodeRecord, error) {
	for {
		if addr, id := c.store.Raft().LeaderWithID(); id != "" && addr != "" {
			return raft.NodeRecord{ID: string(id), RaftAddr: string(addr)}, nil
		}
		if err := c.waitLeaderChange(ctx); err != nil {
			return raft.NodeRecord{}, raft.ErrNotLeader
		}
	}
}

// callLeader POSTs body to path on the leader and decodes a 200 answer into
// out. Other answers become errors the API maps to the right status.
func (c *Cluster) callLeader(ctx context.Context, path string, body, out any) error {
	rec, err := c.leaderRecord(ctx)
	if err != nil {
		return err
	}
	if rec.ID == c.id {
		// This node just became leader; the caller retries locally.
		return raft.ErrNotLeader
	}
	return c.callNode(ctx, rec.ID, rec.RaftAddr, http.MethodPost, path, body, out, true)
}

// callNode makes an internal request to node id over the inter-node
// transport at raftAddr.
func (c *Cluster) callNode(ctx context.Context, id, raftAddr, method, path string, body, out any, toLeader bool) error {
	if c.stopped != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(c.stopped, cancel)()
	}
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	// Plain http: the transport underneath is TLS (transport.go).
	req, err := http.NewRequestWithContext(ctx, method, "http://"+raftAddr+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(targetHeader, id)
	if toLeader {
		req.Header.Set(forwardedHeader, "1")
	}
	client := c.client
	if path == forwardPath {
		client = c.forwards
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, ErrWrongKey) || errors.Is(err, ErrUntrustedPeer) || errors.Is(err, ErrUnreachable) ||
			errors.Is(err, ErrNeedKey) {
			// No connection was made, so nothing was sent.
			return fmt.Errorf("%w: %w", raft.ErrNotLeader, err)
		}
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
	return &peerError{status: resp.StatusCode, err: fmt.Errorf("%s on node %s: %s", path, id, resp.Status)}
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

// PublicHandler serves the one inter-node route of the public listener:
// GET /internal/cluster/peer, which tells a joining node this node's id and
// the inter-node address to reach it at. Nothing in it is secret.
func (c *Cluster) PublicHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /internal/cluster/peer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(peerInfo{ID: c.id, RaftAddr: c.store.RaftAddr()})
	})
	return mux
}

// peerInfo is the answer of GET /internal/cluster/peer.
type peerInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raftAddr"`
}

// encodedJSON is an answer already encoded, which the handler writes as
// it is.
type encodedJSON []byte

// handler serves /internal/cluster/ to the other nodes, over the
// transport only (every connection authenticated; see auth.go).
func (c *Cluster) handler() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(ctx context.Context, r *http.Request, body []byte) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInternalBody))
			if err != nil {
				internalError(w, resource.Errorf(resource.CodeInvalidRequest, "body: %v", err))
				return
			}
			v, err := h(r.Context(), r, body)
			if err != nil {
				internalError(w, err)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			if b, ok := v.(encodedJSON); ok {
				w.Write(append(b, '\n')) // as json.Encoder ends it
				return
			}
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
		v, err := c.store.Propose(ctx, &cmd)
		return raft.EncodeResult(v, err, c.store.Applied())
	})
	handle("POST "+forwardPath, c.serveForward)
	handle("POST /internal/cluster/join", func(ctx context.Context, r *http.Request, body []byte) (any, error) {
		var req joinRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, resource.Errorf(resource.CodeInvalidRequest, "node: %v", err)
		}
		return struct{}{}, c.addNode(ctx, req, r.Header.Get(forwardedHeader) != "")
	})
	handle("POST /internal/cluster/remove", func(ctx context.Context, r *http.Request, body []byte) (any, error) {
		var rec raft.NodeRecord
		if err := json.Unmarshal(body, &rec); err != nil {
			return nil, resource.Errorf(resource.CodeInvalidRequest, "node: %v", err)
		}
		return struct{}{}, c.removeNode(ctx, rec.ID, r.Header.Get(forwardedHeader) != "")
	})
	handle("GET /internal/cluster/status", func(ctx context.Context, r *http.Request, body []byte) (any, error) {
		ns := c.selfStatus()
		ns.ClockMs = c.clockMs()
		return ns, nil
	})
	handle("POST "+readIndexPath, c.serveReadIndex)     // barrier.go
	handle("POST "+leaderCheckPath, c.serveLeaderCheck) // barrier.go
	handle("POST "+signInPath, c.serveSignIn)           // signin.go
	handle("POST "+rateLimitsPath, c.serveRateLimits)   // ratelimits.go
	handle("GET /internal/cluster/hello", func(ctx context.Context, r *http.Request, body []byte) (any, error) {
		return c.hello(), nil
	})
	return bindTarget(c.id, mux)
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
