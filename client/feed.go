package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The signed-in user's side of the API: the feed, read and dismissed
// state, delta sync and the live stream (API.md section 6). These calls
// need a user's token.

// Notifications lists the user's active notifications, newest first,
// following every page.
func (c *Client) Notifications(ctx context.Context) ([]Notification, error) {
	return list[Notification](ctx, c, "/v1.0/me/notifications")
}

// MarkRead sets the notification's readState to "read" on every device of
// the user.
func (c *Client) MarkRead(ctx context.Context, id string) (*Notification, error) {
	return c.updateNotification(ctx, id, map[string]string{"readState": "read"})
}

// Dismiss sets the notification's userActionState to "dismissed" on every
// device of the user.
func (c *Client) Dismiss(ctx context.Context, id string) (*Notification, error) {
	return c.updateNotification(ctx, id, map[string]string{"userActionState": "dismissed"})
}

func (c *Client) updateNotification(ctx context.Context, id string, patch map[string]string) (*Notification, error) {
	var out Notification
	if err := c.Do(ctx, http.MethodPatch, idPath("/v1.0/me/notifications", id), patch, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Delta returns what changed in the user's feed since deltaLink, and the
// deltaLink to pass next time. An empty deltaLink starts a sync: every
// active notification. Deleted and expired notifications come back with
// only ID and Removed set. A deltaLink too old answers an *Error with
// status 410 (resyncRequired): start again with "".
func (c *Client) Delta(ctx context.Context, deltaLink string) ([]Notification, string, error) {
	path := deltaLink
	if path == "" {
		path = "/v1.0/me/notifications/delta"
	}
	var all []Notification
	for {
		var page struct {
			Value     []Notification `json:"value"`
			NextLink  string         `json:"@odata.nextLink"`
			DeltaLink string         `json:"@odata.deltaLink"`
		}
		if err := c.Do(ctx, http.MethodGet, path, nil, &page); err != nil {
			return all, "", err
		}
		all = append(all, page.Value...)
		if page.DeltaLink != "" {
			return all, page.DeltaLink, nil
		}
		if page.NextLink == "" || page.NextLink == path {
			return all, "", errors.New("client: delta page without a nextLink or deltaLink")
		}
		path = page.NextLink
	}
}

// Event is one change on the live stream.
type Event struct {
	// Type is "created", "updated" or "deleted".
	Type string
	// ID is the stream cursor: pass the last one seen to Stream to resume.
	ID           string
	Notification Notification
}

// Stream is the user's live stream (Server-Sent Events). It is not safe
// for concurrent use; Close it when done.
type Stream struct {
	body io.ReadCloser
	r    *bufio.Reader
}

// Stream opens the user's live stream. With lastEventID (an Event.ID seen
// before) the server first replays every change after it, so a client that
// lost its connection misses nothing; without one the stream starts live.
// A lastEventID the server no longer has is an error that matches
// ErrResyncRequired.
// Cancelling ctx ends the stream.
func (c *Client) Stream(ctx context.Context, lastEventID string) (*Stream, error) {
	return c.stream(ctx, "/v1.0/me/notifications/stream", lastEventID)
}

// StreamFor is Stream for the device that holds the subscription
// subscriptionID (a UNSID of the user's, a live one say): it carries what
// that subscription receives, and its events count as delivered to it.
func (c *Client) StreamFor(ctx context.Context, subscriptionID, lastEventID string) (*Stream, error) {
	return c.stream(ctx, "/v1.0/me/notifications/stream?subscriptionId="+url.QueryEscape(subscriptionID), lastEventID)
}

func (c *Client) stream(ctx context.Context, path, lastEventID string) (*Stream, error) {
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	return &Stream{body: resp.Body, r: bufio.NewReader(resp.Body)}, nil
}

// ErrResyncRequired says that a stream cursor or a deltaLink is too old or
// unknown: sync with Delta from "", then open a new stream without a
// cursor. The server answers so when the stream opens (Stream's *Error
// with status 410 matches it with errors.Is), as Delta does.
var ErrResyncRequired = errors.New("client: stream cursor too old; resync required")

// Next blocks until the next event. It returns io.EOF when the server ends
// the stream (a node shutting down: reconnect with the last ID). Events of
// kinds other than created, updated and deleted are skipped.
func (s *Stream) Next() (Event, error) {
	var ev Event
	var data strings.Builder
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return Event{}, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev.Type == "" && data.Len() == 0 {
				continue // a keep-alive comment's end, or a retry hint
			}
			switch ev.Type {
			case "resyncRequired":
				return Event{}, ErrResyncRequired
			case "shutdown":
				// The node is going away and closes the stream next; as
				// an event it would hand the caller an empty ID to
				// resume with.
				return Event{}, io.EOF
			case "created", "updated", "deleted":
			default:
				ev = Event{} // a kind this client does not know
				data.Reset()
				continue
			}
			if err := json.Unmarshal([]byte(data.String()), &ev.Notification); err != nil {
				return Event{}, fmt.Errorf("client: stream event %q: %w", ev.Type, err)
			}
			return ev, nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			ev.Type = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "id:"):
			ev.ID = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

// Close ends the stream.
func (s *Stream) Close() error { return s.body.Close() }

// NewSubscription is the body of POST /v1.0/me/notificationSubscriptions:
// a device of the user asking to receive an application's notifications.
// Channel is {"type":"live"}, {"type":"webhook","url":...}, a Web Push
// subscription, or an FCM or APNs token (API.md section 5).
type NewSubscription struct {
	TargetHostName string         `json:"targetHostName"`
	PlatformType   string         `json:"platformType"`
	DeviceName     string         `json:"deviceName,omitempty"`
	Channel        map[string]any `json:"channel"`
	// ExpirationDateTime is optional: the server's default is 30 days
	// from now, its limit 90.
	ExpirationDateTime time.Time `json:"expirationDateTime,omitzero"`
}

// Subscription is a device subscription. Its ID is the UNSID the user's
// application service sends to (Send); Secret is a webhook's signing secret,
// shown only when it is created.
type Subscription struct {
	ID             string `json:"id"`
	UserID         string `json:"userId"`
	TargetHostName string `json:"targetHostName"`
	PlatformType   string `json:"platformType"`
	DeviceName     string `json:"deviceName"`
	// Channel is as it was given, without key material.
	Channel      map[string]any `json:"channel"`
	Status       string         `json:"status"`
	StatusReason string         `json:"statusReason"`
	Secret       string         `json:"secret,omitempty"`
	// ExpirationDateTime is when the subscription stops receiving unless
	// it is renewed before (PATCH expirationDateTime).
	ExpirationDateTime time.Time `json:"expirationDateTime,omitzero"`
	CreatedDateTime    time.Time `json:"createdDateTime,omitzero"`
}

// Subscribe registers a device subscription for the signed-in user.
func (c *Client) Subscribe(ctx context.Context, s NewSubscription) (*Subscription, error) {
	var out Subscription
	if err := c.Do(ctx, http.MethodPost, "/v1.0/me/notificationSubscriptions", s, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
