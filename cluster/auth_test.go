package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herald-notify/herald/resource"
)

// A forwarded proposal the leader refuses with a non-200 other than 503
// (a 403 for clock skew, a 400 for size) becomes a 503 serviceNotAvailable
// for the client, not the leader's accessDenied or invalidRequest; admin
// requests keep the leader's error (a 404 for an unknown node).
func TestForwardErrorIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{{http.StatusForbidden, resource.CodeAccessDenied}, {http.StatusBadRequest, resource.CodeInvalidRequest},
		{http.StatusInternalServerError, resource.CodeGeneralException}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(tc.status)
			json.NewEncoder(w).Encode(map[string]any{"error": resource.Errorf(tc.code, "refused")})
		}))
		n := &Cluster{client: srv.Client()}
		err := n.callNode(context.Background(), "leader", strings.TrimPrefix(srv.URL, "http://"), http.MethodPost,
			"/internal/cluster/propose", struct{}{}, nil, true)
		srv.Close()
		var re *resource.Error
		if !errors.As(err, &re) || re.Code != tc.code {
			t.Errorf("%d: callNode returned %v, want the peer's %s", tc.status, err, tc.code)
		}
		if !errors.As(forwardError(err), &re) || re.Code != resource.CodeUnavailable {
			t.Errorf("%d: forwarded write answered %v, want %s", tc.status, forwardError(err), resource.CodeUnavailable)
		}
	}
}
