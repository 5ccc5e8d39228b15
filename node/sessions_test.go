package node_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/testnode"
)

// A session revoked through one node of three is refused at once by the two
// others, and so are a user's tokens after a password reset: the revocation answers only once every node has applied it.
// Without that wait a follower accepts the revoked token for the
// milliseconds until it applies the revocation (its read barrier runs only
// before a "not found", and the token is still found).
func TestRevokedSessionFailsAtOnceOnEveryNode(t *testing.T) {
	nodes := startThree(t, nil)
	admin := adminTokenOf(t, nodes[0])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := clientFor(t, nodes[0], admin).CreateUser(ctx, client.NewUser{UserPrincipalName: "frank", Password: "frank-password"}); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		// Signed in through one node, revoked through another, tried on
		// every node, the last one included.
		signIn, revoke := nodes[round%3], nodes[(round+1)%3]
		tok, err := clientFor(t, signIn, "").PasswordToken(ctx, "frank", "frank-password")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if _, err := plainClient(t, n, tok.AccessToken).Me(ctx); err != nil {
				t.Fatalf("round %d: the new token on %s: %v", round, n.Config.NodeID, err)
			}
		}
		var list struct {
			Value []struct {
				ID      string `json:"id"`
				Current bool   `json:"current"`
			} `json:"value"`
		}
		owner := plainClient(t, revoke, tok.AccessToken)
		if err := owner.Do(ctx, http.MethodGet, "/v1.0/me/sessions", nil, &list); err != nil {
			t.Fatal(err)
		}
		sid := ""
		for _, s := range list.Value {
			if s.Current {
				sid = s.ID
			}
		}
		if sid == "" {
			t.Fatalf("round %d: no current session in %+v", round, list)
		}
		began := time.Now()
		if err := owner.Do(ctx, http.MethodDelete, "/v1.0/me/sessions/"+sid, nil, nil); err != nil {
			t.Fatalf("round %d: revoke: %v", round, err)
		}
		t.Logf("round %d: the revocation through %s answered in %v", round, revoke.Config.NodeID, time.Since(began).Round(time.Millisecond))
		for _, n := range nodes {
			_, err := plainClient(t, n, tok.AccessToken).Me(ctx)
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != http.StatusUnauthorized {
				t.Errorf("round %d: the revoked access token on %s: %v, want 401", round, n.Config.NodeID, err)
			}
			_, err = plainClient(t, n, "").RefreshToken(ctx, tok.RefreshToken)
			if !errors.As(err, &ce) || ce.Code != "invalid_grant" {
				t.Errorf("round %d: the revoked refresh token on %s: %v, want invalid_grant", round, n.Config.NodeID, err)
			}
		}
	}
	// Using a token on a node that has not seen its session notes the use
	// there: the session then shows that request's client.
	tok, err := clientFor(t, nodes[0], "").PasswordToken(ctx, "frank", "frank-password")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, nodes[2].URL+"/v1.0/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("User-Agent", "touch-test/1")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("use the token on n3: %v %v", res, err)
	}
	res.Body.Close()
	pollUntil(t, "the session's use on n3 noted", func() error {
		var list struct {
			Value []struct {
				UserAgent string `json:"userAgent"`
				Current   bool   `json:"current"`
			} `json:"value"`
		}
		if err := plainClient(t, nodes[0], tok.AccessToken).Do(ctx, http.MethodGet, "/v1.0/me/sessions", nil, &list); err != nil {
			return err
		}
		for _, s := range list.Value {
			if s.Current && s.UserAgent == "touch-test/1" {
				return nil
			}
		}
		return fmt.Errorf("sessions %+v", list.Value)
	})

	// A password reset through one node ends the sessions on all at once.
	tok, err = clientFor(t, nodes[1], "").PasswordToken(ctx, "frank", "frank-password")
	if err != nil {
		t.Fatal(err)
	}
	if err := plainClient(t, nodes[0], admin).Do(ctx, http.MethodPatch, "/v1.0/users/frank", map[string]any{"password": "frank-new-password"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		_, err := plainClient(t, n, tok.AccessToken).Me(ctx)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusUnauthorized {
			t.Errorf("a token after the password reset on %s: %v, want 401", n.Config.NodeID, err)
		}
	}
	// With one node stopped, a revocation does not wait for it: it answers,
	// and the token fails on the two that run.
	closeCtx, closeCancel := context.WithTimeout(ctx, 10*time.Second)
	nodes[2].Close(closeCtx)
	closeCancel()
	tok, err = clientFor(t, nodes[0], "").PasswordToken(ctx, "frank", "frank-new-password")
	if err != nil {
		t.Fatal(err)
	}
	var mine struct {
		Value []struct {
			ID      string `json:"id"`
			Current bool   `json:"current"`
		} `json:"value"`
	}
	owner := clientFor(t, nodes[1], tok.AccessToken)
	if err := owner.Do(ctx, http.MethodGet, "/v1.0/me/sessions", nil, &mine); err != nil {
		t.Fatal(err)
	}
	for _, s := range mine.Value {
		if s.Current {
			began := time.Now()
			if err := owner.Do(ctx, http.MethodDelete, "/v1.0/me/sessions/"+s.ID, nil, nil); err != nil {
				t.Fatalf("revoke with n3 stopped: %v", err)
			}
			t.Logf("with n3 stopped, the revocation answered in %v", time.Since(began).Round(time.Millisecond))
		}
	}
	for _, n := range nodes[:2] {
		_, err := plainClient(t, n, tok.AccessToken).Me(ctx)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusUnauthorized {
			t.Errorf("the revoked token with n3 stopped, on %s: %v, want 401", n.Config.NodeID, err)
		}
	}

	// Each revocation is in the audit log.
	var log struct {
		Value []struct {
			Actor struct{ Name string } `json:"actor"`
		} `json:"value"`
	}
	if err := clientFor(t, nodes[1], admin).Do(ctx, http.MethodGet, "/v1.0/admin/auditLog?action=session.revoke", nil, &log); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(log.Value); len(log.Value) != 4 {
		t.Errorf("revocations in the audit log: %s", got)
	}
}

// A client whose refresh answer was lost (a mobile network, a tab closed
// mid-request) sends the refresh token it still has again: from rules
// level 2 that works for a minute, and both answers' tokens work, where
// the retry used to find the token used up and the sign-in over.
func TestARefreshWhoseAnswerWasLostCanBeRetried(t *testing.T) {
	ctx := context.Background()
	n := testnode.Start(t, nil)
	pollUntil(t, "rules level 2", func() error {
		if l, err := n.Store().Rules(); err != nil || l < 2 {
			return fmt.Errorf("level %d, %v", l, err)
		}
		return nil
	})
	c := clientFor(t, n, "")
	tok, err := c.PasswordToken(ctx, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	lost, err := c.RefreshToken(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	retried, err := c.RefreshToken(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("the same refresh token again, a moment later: %v, want new tokens", err)
	}
	for _, got := range []*client.Token{lost, retried} {
		if _, err := plainClient(t, n, got.AccessToken).Me(ctx); err != nil {
			t.Errorf("an access token of the two refreshes: %v", err)
		}
		if _, err := c.RefreshToken(ctx, got.RefreshToken); err != nil {
			t.Errorf("a refresh token of the two refreshes: %v", err)
		}
	}
}
