package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/herald-notify/herald/node"
)

// streamUntilEnd opens token's live stream on n and reads it; wait returns
// once the server ends it, and fails the test with why if it has not
// within 20 s.
func streamUntilEnd(t *testing.T, n *hnode, token string) (wait func(why string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v1.0/me/notifications/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("open stream: %v %v", res, err)
	}
	t.Cleanup(func() { res.Body.Close() })
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, res.Body)
		ended <- err
	}()
	return func(why string) {
		t.Helper()
		select {
		case err := <-ended:
			if err != nil {
				t.Fatalf("stream ended with %v, want a clean end", err)
			}
		case <-ctx.Done():
			t.Fatal(why)
		}
	}
}

// A stream authenticates once, when it opens; revoking its token (here by a
// password reset) must still end it, within a heartbeat.
func TestRevokedTokenEndsOpenStream(t *testing.T) {
	n := start(t, func(c *node.Config) { c.StreamHeartbeat = 100 * time.Millisecond })
	u := n.newUser(t, "rita")
	wait := streamUntilEnd(t, n, u.Token)
	n.patch(t, n.admin, "/v1.0/users/"+u.ID, map[string]any{"password": "a-brand-new-password"}).expect(t, http.StatusOK)
	wait("the stream outlived its revoked token")
	// Reconnecting with the old token is refused.
	wantError(t, n.get(t, u.Token, "/v1.0/me/notifications/stream"), http.StatusUnauthorized, "unauthenticated")
}

// Revoking a session ends its open streams at once, not at their next
// heartbeat: the FSM tells every node whose tokens it deleted.
func TestRevokingASessionEndsItsStreamsAtOnce(t *testing.T) {
	n := start(t, func(c *node.Config) { c.StreamHeartbeat = time.Hour })
	u := n.newUser(t, "sam")
	wait := streamUntilEnd(t, n, u.Token)
	var sid string
	for _, s := range n.get(t, u.Token, "/v1.0/me/sessions").expect(t, http.StatusOK).value(t) {
		if s["current"] == true {
			sid = str(s, "id")
		}
	}
	if sid == "" {
		t.Fatal("no current session listed")
	}
	n.del(t, u.Token, "/v1.0/me/sessions/"+sid).expect(t, http.StatusNoContent)
	wait("the stream of the revoked session was still open 20 s later, with an hour's heartbeat")
}
