package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herald-notify/herald/raft"
)

// Every 503 from the cluster's side carries Retry-After and says whether the
// write may have been committed, and never shows the cause's addresses,
// which go to the log.
func TestUnavailableSaysWhetherCommittedAndNoAddress(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cause := errors.New(`Post "http://10.0.0.7:8750/internal/cluster/forward": dial tcp 10.0.0.7:8750: connect: connection refused`)
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: %w", raft.ErrUnknownOutcome, cause), "may have been committed"},
		{fmt.Errorf("%w: %w", raft.ErrNotLeader, cause), "not committed"},
		{fmt.Errorf("%w: %w", raft.ErrClosed, cause), "not committed"},
		{fmt.Errorf("%w: %w", raft.ErrTimeout, cause), "not committed"},
	} {
		w := httptest.NewRecorder()
		s.writeError(w, httptest.NewRequest(http.MethodPost, "/v1.0/users", nil), tc.err)
		var body errorBody
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || body.Error.Code != "serviceNotAvailable" {
			t.Errorf("%v: %d, Retry-After %q, %s", tc.err, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
		if !strings.Contains(body.Error.Message, tc.want) {
			t.Errorf("%v: message %q, want it to say %q", tc.err, body.Error.Message, tc.want)
		}
		if strings.Contains(w.Body.String(), "10.0.0.7") || strings.Contains(w.Body.String(), "internal/") {
			t.Errorf("%v: the body shows the cause: %s", tc.err, w.Body)
		}
	}
}
