package fanout

import (
	"context"
	"time"

	"github.com/herald-notify/herald/resource"
)

// Message is one change of a notification to deliver to one subscription.
type Message struct {
	// Type is the event: resource.ChangeCreated, ChangeUpdated or
	// ChangeDeleted (an expiry is delivered as a deletion).
	Type string
	// Notification is the notification as it is now. For a deletion only
	// its ID is certain to be set.
	Notification resource.Notification
	// Reason is "deleted" or "expired" for a deletion.
	Reason string
	// DeliveryID is stable across retries of this message to this
	// subscription (the webhook-id of Standard Webhooks).
	DeliveryID string
}

// Outcome classifies one delivery attempt.
type Outcome int

const (
	// Delivered: the endpoint accepted the message.
	Delivered Outcome = iota
	// Retry: a temporary failure (timeout, 429, 5xx); try again later.
	Retry
	// Disable: the endpoint is gone (404/410, "unregistered"); disable
	// the subscription.
	Disable
	// Failed: a permanent failure of this message (other 4xx); do not retry.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Disable:
		return "disable"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Result is what one attempt came to.
type Result struct {
	Outcome Outcome
	// RetryAfter is the endpoint's own Retry-After, when it sent one.
	RetryAfter time.Duration
	// Err says what went wrong, in words fit for a delivery record's
	// lastError; empty when delivered.
	Err string
}

// Sender delivers messages over one channel type. Send must honour ctx's
// deadline, never follow redirects, and read at most a small, bounded part
// of any response body.
type Sender interface {
	Send(ctx context.Context, sub *resource.SubscriptionRecord, msg *Message) Result
}
