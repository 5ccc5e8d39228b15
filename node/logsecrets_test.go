package node_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// Passwords, access and refresh tokens, client secrets and webhook signing
// secrets never reach the log, at its most talkative level, whatever the
// requests do with them: sign-ins right and wrong, refresh, a refresh token
// used twice, client credentials, a webhook subscription, a session ended.
func TestSecretsNeverReachTheLog(t *testing.T) {
	ctx := context.Background()
	var logs syncbuf.Buffer
	cfg := testnode.Config(t, t.TempDir())
	cfg.Webhook.AllowPrivate = true
	n, err := node.Start(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + n.Addr()
	anon, err := client.New(url)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{testnode.AdminPassword: "the admin's password"}
	admTok, err := anon.PasswordToken(ctx, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	secrets[admTok.AccessToken], secrets[admTok.RefreshToken] = "the admin's access token", "the admin's refresh token"
	admin := anon.With(client.WithToken(admTok.AccessToken))

	const userPW, wrongPW = "logsecret-user-password", "logsecret-wrong-password"
	secrets[userPW], secrets[wrongPW] = "a user's password", "a wrong password"
	if _, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "lena", Password: userPW}); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.PasswordToken(ctx, "lena", wrongPW); err == nil {
		t.Fatal("a wrong password signed in")
	}
	if _, err := anon.PasswordToken(ctx, "nobody-here", wrongPW); err == nil {
		t.Fatal("an unknown user signed in")
	}
	ut, err := anon.PasswordToken(ctx, "lena", userPW)
	if err != nil {
		t.Fatal(err)
	}
	secrets[ut.AccessToken], secrets[ut.RefreshToken] = "a user's access token", "a user's refresh token"
	rt, err := anon.RefreshToken(ctx, ut.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	secrets[rt.AccessToken], secrets[rt.RefreshToken] = "a refreshed access token", "a rotated refresh token"
	// Using a token of the rotation ends the used one's grace.
	rt2, err := anon.RefreshToken(ctx, rt.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	secrets[rt2.AccessToken], secrets[rt2.RefreshToken] = "a refreshed access token", "a rotated refresh token"
	if _, err := anon.RefreshToken(ctx, ut.RefreshToken); err == nil {
		t.Fatal("a used refresh token worked again after a token of its rotation was used")
	}

	app, err := admin.CreateApplication(ctx, client.NewApplication{DisplayName: "Logs", TargetHostName: "logs.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	appSecret := app.PasswordCredentials[0].SecretText
	secrets[appSecret] = "a client secret"
	at, err := anon.ClientCredentialsToken(ctx, app.AppID, appSecret)
	if err != nil {
		t.Fatal(err)
	}
	secrets[at.AccessToken] = "an application's access token"
	if _, err := anon.ClientCredentialsToken(ctx, app.AppID, appSecret+"x"); err == nil {
		t.Fatal("a wrong client secret worked")
	}

	user := anon.With(client.WithToken(rt.AccessToken))
	var sub struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if err := user.Do(ctx, http.MethodPost, "/v1.0/me/notificationSubscriptions", map[string]any{
		"targetHostName": "logs.example.test", "platformType": "windows", "deviceName": "d",
		"channel": map[string]any{"type": "webhook", "url": "http://127.0.0.1:9/hook"}}, &sub); err != nil {
		t.Fatal(err)
	}
	if sub.Secret == "" {
		t.Fatal("no webhook secret in the subscription's answer")
	}
	secrets[sub.Secret] = "a webhook signing secret"
	if _, err := anon.With(client.WithToken(at.AccessToken)).Send(ctx, sub.ID, &client.Notification{
		Payload: &client.Payload{RawContent: "to a webhook that refuses"}}); err != nil {
		t.Fatal(err)
	}
	var sessions struct {
		Value []struct {
			ID      string `json:"id"`
			Current bool   `json:"current"`
		} `json:"value"`
	}
	if err := user.Do(ctx, http.MethodGet, "/v1.0/me/sessions", nil, &sessions); err != nil || len(sessions.Value) == 0 {
		t.Fatalf("sessions: %v %v", sessions, err)
	}
	if err := user.Do(ctx, http.MethodDelete, "/v1.0/me/sessions/"+sessions.Value[0].ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	// A bearer token that was never issued, and one revoked above.
	for _, tok := range []string{"never-issued-token-logsecret", rt.AccessToken} {
		if _, err := anon.With(client.WithToken(tok)).Me(ctx); err == nil {
			t.Fatalf("token %q was accepted", tok)
		}
	}
	secrets["never-issued-token-logsecret"] = "a made-up bearer token"

	// The webhook attempt (refused at 127.0.0.1:9) is logged at some level
	// once it is tried; give the engine a moment's worth of polling.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(logs.String(), "webhook") {
		time.Sleep(50 * time.Millisecond)
	}
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n.Close(closeCtx)

	out := logs.String()
	if len(out) < 1000 {
		t.Fatalf("the debug log holds only %d bytes; the test would prove nothing", len(out))
	}
	for s, what := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the log holds %s", what)
		}
	}
}
