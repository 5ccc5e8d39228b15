package httpapi_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Every kind of event the SSE stream writes is named in the stream
// operation's description, so that a client written from /openapi.json
// knows it: the shutdown event that a node closing its streams sends (a
// client that took it for a notification would lose its cursor) as well as
// the notifications' own.
func TestOpenAPINamesEveryStreamEvent(t *testing.T) {
	n := start(t, nil)
	alice := n.newUser(t, "alice")
	s := openSSE(t, n, alice.Token)
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- n.Close(ctx)
	}()
	var events []string
	for {
		line, err := s.lines.ReadString('\n')
		if err != nil {
			break
		}
		if name, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "event:"); ok {
			events = append(events, strings.TrimSpace(name))
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 {
		t.Fatal("the stream ended with no event; want the shutdown event")
	}
	sp, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	desc := sp.doc.Paths.Find("/v1.0/me/notifications/stream").Get.Description
	for _, name := range append(events, "created", "updated", "deleted") {
		if !strings.Contains(desc, "`"+name+"`") {
			t.Errorf("the stream writes event %q, which its description does not name:\n%s", name, desc)
		}
	}
}
