package resource

import (
	"errors"
	"fmt"
)

// Error codes of API.md §1; the HTTP layer maps each to its status.
const (
	CodeInvalidRequest   = "invalidRequest"
	CodeUnauthenticated  = "unauthenticated"
	CodeAccessDenied     = "accessDenied"
	CodeNotFound         = "itemNotFound"
	CodeMethodNotAllowed = "methodNotAllowed"
	CodeNameExists       = "nameAlreadyExists"
	CodeResyncRequired   = "resyncRequired"
	CodePayloadTooLarge  = "payloadTooLarge"
	CodeUnsupportedMedia = "unsupportedMediaType"
	CodeRateLimited      = "activityLimitReached"
	CodeUnavailable      = "serviceNotAvailable"
	CodeQuotaReached     = "quotaLimitReached"
	CodeGeneralException = "generalException"
)

// MsgCommittedNotApplied is the message of the 503 a node answers for a
// write that the cluster committed but that the node had not applied in
// time: the write is done, only this node's copy of it lags.
const MsgCommittedNotApplied = "The write was committed, but this node has not caught up with it yet; read it again shortly."

// CommittedNotApplied reports whether err is that 503.
func CommittedNotApplied(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == CodeUnavailable && e.Message == MsgCommittedNotApplied
}

// Error is a failure a client caused or must know about. It crosses package
// boundaries (validation, the replicated state machine, handlers) unchanged,
// so that the FSM can refuse a command with the same words a handler would.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
}

func (e *Error) Error() string {
	if e.Target != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, e.Target)
	}
	return e.Code + ": " + e.Message
}

// Invalid is a 400 about one field.
func Invalid(target, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf(format, args...), Target: target}
}

// NotFound is a 404 for a kind of item ("user", "notification").
func NotFound(kind string) *Error {
	return &Error{Code: CodeNotFound, Message: "The " + kind + " was not found."}
}

// Errorf builds an Error with any code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
