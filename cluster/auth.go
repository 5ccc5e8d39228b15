package cluster

import (
	"encoding/json"
	"net/http"

	"github.com/herald-notify/herald/resource"
)

// Inter-node HTTP (joining, forwarded writes, status probes) reaches a node
// only over its Transport: every connection is TLS and authenticated before
// a request is read (transport.go), so a request needs no signature of its
// own, and a recorded one cannot be replayed (its TLS session is gone).
// Each request also names the node it is meant for (targetHeader), which
// the receiver checks: someone who can steer connections between nodes
// cannot pass a live request meant for one node to another.

const (
	// targetHeader names the node id a request is meant for.
	targetHeader = "Herald-Node"
	// forwardedHeader marks a request one node passed on to the leader, so
	// that a node that lost leadership meanwhile answers 503 instead of
	// forwarding again (no loops).
	forwardedHeader = "Herald-Forwarded"
	maxInternalBody = 1 << 20
)

// bindTarget refuses every request not meant for node id.
func bindTarget(id string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get(targetHeader); got != id {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMisdirectedRequest)
			json.NewEncoder(w).Encode(map[string]any{"error": resource.Errorf(resource.CodeAccessDenied,
				"this request is meant for node %q, not %q", got, id)})
			return
		}
		next.ServeHTTP(w, r)
	})
}
