package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/herald-notify/herald/resource"
)

// Consistency across nodes (docs/API-NOTES.md, "Consistency across nodes").
// Every node reads its own replica. A handler about to answer "not here"
// (an unknown token, subscription, notification or cursor) first runs one
// read barrier and looks again, so that whatever a client got from another
// node is found. ConsistencyLevel: strong runs the barrier before the
// handler, so that the whole read sees at least the leader's commit index
// as of the request.

// consistencyHeader is the request header that asks for a strong read: the
// header Microsoft Graph uses for its consistency levels.
const consistencyHeader = "ConsistencyLevel"

// readBarrier records a request's barrier: at most one per request, since
// one that started after the request arrived already covers everything the
// client can have got before sending it.
type readBarrier struct {
	ran bool
	// confirmed: the barrier completed, so the replica holds at least
	// what the leader had committed when the request arrived.
	confirmed bool
}

type readBarrierKey struct{}

// consistency prepares r for lookAgain and honours ConsistencyLevel.
func (s *Server) consistency(r *http.Request) (*http.Request, error) {
	b := &readBarrier{}
	r = r.WithContext(context.WithValue(r.Context(), readBarrierKey{}, b))
	switch level := r.Header.Get(consistencyHeader); strings.ToLower(level) {
	case "", "eventual":
		// Graph's "eventual" asks for no more than the default.
		return r, nil
	case "strong":
		b.ran = true
		if err := s.state.Barrier(r.Context()); err != nil {
			s.log.Debug("strong read: barrier failed", "error", err)
			return r, unavailable("This node could not confirm that it holds the leader's latest state in time; "+
				"retry, or read without ConsistencyLevel: strong.", time.Second)
		}
		b.confirmed = true
		return r, nil
	default:
		return r, resource.Invalid(consistencyHeader, "ConsistencyLevel must be strong or eventual, not %q.", level)
	}
}

// lookAgain reports whether a lookup that found nothing (or something the
// caller may not use) is worth repeating: it runs the request's read
// barrier the first time it is asked and says yes; later, or after a strong
// read's barrier, the replica is as fresh as this request will get, and it
// says no. A barrier that ran out of time still says yes: what applied
// meanwhile may hold the answer, and the caller then answers from what it
// finds.
func (s *Server) lookAgain(r *http.Request) bool {
	b, _ := r.Context().Value(readBarrierKey{}).(*readBarrier)
	if b == nil {
		b = &readBarrier{}
	}
	if b.ran {
		return false
	}
	b.ran = true
	if err := s.state.Barrier(r.Context()); err != nil {
		s.log.Debug("read barrier failed; answering from this replica", "path", r.URL.Path, "error", err)
	} else {
		b.confirmed = true
	}
	return true
}

// unknownToken is nil once the request's barrier completed, so that a
// token this node does not hold is unknown to the cluster and gets its 401;
// otherwise (the leader out of reach) the 503 that has the client retry:
// the token may have been issued or rotated through a node further ahead,
// and a 401 would have the client throw away a token that works there.
func unknownToken(r *http.Request) error {
	if caughtUp(r) {
		return nil
	}
	return unavailable("This node cannot reach the cluster's leader to check the token; retry, or use another node.", time.Second)
}

// caughtUp reports whether the request's barrier completed: only then is
// "not here" a fact about the cluster rather than about this replica.
func caughtUp(r *http.Request) bool {
	b, _ := r.Context().Value(readBarrierKey{}).(*readBarrier)
	return b != nil && b.confirmed
}
