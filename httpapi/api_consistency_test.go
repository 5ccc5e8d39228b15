package httpapi_test

import (
	"net/http"
	"testing"
)

// ConsistencyLevel: strong runs a read barrier before the request (on a lone
// node it always succeeds); Graph's "eventual" means the default; any other
// value is refused naming the header, rather than silently read weaker.
// Answers that say "not here" are unchanged on a lone node.
func TestConsistencyLevelHeader(t *testing.T) {
	n := start(t, nil)
	for _, level := range []string{"strong", "Strong", "eventual", ""} {
		n.get(t, n.admin, "/v1.0/me", "ConsistencyLevel", level).expect(t, http.StatusOK)
		n.get(t, n.admin, "/v1.0/users?$top=1", "ConsistencyLevel", level).expect(t, http.StatusOK)
	}
	wantInvalid(t, n.get(t, n.admin, "/v1.0/me", "ConsistencyLevel", "bounded"), "ConsistencyLevel")

	wantError(t, n.get(t, "no-such-token", "/v1.0/me", "ConsistencyLevel", "strong"), http.StatusUnauthorized, "unauthenticated")
	wantError(t, n.get(t, "no-such-token", "/v1.0/me"), http.StatusUnauthorized, "unauthenticated")
	wantError(t, n.get(t, n.admin, "/v1.0/users/nobody"), http.StatusNotFound, "itemNotFound")
	wantError(t, n.get(t, n.admin, "/v1.0/users/nobody", "ConsistencyLevel", "strong"), http.StatusNotFound, "itemNotFound")
	wantError(t, n.get(t, n.admin, "/v1.0/me/notifications/delta?$deltatoken=ZC45OTk5OTk5"), http.StatusGone, "resyncRequired")
}
