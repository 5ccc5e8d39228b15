// Package client is Herald's Go SDK: a client of the Herald HTTP API
// (docs/api.md, and the server's /openapi.json) for application services
// that send notifications and for Go programs that read a user's feed.
//
// Sign in with PasswordToken (a user or admin) or ClientCredentialsToken
// (an application), then use a copy of the client that carries the token:
//
//	c, _ := client.New("https://herald.example.com")
//	tok, err := c.ClientCredentialsToken(ctx, appID, secret)
//	app := c.With(client.WithToken(tok.AccessToken))
//	_, err = app.Send(ctx, unsid, &client.Notification{...})
//
// An application sends to a device subscription (Send, with the UNSID the
// device handed it); an admin may send to a user by name (SendToUser). A
// user's client reads the feed (Notifications), marks read or dismissed
// (MarkRead, Dismiss), syncs (Delta) and follows the live stream (Stream,
// resumable with the last event's ID). Requests the package has no method
// for go through Do; an application's calls about what it sent carry the
// user's UNSID with WithUNSID. Errors from the server are *Error, with the HTTP
// status and the API's error code.
//
// The herald command line, the end-to-end tests and the load generator use
// this package too, so it depends on nothing but the standard library and
// defines its own copies of the resource shapes.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client talks to one Herald server. A Client is safe for concurrent use and
// never changes after New; use With to get a copy with another token.
type Client struct {
	base  *url.URL
	http  *http.Client
	token string
	unsid string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient replaces the HTTP client, for custom transports, TLS
// settings or timeouts. The default has no timeout, because backups and
// streams may run for a long time; callers bound requests with the context.
func WithHTTPClient(h *http.Client) Option {
	return func(c *Client) { c.http = h }
}

// WithToken sets the bearer token sent with every request.
func WithToken(token string) Option {
	return func(c *Client) { c.token = token }
}

// WithUNSID sets the X-UNS-ID header sent with every request. An
// application's calls about what it sent to a user (list, get and delete
// its notifications, by id, groupName or appNotificationId) name the user
// by a subscription of theirs, as a send does; they go through Do.
func WithUNSID(unsid string) Option {
	return func(c *Client) { c.unsid = unsid }
}

// New returns a client of the server at baseURL, e.g. "http://127.0.0.1:8750".
// A path in baseURL (a server behind a reverse proxy under /herald/) is kept
// as a prefix of every request path.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("client: server URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: server URL %q: want http://host[:port] or https://host[:port]", baseURL)
	}
	u.RawQuery, u.Fragment = "", ""
	c := &Client{base: u, http: &http.Client{}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// With returns a copy of c with opts applied; the copy shares the HTTP client
// (and so its connection pool) with c.
func (c *Client) With(opts ...Option) *Client {
	cp := *c
	for _, o := range opts {
		o(&cp)
	}
	return &cp
}

// Do sends a request with in encoded as the JSON body (no body when in is
// nil) and decodes a JSON response into out (ignored when out is nil). path
// is relative to the server URL and may carry a query, e.g.
// "/v1.0/users?$top=10"; an absolute URL such as an @odata.nextLink is
// accepted too. A non-2xx answer is returned as *Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, nil, in, out)
}

// do is Do with extra request headers (X-UNS-ID).
func (c *Client) do(ctx context.Context, method, path string, header http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer drainClose(resp.Body)
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("client: decode %s %s response: %w", method, req.URL.Path, err)
	}
	return nil
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	u, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.unsid != "" {
		req.Header.Set("X-UNS-ID", c.unsid)
	}
	return req, nil
}

// resolve turns path into a URL on c's server. An absolute URL keeps its path
// and query but gets c's scheme and host: a nextLink names the server's public
// URL, which may differ from the address this client reaches it by, and the
// bearer token must never be sent to another origin.
func (c *Client) resolve(path string) (string, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return "", fmt.Errorf("client: path %q: %w", path, err)
	}
	if ref.IsAbs() || ref.Host != "" {
		ref.Scheme, ref.Host, ref.User = c.base.Scheme, c.base.Host, nil
		return ref.String(), nil
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return c.base.String() + path, nil
}

// send performs req and turns a non-2xx answer into *Error; on success the
// caller owns resp.Body.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer drainClose(resp.Body)
		return nil, decodeError(resp)
	}
	return resp, nil
}

// drainClose reads a little of what is left so that the connection can be
// reused, then closes the body.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

// list fetches every page of a collection, following @odata.nextLink.
func list[T any](ctx context.Context, c *Client, path string) ([]T, error) {
	var all []T
	for path != "" {
		var page struct {
			Value    []T    `json:"value"`
			NextLink string `json:"@odata.nextLink"`
		}
		if err := c.Do(ctx, http.MethodGet, path, nil, &page); err != nil {
			return all, err
		}
		all = append(all, page.Value...)
		if page.NextLink == path {
			return all, errors.New("client: server returned a nextLink to the same page")
		}
		path = page.NextLink
	}
	return all, nil
}

// idPath escapes an id or userPrincipalName as one path segment.
func idPath(prefix, id string) string {
	return prefix + "/" + url.PathEscape(id)
}
