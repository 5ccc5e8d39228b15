package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

var statusOf = map[string]int{
	resource.CodeInvalidRequest:   http.StatusBadRequest,
	resource.CodeUnauthenticated:  http.StatusUnauthorized,
	resource.CodeAccessDenied:     http.StatusForbidden,
	resource.CodeNotFound:         http.StatusNotFound,
	resource.CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	resource.CodeNameExists:       http.StatusConflict,
	resource.CodeResyncRequired:   http.StatusGone,
	resource.CodePayloadTooLarge:  http.StatusRequestEntityTooLarge,
	resource.CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	resource.CodeRateLimited:      http.StatusTooManyRequests,
	resource.CodeUnavailable:      http.StatusServiceUnavailable,
	resource.CodeQuotaReached:     http.StatusInsufficientStorage,
	resource.CodeGeneralException: http.StatusInternalServerError,
}

// retryAfter marks an error whose response carries Retry-After.
type retryAfter struct {
	err   *resource.Error
	after time.Duration
}

func (e *retryAfter) Error() string { return e.err.Error() }
func (e *retryAfter) Unwrap() error { return e.err }

func unavailable(msg string, after time.Duration) error {
	return &retryAfter{resource.Errorf(resource.CodeUnavailable, "%s", msg), after}
}

func unauthenticated(msg string) error {
	return resource.Errorf(resource.CodeUnauthenticated, "%s", msg)
}

func denied(msg string) error { return resource.Errorf(resource.CodeAccessDenied, "%s", msg) }

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code       string     `json:"code"`
	Message    string     `json:"message"`
	Target     string     `json:"target,omitempty"`
	InnerError innerError `json:"innerError"`
}

type innerError struct {
	RequestID string `json:"request-id"`
	Date      string `json:"date"`
}

// writeError answers with the contract's error body. Anything that is not a
// client error is logged and answered as generalException without detail.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, re := s.classify(w, r, err)
	writeJSON(w, status, errorBody{Error: errorDetail{Code: re.Code, Message: re.Message, Target: re.Target,
		InnerError: innerError{RequestID: w.Header().Get("request-id"), Date: resource.At(time.Now()).String()}}})
}

// classify is err's status and error, logging what the client is not told
// and setting the headers that go with the status.
func (s *Server) classify(w http.ResponseWriter, r *http.Request, err error) (int, *resource.Error) {
	var re *resource.Error
	var ra *retryAfter
	switch {
	case errors.As(err, &ra):
		re = ra.err
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(ra.after.Round(time.Second)/time.Second))))
	case errors.As(err, &re):
	case errors.Is(err, syscall.ENOSPC):
		re = resource.Errorf(resource.CodeQuotaReached, "The server's disk is full; nothing was stored.")
	case errors.Is(err, raft.ErrUnknownOutcome), errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrTimeout),
		errors.Is(err, raft.ErrClosed):
		// The cause may name other nodes' addresses: it goes to the log,
		// and the client gets what it can act on.
		s.log.Debug("request unavailable", "method", r.Method, "path", r.URL.Path,
			"request_id", w.Header().Get("request-id"), "error", err)
		re = resource.Errorf(resource.CodeUnavailable, "%s", unavailableMessage(err))
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		re = resource.Errorf(resource.CodeUnavailable, "The request was cancelled or took too long; retry shortly.")
		w.Header().Set("Retry-After", "1")
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path,
			"request_id", w.Header().Get("request-id"), "error", err)
		re = resource.Errorf(resource.CodeGeneralException, "An internal error occurred; the request id identifies it in the server log.")
	}
	status, ok := statusOf[re.Code]
	if !ok {
		status = http.StatusBadRequest
	}
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "1")
		}
	}
	return status, re
}

// unavailableMessage says whether a write that failed for the cluster's
// sake (not the request's) may have been committed, which decides whether
// the client may simply retry it. It names no node and no address.
func unavailableMessage(err error) string {
	switch {
	case errors.Is(err, raft.ErrUnknownOutcome):
		return "The write may have been committed: the leader stopped answering while taking it. " +
			"Retrying is safe for a send with an appNotificationId and for a PATCH or DELETE; " +
			"before repeating a create, check whether it exists."
	case errors.Is(err, raft.ErrClosed):
		return "The request was not committed: this node is shutting down. Retry; another node of the cluster can take it."
	case errors.Is(err, raft.ErrTimeout):
		return "The request was not committed: the cluster is too busy to take it now. Retry after the time in Retry-After."
	}
	return "The request was not committed: the cluster has no leader right now (an election takes a second or two). " +
		"Retry after the time in Retry-After."
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encode response", "error", err)
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"generalException","message":"The response could not be encoded."}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

// writeBody writes b, already JSON, as writeJSON would write its value.
func writeBody(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

// isUnauthenticated reports whether err is the 401 of a missing, unknown or
// expired credential.
func isUnauthenticated(err error) bool {
	var e *resource.Error
	return errors.As(err, &e) && e.Code == resource.CodeUnauthenticated
}
