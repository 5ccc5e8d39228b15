package client

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Error is a non-2xx answer of the server. Both error shapes of API.md land
// here: the Graph body {"error":{"code","message","target"}} of the REST API,
// and the RFC 6749 body {"error":"invalid_grant","error_description"} of the
// token endpoint.
type Error struct {
	Status  int    // HTTP status
	Code    string // e.g. "itemNotFound", "invalid_grant"; empty if the body had none
	Message string
	Target  string // the offending property, when the server names one
	// RequestID is the server's request-id, to quote when reporting a problem.
	RequestID string
	// RetryAfter is the server's Retry-After (429, 503), zero if absent.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return e.Code + ": " + e.Message
}

// Is lets errors.Is(err, ErrResyncRequired) tell a cursor or deltaLink the
// server no longer has, which it answers 410 resyncRequired when the
// stream opens or the delta is asked, from any other failure.
func (e *Error) Is(target error) bool {
	return target == ErrResyncRequired && e.Status == http.StatusGone
}

// maxErrorBody bounds what is read of an error answer; a proxy's HTML error
// page must not fill memory.
const maxErrorBody = 64 << 10

func decodeError(resp *http.Response) *Error {
	e := &Error{
		Status:     resp.StatusCode,
		RequestID:  resp.Header.Get("request-id"),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))

	var env struct {
		Error       json.RawMessage `json:"error"`
		Description string          `json:"error_description"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Error) > 0 {
		var oauthCode string
		var graph struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			Target     string `json:"target"`
			InnerError struct {
				RequestID string `json:"request-id"`
			} `json:"innerError"`
		}
		switch {
		case json.Unmarshal(env.Error, &oauthCode) == nil:
			e.Code, e.Message = oauthCode, env.Description
			return e
		case json.Unmarshal(env.Error, &graph) == nil && graph.Code != "":
			e.Code, e.Message, e.Target = graph.Code, graph.Message, graph.Target
			if e.RequestID == "" {
				e.RequestID = graph.InnerError.RequestID
			}
			return e
		}
	}
	// Not a Herald body (a proxy, a load balancer): keep a readable excerpt.
	e.Message = strings.TrimSpace(string(body))
	if len(e.Message) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(e.Message[cut]) {
			cut--
		}
		e.Message = e.Message[:cut] + "..."
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// parseRetryAfter reads either form RFC 9110 allows: delay seconds or an
// HTTP date.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
