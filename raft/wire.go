package raft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/herald-notify/herald/resource"
)

// A follower forwards its proposals to the leader (node package) and gets
// back a WireResult. Each command returns one of a few concrete types, and
// callers type-assert them, so the value travels with a tag naming its type
// and is decoded into that type again on the follower.

// WireResult is a proposal's outcome in transit from the leader.
type WireResult struct {
	// Applied is the leader's applied index once the command was applied:
	// the follower answers only after it has applied as far.
	Applied uint64          `json:"applied"`
	Type    string          `json:"type,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
	// Error is the command's own error; StoreError one of the Store's.
	Error      *resource.Error `json:"error,omitempty"`
	StoreError string          `json:"storeError,omitempty"`
}

var storeErrors = map[string]error{"notLeader": ErrNotLeader, "unknownOutcome": ErrUnknownOutcome,
	"closed": ErrClosed, "timeout": ErrTimeout}

// EncodeResult packs what Propose returned.
func EncodeResult(v any, err error, applied uint64) (*WireResult, error) {
	w := &WireResult{Applied: applied}
	if err != nil {
		var re *resource.Error
		if errors.As(err, &re) {
			w.Error = re
			return w, nil
		}
		for name, e := range storeErrors {
			if errors.Is(err, e) {
				w.StoreError = name
				return w, nil
			}
		}
		// Context ends and the like: the outcome is not known here.
		w.StoreError = "unknownOutcome"
		return w, nil
	}
	switch v.(type) {
	case nil:
		return w, nil
	case SendResult:
		w.Type = "sendResult"
		if r := v.(SendResult); r.Encoded != nil {
			w.Value = encodeSendResult(r)
			return w, nil
		}
	case PurgeResult:
		w.Type = "purgeResult"
	case resource.User:
		w.Type = "user"
	case resource.ApplicationRecord:
		w.Type = "application"
	case resource.PasswordCredential:
		w.Type = "passwordCredential"
	case resource.SubscriptionRecord:
		w.Type = "subscription"
	case resource.Notification:
		w.Type = "notification"
	case []byte:
		w.Type = "bytes"
	default:
		return nil, fmt.Errorf("no wire type for a %T result", v)
	}
	b, err := json.Marshal(v)
	w.Value = b
	return w, err
}

// Decode returns the value and error Propose returned on the leader.
func (w *WireResult) Decode() (any, error) {
	if w.Error != nil {
		return nil, w.Error
	}
	if w.StoreError != "" {
		if e, ok := storeErrors[w.StoreError]; ok {
			return nil, e
		}
		return nil, ErrUnknownOutcome
	}
	switch w.Type {
	case "":
		return nil, nil
	case "sendResult":
		return decodeSendResult(w.Value)
	case "purgeResult":
		return decodeAs[PurgeResult](w.Value)
	case "user":
		return decodeAs[resource.User](w.Value)
	case "application":
		return decodeAs[resource.ApplicationRecord](w.Value)
	case "passwordCredential":
		return decodeAs[resource.PasswordCredential](w.Value)
	case "subscription":
		return decodeAs[resource.SubscriptionRecord](w.Value)
	case "notification":
		return decodeAs[resource.Notification](w.Value)
	case "bytes":
		return decodeAs[[]byte](w.Value)
	}
	return nil, fmt.Errorf("unknown wire result type %q", w.Type)
}

func decodeAs[T any](b []byte) (any, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// WaitApplied blocks until this node has applied index, so that a follower
// answering a forwarded write shows that write to its next read.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	if s.fsm.applied.wait(index, ctx.Done(), s.closing) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return ErrClosed
}
