package client_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testnode"
)

// A node that shuts down says so on its streams (event: shutdown) before it
// closes them. Next reports that as the end of the stream, io.EOF, as its
// documentation says, and not as an event: a reader that keeps the last
// event's ID to resume with would otherwise keep the shutdown's empty one
// and come back with no replay, missing what was sent meanwhile.
func TestStreamNextEndsAtNodeShutdown(t *testing.T) {
	n := testnode.Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.PasswordToken(ctx, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	admin := c.With(client.WithToken(tok.AccessToken))
	if _, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Tasks", TargetHostName: "tasks.contoso.com"}); err != nil {
		t.Fatal(err)
	}
	stream, err := admin.Stream(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	sent, err := admin.SendToUser(ctx, "admin", &client.Notification{TargetHostName: "tasks.contoso.com",
		Payload: &client.Payload{VisualContent: &client.VisualContent{Title: "Before the restart"}}})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Next()
	if err != nil || ev.Type != "created" || ev.Notification.ID != sent.ID || ev.ID == "" {
		t.Fatalf("first event %+v, %v; want created %s with a cursor", ev, err, sent.ID)
	}

	closed := make(chan error, 1)
	go func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		closed <- n.Close(cctx)
	}()
	ev, err = stream.Next()
	if !errors.Is(err, io.EOF) {
		t.Errorf("Next at the node's shutdown = %+v, %v; want io.EOF", ev, err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// A cursor the server no longer has (or never made) is refused when the
// stream opens, with 410 resyncRequired; that is the case
// ErrResyncRequired documents, so a reconnect loop that checks for it
// resyncs rather than retrying the dead cursor for ever. A deltaLink too
// old says the same.
func TestStaleCursorIsErrResyncRequired(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(heraldURL)
	if err != nil {
		t.Fatal(err)
	}
	admin := c.With(client.WithToken(adminToken()))
	_, err = admin.Stream(ctx, "not-a-cursor")
	if !errors.Is(err, client.ErrResyncRequired) {
		t.Errorf("Stream with a cursor the server does not have: %v, want ErrResyncRequired", err)
	}
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 410 || apiErr.Code != "resyncRequired" {
		t.Errorf("Stream with a cursor the server does not have: %v, want *Error 410 resyncRequired", err)
	}
	_, _, err = admin.Delta(ctx, heraldURL+"/v1.0/me/notifications/delta?$deltatoken=ZC45OTk5OTk5")
	if !errors.Is(err, client.ErrResyncRequired) {
		t.Errorf("Delta with a deltaLink beyond the log: %v, want ErrResyncRequired", err)
	}
	// Another error is not one.
	_, _, err = admin.Delta(ctx, "/v1.0/me/notifications/delta?$deltatoken=made-up")
	if err == nil || errors.Is(err, client.ErrResyncRequired) {
		t.Errorf("Delta with a made-up token: %v, want an error other than ErrResyncRequired", err)
	}
}

// A device keeps its subscription alive by renewing it before its
// expirationDateTime (docs/migrating-from-graph.md, "The client"), so
// Subscribe hands back when that is, and takes one, as the server does.
func TestSubscribeReturnsExpiration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	user := signIn("frank")
	want := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Millisecond)
	s, err := user.Subscribe(ctx, client.NewSubscription{TargetHostName: "tasks.contoso.com", PlatformType: "web",
		Channel: map[string]any{"type": "live"}, ExpirationDateTime: want})
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := user.Do(ctx, "GET", "/v1.0/me/notificationSubscriptions/"+s.ID, nil, &raw); err != nil {
		t.Fatal(err)
	}
	if !s.ExpirationDateTime.Equal(want) || raw["expirationDateTime"] != want.Format("2006-01-02T15:04:05.000Z") {
		t.Errorf("expirationDateTime %v, the server has %v; want %v", s.ExpirationDateTime, raw["expirationDateTime"], want)
	}
	if s.CreatedDateTime.IsZero() || s.UserID == "" || s.UserID != raw["userId"] || s.Channel["type"] != "live" {
		t.Errorf("subscription %+v, the server has %v", s, raw)
	}
}

// An application manages what it sent with the same two headers as a send
// (API.md section 5): its token and the X-UNS-ID. The package has no method
// for those calls, and says they go through Do, so Do must be able to carry
// the header: WithUNSID.
func TestApplicationManagesWhatItSentThroughDo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	unsid := subscribedDevice("grace")
	c, err := client.New(heraldURL)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.ClientCredentialsToken(ctx, appID, appSecret)
	if err != nil {
		t.Fatal(err)
	}
	app := c.With(client.WithToken(tok.AccessToken))
	for _, g := range []string{"builds", "builds", "deploys"} {
		if _, err := app.Send(ctx, unsid, &client.Notification{GroupName: g,
			Payload: &client.Payload{VisualContent: &client.VisualContent{Title: g}}}); err != nil {
			t.Fatal(err)
		}
	}
	mine := app.With(client.WithUNSID(unsid))
	if err := mine.Do(ctx, "DELETE", "/v1.0/me/notifications?groupName=builds", nil, nil); err != nil {
		t.Fatalf("delete the group: %v", err)
	}
	var page struct {
		Value []client.Notification `json:"value"`
	}
	if err := mine.Do(ctx, "GET", "/v1.0/me/notifications", nil, &page); err != nil {
		t.Fatalf("list what it sent: %v", err)
	}
	if len(page.Value) != 1 || page.Value[0].GroupName != "deploys" {
		t.Errorf("what the application sent, after deleting a group: %+v", page.Value)
	}
}

// A device that registered a live subscription (the migration guide's
// step 2) reads its stream for that subscription, so that what it receives
// counts as delivered to it (API.md section 6), as the browser SDK's
// stream({subscriptionId}) does; read through a plain stream, the
// deliveries stay pending for good.
func TestStreamForMarksDeliveries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	user := signIn("heidi")
	sub, err := user.Subscribe(ctx, client.NewSubscription{TargetHostName: "tasks.contoso.com", PlatformType: "windows",
		Channel: map[string]any{"type": "live"}})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := user.StreamFor(ctx, sub.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	sent := send("heidi", "task-1", "Write the report")
	ev, err := stream.Next()
	if err != nil || ev.Type != "created" || ev.Notification.ID != sent.ID {
		t.Fatalf("event %+v, %v; want created %s", ev, err, sent.ID)
	}
	var state string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var page struct {
			Value []struct {
				SubscriptionID string `json:"subscriptionId"`
				State          string `json:"state"`
			} `json:"value"`
		}
		if err := user.Do(ctx, "GET", "/v1.0/me/notifications/"+sent.ID+"/deliveries", nil, &page); err != nil {
			t.Fatal(err)
		}
		for _, d := range page.Value {
			if d.SubscriptionID == sub.ID {
				state = d.State
			}
		}
		if state == "delivered" {
			return
		}
	}
	t.Errorf("the delivery to the streaming subscription is %q, want delivered", state)
}
