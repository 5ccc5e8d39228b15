package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// PasswordToken signs a user in (grant_type=password) and returns a user
// token with a refresh token.
func (c *Client) PasswordToken(ctx context.Context, user, password string) (*Token, error) {
	return c.requestToken(ctx, url.Values{
		"grant_type": {"password"},
		"username":   {user},
		"password":   {password},
	})
}

// ClientCredentialsToken signs an application in (grant_type=
// client_credentials) with its appId and a client secret.
func (c *Client) ClientCredentialsToken(ctx context.Context, appID, secret string) (*Token, error) {
	return c.requestToken(ctx, url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {appID},
		"client_secret": {secret},
	})
}

// RefreshToken trades a refresh token for a new access token. The server
// rotates refresh tokens, so keep the one in the answer.
func (c *Client) RefreshToken(ctx context.Context, refreshToken string) (*Token, error) {
	return c.requestToken(ctx, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
	})
}

func (c *Client) requestToken(ctx context.Context, form url.Values) (*Token, error) {
	// The token endpoint takes a form, not JSON, and must not see a bearer
	// token that c may carry from an earlier sign-in.
	req, err := c.With(WithToken(""), WithUNSID("")).newRequest(ctx, http.MethodPost, "/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer drainClose(resp.Body)
	var t Token
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return nil, fmt.Errorf("client: decode token response: %w", err)
	}
	if t.AccessToken == "" {
		return nil, errors.New("client: token response has no access_token")
	}
	return &t, nil
}

// Me returns the user the token belongs to.
func (c *Client) Me(ctx context.Context) (*User, error) {
	var u User
	if err := c.Do(ctx, http.MethodGet, "/v1.0/me", nil, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// CreateUser creates a user (admin token).
func (c *Client) CreateUser(ctx context.Context, u NewUser) (*User, error) {
	var out User
	if err := c.Do(ctx, http.MethodPost, "/v1.0/users", u, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListUsers returns every user, following the server's paging.
func (c *Client) ListUsers(ctx context.Context) ([]User, error) {
	// The largest page: a tenant of 50,000 users is 50 requests, not 500.
	return list[User](ctx, c, "/v1.0/users?$top=1000")
}

// DeleteUser deletes a user by id or userPrincipalName, with the user's
// tokens, subscriptions and notifications.
func (c *Client) DeleteUser(ctx context.Context, idOrUPN string) error {
	return c.Do(ctx, http.MethodDelete, idPath("/v1.0/users", idOrUPN), nil, nil)
}

// CreateApplication registers an application service. The answer holds its
// first client secret, which the server never shows again.
func (c *Client) CreateApplication(ctx context.Context, a NewApplication) (*Application, error) {
	var out Application
	if err := c.Do(ctx, http.MethodPost, "/v1.0/applications", a, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListApplications returns every application, following the server's paging.
func (c *Client) ListApplications(ctx context.Context) ([]Application, error) {
	return list[Application](ctx, c, "/v1.0/applications?$top=1000")
}

// AddPassword adds a client secret to the application with the given id
// (the object id, not the appId). displayName may be empty.
func (c *Client) AddPassword(ctx context.Context, id, displayName string) (*PasswordCredential, error) {
	in := struct {
		DisplayName string `json:"displayName,omitempty"`
	}{displayName}
	var out PasswordCredential
	if err := c.Do(ctx, http.MethodPost, idPath("/v1.0/applications", id)+"/addPassword", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SendToUser posts a notification to a user as an admin; n.TargetHostName
// must name the application it is sent for. The same AppNotificationID again
// replaces the earlier notification and keeps its id.
func (c *Client) SendToUser(ctx context.Context, upnOrID string, n *Notification) (*Notification, error) {
	var out Notification
	if err := c.Do(ctx, http.MethodPost, idPath("/v1.0/users", upnOrID)+"/notifications", n, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Send posts a notification as an application (application token) to the
// device subscription unsid, the way an application service does.
func (c *Client) Send(ctx context.Context, unsid string, n *Notification) (*Notification, error) {
	var out Notification
	h := http.Header{}
	h.Set("X-UNS-ID", unsid)
	if err := c.do(ctx, http.MethodPost, "/v1.0/me/notifications", h, n, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Cluster returns the cluster's membership and state (admin token).
func (c *Client) Cluster(ctx context.Context) (*ClusterStatus, error) {
	var out ClusterStatus
	if err := c.Do(ctx, http.MethodGet, "/v1.0/admin/cluster", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AddClusterNode adds a node to the cluster as a voter (admin token): its
// id and the addresses the other nodes reach its Raft transport and its HTTP
// API at.
func (c *Client) AddClusterNode(ctx context.Context, n NewClusterNode) error {
	return c.Do(ctx, http.MethodPost, "/v1.0/admin/cluster/nodes", n, nil)
}

// RemoveClusterNode removes a node from the cluster (admin token).
func (c *Client) RemoveClusterNode(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, idPath("/v1.0/admin/cluster/nodes", id), nil, nil)
}

// Backup streams a consistent backup of the server's state to w and returns
// the number of bytes written (admin token). A backup cut short by a broken
// connection returns an error, and what reached w is then incomplete.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	return c.backup(ctx, w, "")
}

// StaleBackup is Backup of what the node holds, without its first making sure
// that it holds everything the cluster has committed: for a node that has
// lost its quorum, whose state is the best left.
func (c *Client) StaleBackup(ctx context.Context, w io.Writer) (int64, error) {
	return c.backup(ctx, w, "eventual")
}

func (c *Client) backup(ctx context.Context, w io.Writer, consistency string) (int64, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1.0/admin/backup", nil)
	if err != nil {
		return 0, err
	}
	if consistency != "" {
		req.Header.Set("ConsistencyLevel", consistency)
	}
	// The backup format is the server's business, not JSON.
	req.Header.Set("Accept", "*/*")
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer drainClose(resp.Body)
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("client: backup: %w", err)
	}
	return n, nil
}
