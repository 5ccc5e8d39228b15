package client_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"sync"
	"testing"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testnode"
)

// The examples run against a real Herald node started in this process
// (TestMain), reached at heraldURL; in your code it is your server's URL,
// e.g. "https://herald.example.com". The admin password and the
// application below stand for what your operator gives you.
var (
	heraldURL     string
	adminPassword = testnode.AdminPassword
	// appID and appSecret are the client credentials of "Contoso Tasks"
	// (tasks.contoso.com), registered by TestMain as an admin would.
	appID, appSecret string
)

func ExampleClient_PasswordToken() {
	ctx := context.Background()
	c, err := client.New(heraldURL)
	if err != nil {
		log.Fatal(err)
	}
	tok, err := c.PasswordToken(ctx, "admin", adminPassword)
	if err != nil {
		log.Fatal(err)
	}
	me, err := c.With(client.WithToken(tok.AccessToken)).Me(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.TokenType, me.UserPrincipalName, me.Roles)
	// Output: Bearer admin [admin]
}

// An application service signs in with its client credentials and sends to
// the subscription (UNSID) that the user's device registered and handed to
// it.
func ExampleClient_Send() {
	ctx := context.Background()
	unsid := subscribedDevice("bob")

	c, err := client.New(heraldURL)
	if err != nil {
		log.Fatal(err)
	}
	tok, err := c.ClientCredentialsToken(ctx, appID, appSecret)
	if err != nil {
		log.Fatal(err)
	}
	app := c.With(client.WithToken(tok.AccessToken))
	n, err := app.Send(ctx, unsid, &client.Notification{
		AppNotificationID: "task-42",
		Payload:           &client.Payload{VisualContent: &client.VisualContent{Title: "Task due", Body: "Review the budget"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n.TargetHostName, n.AppNotificationID, n.ReadState)
	// Output: tasks.contoso.com task-42 unread
}

// The user's feed, newest first, and marking one read on every device.
func ExampleClient_Notifications() {
	ctx := context.Background()
	alice := signIn("carol")
	send("carol", "task-1", "Write the report")
	send("carol", "task-2", "Review the budget")

	feed, err := alice.Notifications(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range feed {
		fmt.Println(n.AppNotificationID, n.Payload.VisualContent.Title, n.ReadState)
	}
	read, err := alice.MarkRead(ctx, feed[0].ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(read.AppNotificationID, read.ReadState)
	// Output:
	// task-2 Review the budget unread
	// task-1 Write the report unread
	// task-2 read
}

// Delta sync: the first call returns everything, later calls with the
// deltaLink only what changed since.
func ExampleClient_Delta() {
	ctx := context.Background()
	dave := signIn("dave")
	send("dave", "task-1", "Write the report")

	all, deltaLink, err := dave.Delta(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("first sync:", len(all), all[0].AppNotificationID)

	if _, err := dave.MarkRead(ctx, all[0].ID); err != nil {
		log.Fatal(err)
	}
	send("dave", "task-2", "Review the budget")
	changed, _, err := dave.Delta(ctx, deltaLink)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range changed {
		fmt.Println("changed:", n.AppNotificationID, n.ReadState)
	}
	// Output:
	// first sync: 1 task-1
	// changed: task-1 read
	// changed: task-2 unread
}

// The live stream: events as they happen, resumable with the last event's
// ID after a lost connection.
func ExampleClient_Stream() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	erin := signIn("erin")

	stream, err := erin.Stream(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	n := send("erin", "task-1", "Write the report")
	ev, err := stream.Next()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ev.Type, ev.Notification.AppNotificationID)
	stream.Close()

	// Offline for a while: the notification is read on another device.
	if _, err := erin.MarkRead(ctx, n.ID); err != nil {
		log.Fatal(err)
	}
	// Back online, resuming after the last event seen.
	stream, err = erin.Stream(ctx, ev.ID)
	if err != nil {
		log.Fatal(err)
	}
	defer stream.Close()
	ev, err = stream.Next()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ev.Type, ev.Notification.AppNotificationID, ev.Notification.ReadState)
	// Output:
	// created task-1
	// updated task-1 read
}

// Errors from the server are *client.Error, with the HTTP status and the
// API's error code.
func ExampleError() {
	ctx := context.Background()
	c, err := client.New(heraldURL)
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.PasswordToken(ctx, "admin", "not-the-password")
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.Status, apiErr.Code)
	}
	// Output: 400 invalid_grant
}

// TestMain starts the node the examples talk to and registers the
// application, as an operator would.
func TestMain(m *testing.M) {
	flag.Parse() // testnode asks testing.Verbose
	tb := &mainTB{}
	n := testnode.Start(tb, nil)
	heraldURL = n.URL
	app, err := admin().CreateApplication(context.Background(),
		client.NewApplication{DisplayName: "Contoso Tasks", TargetHostName: "tasks.contoso.com"})
	if err != nil {
		log.Fatal(err)
	}
	appID, appSecret = app.AppID, app.PasswordCredentials[0].SecretText
	code := m.Run()
	tb.cleanup()
	os.Exit(code)
}

// mainTB lets TestMain use testnode, which wants a testing.TB: the node
// lives for the whole test binary. The embedded interface stays nil; only
// the methods testnode calls are defined.
type mainTB struct {
	testing.TB
	cleanups []func()
	dirs     []string
}

func (*mainTB) Helper()                           {}
func (*mainTB) Fatal(args ...any)                 { log.Fatal(args...) }
func (*mainTB) Fatalf(format string, args ...any) { log.Fatalf(format, args...) }
func (*mainTB) Logf(format string, args ...any)   { log.Printf(format, args...) }
func (t *mainTB) Cleanup(f func())                { t.cleanups = append(t.cleanups, f) }
func (t *mainTB) TempDir() string {
	d, err := os.MkdirTemp("", "herald-example-")
	if err != nil {
		log.Fatal(err)
	}
	t.dirs = append(t.dirs, d)
	return d
}

func (t *mainTB) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	for _, d := range t.dirs {
		os.RemoveAll(d)
	}
}

func admin() *client.Client {
	c, err := client.New(heraldURL)
	if err != nil {
		log.Fatal(err)
	}
	return c.With(client.WithToken(adminToken()))
}

// adminToken signs the admin in once for all the examples: each sign-in
// counts against the throttle of the admin's name from this address
// (loginPairBurst, 10), and ExampleError's wrong password must meet the
// password check, not the throttle.
var adminToken = sync.OnceValue(func() string {
	c, err := client.New(heraldURL)
	if err != nil {
		log.Fatal(err)
	}
	tok, err := c.PasswordToken(context.Background(), "admin", adminPassword)
	if err != nil {
		log.Fatal(err)
	}
	return tok.AccessToken
})

// signIn creates the user upn and returns a client signed in as them.
func signIn(upn string) *client.Client {
	ctx := context.Background()
	if _, err := admin().CreateUser(ctx, client.NewUser{UserPrincipalName: upn, Password: upn + "-password", Roles: []string{"user"}}); err != nil {
		log.Fatal(err)
	}
	c, err := client.New(heraldURL)
	if err != nil {
		log.Fatal(err)
	}
	tok, err := c.PasswordToken(ctx, upn, upn+"-password")
	if err != nil {
		log.Fatal(err)
	}
	return c.With(client.WithToken(tok.AccessToken))
}

// subscribedDevice signs upn in, registers a live device for Contoso Tasks
// and returns its UNSID, as a client app hands it to its service.
func subscribedDevice(upn string) string {
	s, err := signIn(upn).Subscribe(context.Background(), client.NewSubscription{
		TargetHostName: "tasks.contoso.com", PlatformType: "web", DeviceName: upn + "'s laptop",
		Channel: map[string]any{"type": "live"}})
	if err != nil {
		log.Fatal(err)
	}
	return s.ID
}

// send posts a notification for Contoso Tasks to upn, as an admin.
func send(upn, appNotificationID, title string) *client.Notification {
	n, err := admin().SendToUser(context.Background(), upn, &client.Notification{
		TargetHostName: "tasks.contoso.com", AppNotificationID: appNotificationID,
		Payload: &client.Payload{VisualContent: &client.VisualContent{Title: title}}})
	if err != nil {
		log.Fatal(err)
	}
	return n
}
