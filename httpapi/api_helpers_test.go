package httpapi_test

// Shared helpers of the API tests: every test here talks HTTP to a real node
// (Raft, Badger, loopback HTTP) started by internal/testnode.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// hnode is a running node and its bootstrap admin's access token.
type hnode struct {
	*testnode.Node
	http  *http.Client
	admin string
}

// start runs a node for the test; configure, when set, changes its config
// first (rate limits, quotas).
// atRules waits until the node applies rules level level or later, which
// a lone node raises itself at its first housekeeping tick.
func (n *hnode) atRules(t *testing.T, level int) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("rules level %d", level), func() bool {
		l, _ := n.get(t, n.admin, "/v1.0/admin/cluster").expect(t, http.StatusOK).obj(t)["rulesLevel"].(float64)
		return int(l) >= level
	})
}

// movableClock is a clock a test moves forward.
type movableClock struct{ ahead atomic.Int64 }

func (c *movableClock) now() time.Time          { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *movableClock) forward(d time.Duration) { c.ahead.Add(int64(d)) }

func start(t *testing.T, configure func(*node.Config)) *hnode {
	t.Helper()
	cfg := testnode.Config(t, t.TempDir())
	if configure != nil {
		configure(&cfg)
	}
	n := &hnode{Node: testnode.Start(t, &cfg), http: &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	// Every request of these tests, and its answer, is checked against
	// the OpenAPI description (openapi_check_test.go).
	check, err := newSpecCheck(t.Errorf)
	if err != nil {
		t.Fatalf("load the OpenAPI description: %v", err)
	}
	n.http.Transport = check
	n.admin = n.login(t, "admin", testnode.AdminPassword).Access
	return n
}

// resp is a whole HTTP response.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
	what   string // "METHOD path", for messages
}

func (r *resp) String() string {
	return fmt.Sprintf("%s → %d %s", r.what, r.Status, bytes.TrimSpace(r.Body))
}

// expect fails the test unless the status is want.
func (r *resp) expect(t *testing.T, want int) *resp {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: want status %d", r, want)
	}
	return r
}

// into decodes the JSON body into v.
func (r *resp) into(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("%s: decode body: %v", r, err)
	}
}

// obj is the body as a JSON object.
func (r *resp) obj(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	r.into(t, &m)
	return m
}

// value is the "value" array of a collection body.
func (r *resp) value(t *testing.T) []map[string]any {
	t.Helper()
	var c struct {
		Value []map[string]any `json:"value"`
	}
	r.into(t, &c)
	if c.Value == nil {
		t.Fatalf("%s: no value array", r)
	}
	return c.Value
}

var clientRequestSeq atomic.Int64

// call sends one request. body is nil (none), []byte or string (sent as
// is), or a value sent as JSON; Content-Type defaults to application/json
// when there is a body. hdr holds extra header pairs; an empty value removes
// the header. Every response must carry request-id and echo the
// client-request-id this sends.
func (n *hnode) call(t *testing.T, method, path, token string, body any, hdr ...string) *resp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case []byte:
			rd = bytes.NewReader(b)
		case string:
			rd = strings.NewReader(b)
		default:
			j, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			rd = bytes.NewReader(j)
		}
	}
	target := path
	if !strings.HasPrefix(path, "http") {
		target = n.URL + path
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	crid := "test-" + strconv.FormatInt(clientRequestSeq.Add(1), 10)
	req.Header.Set("client-request-id", crid)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := n.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	r := &resp{Status: res.StatusCode, Header: res.Header, Body: b, what: method + " " + path}
	if res.Header.Get("request-id") == "" {
		t.Errorf("%s: no request-id header", r)
	}
	if got := res.Header.Get("client-request-id"); got != crid {
		t.Errorf("%s: client-request-id echoed as %q, want %q", r, got, crid)
	}
	return r
}

func (n *hnode) get(t *testing.T, token, path string, hdr ...string) *resp {
	t.Helper()
	return n.call(t, http.MethodGet, path, token, nil, hdr...)
}

func (n *hnode) post(t *testing.T, token, path string, body any, hdr ...string) *resp {
	t.Helper()
	return n.call(t, http.MethodPost, path, token, body, hdr...)
}

func (n *hnode) patch(t *testing.T, token, path string, body any, hdr ...string) *resp {
	t.Helper()
	return n.call(t, http.MethodPatch, path, token, body, hdr...)
}

func (n *hnode) del(t *testing.T, token, path string, hdr ...string) *resp {
	t.Helper()
	return n.call(t, http.MethodDelete, path, token, nil, hdr...)
}

// apiError is the contract's error body, decoded strictly.
type apiError struct {
	Code       string  `json:"code"`
	Message    string  `json:"message"`
	Target     *string `json:"target"`
	InnerError struct {
		RequestID string `json:"request-id"`
		Date      string `json:"date"`
	} `json:"innerError"`
}

func (e apiError) target() string {
	if e.Target == nil {
		return ""
	}
	return *e.Target
}

var wireTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// wantError checks the status, the code, the exact body shape of API.md §1
// and the headers its status calls for.
func wantError(t *testing.T, r *resp, status int, code string) apiError {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: want status %d (%s)", r, status, code)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q", r, ct)
	}
	var body struct {
		Error *apiError `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error == nil {
		t.Fatalf("%s: not the contract's error body: %v", r, err)
	}
	e := *body.Error
	if e.Code != code {
		t.Errorf("%s: code %q, want %q", r, e.Code, code)
	}
	if e.Message == "" {
		t.Errorf("%s: empty message", r)
	}
	if e.Target != nil && *e.Target == "" {
		t.Errorf("%s: target present but empty", r)
	}
	if e.InnerError.RequestID == "" || e.InnerError.RequestID != r.Header.Get("request-id") {
		t.Errorf("%s: innerError.request-id %q, header %q", r, e.InnerError.RequestID, r.Header.Get("request-id"))
	}
	if !wireTime.MatchString(e.InnerError.Date) {
		t.Errorf("%s: innerError.date %q is not RFC 3339 UTC with milliseconds", r, e.InnerError.Date)
	}
	switch status {
	case http.StatusUnauthorized:
		if h := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge", r, h)
		}
	case http.StatusMethodNotAllowed:
		if r.Header.Get("Allow") == "" {
			t.Errorf("%s: no Allow header", r)
		}
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("%s: Retry-After %q, want whole seconds ≥ 1", r, r.Header.Get("Retry-After"))
		}
	}
	return e
}

// wantInvalid checks a 400 invalidRequest whose target is target.
func wantInvalid(t *testing.T, r *resp, target string) apiError {
	t.Helper()
	e := wantError(t, r, http.StatusBadRequest, "invalidRequest")
	if e.target() != target {
		t.Errorf("%s: target %q, want %q", r, e.target(), target)
	}
	return e
}

// tokens is a token endpoint answer.
type tokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
	Type    string `json:"token_type"`
	Expires int    `json:"expires_in"`
}

// tokenRequest posts a form to the token endpoint; basic, when given, is
// "id:secret" for HTTP Basic.
func (n *hnode) tokenRequest(t *testing.T, form url.Values, basic ...string) *resp {
	t.Helper()
	hdr := []string{"Content-Type", "application/x-www-form-urlencoded"}
	if len(basic) == 1 {
		id, secret, _ := strings.Cut(basic[0], ":")
		req, _ := http.NewRequest("POST", "/", nil)
		req.SetBasicAuth(id, secret)
		hdr = append(hdr, "Authorization", req.Header.Get("Authorization"))
	}
	return n.call(t, http.MethodPost, "/oauth2/v2.0/token", "", form.Encode(), hdr...)
}

func (n *hnode) login(t *testing.T, upn, password string) tokens {
	t.Helper()
	var tk tokens
	n.tokenRequest(t, url.Values{"grant_type": {"password"}, "username": {upn}, "password": {password}}).
		expect(t, http.StatusOK).into(t, &tk)
	if tk.Access == "" || tk.Refresh == "" {
		t.Fatalf("login %s: tokens missing: %+v", upn, tk)
	}
	return tk
}

// user is a created and signed-in user.
type user struct {
	ID, UPN, Password, Token, Refresh string
}

// newUser creates a user (role user unless roles say otherwise) and signs
// it in.
func (n *hnode) newUser(t *testing.T, upn string, roles ...string) user {
	t.Helper()
	if roles == nil {
		roles = []string{"user"}
	}
	pw := "pw-" + upn + "-secret"
	var u struct {
		ID string `json:"id"`
	}
	n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": upn, "displayName": upn,
		"password": pw, "roles": roles}).expect(t, http.StatusCreated).into(t, &u)
	tk := n.login(t, upn, pw)
	return user{ID: u.ID, UPN: upn, Password: pw, Token: tk.Access, Refresh: tk.Refresh}
}

// app is a registered application with an application token.
type app struct {
	ID, AppID, Host, Secret, KeyID, Token string
}

func (n *hnode) newApp(t *testing.T, host string) app {
	t.Helper()
	var a struct {
		ID                  string `json:"id"`
		AppID               string `json:"appId"`
		PasswordCredentials []struct {
			KeyID      string `json:"keyId"`
			SecretText string `json:"secretText"`
		} `json:"passwordCredentials"`
	}
	n.post(t, n.admin, "/v1.0/applications", map[string]any{"displayName": host, "targetHostName": host}).
		expect(t, http.StatusCreated).into(t, &a)
	if len(a.PasswordCredentials) != 1 || a.PasswordCredentials[0].SecretText == "" {
		t.Fatalf("create app %s: no secret in %+v", host, a)
	}
	out := app{ID: a.ID, AppID: a.AppID, Host: host, Secret: a.PasswordCredentials[0].SecretText,
		KeyID: a.PasswordCredentials[0].KeyID}
	out.Token = n.appToken(t, out.AppID, out.Secret)
	return out
}

func (n *hnode) appToken(t *testing.T, appID, secret string) string {
	t.Helper()
	var tk tokens
	n.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {secret}}).
		expect(t, http.StatusOK).into(t, &tk)
	return tk.Access
}

// subscribe registers a live web subscription of u for host and returns the
// UNSID.
func (n *hnode) subscribe(t *testing.T, u user, host string) string {
	t.Helper()
	var s struct {
		ID string `json:"id"`
	}
	n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", map[string]any{"targetHostName": host,
		"platformType": "web", "deviceName": "laptop", "channel": map[string]any{"type": "live"}}).
		expect(t, http.StatusCreated).into(t, &s)
	return s.ID
}

// send posts a notification as application a through UNSID unsid.
func (n *hnode) send(t *testing.T, a app, unsid string, body any, hdr ...string) *resp {
	t.Helper()
	return n.post(t, a.Token, "/v1.0/me/notifications", body, append([]string{"X-UNS-ID", unsid}, hdr...)...)
}

// sendOK sends and returns the new notification's id.
func (n *hnode) sendOK(t *testing.T, a app, unsid string, body any) string {
	t.Helper()
	m := n.send(t, a, unsid, body).expect(t, http.StatusCreated).obj(t)
	id, _ := m["id"].(string)
	if id == "" {
		t.Fatalf("send: no id in %v", m)
	}
	return id
}

// visual is a notification body with a title and optional extra properties
// as key, value pairs.
func visual(title string, kv ...any) map[string]any {
	m := map[string]any{"payload": map[string]any{"visualContent": map[string]any{"title": title, "body": "body of " + title}}}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// snapshot is the canonical JSON of a GET's body, to show that a rejected
// request changed nothing.
func (n *hnode) snapshot(t *testing.T, token, path string, hdr ...string) string {
	t.Helper()
	r := n.get(t, token, path, hdr...).expect(t, http.StatusOK)
	var v any
	r.into(t, &v)
	b, _ := json.Marshal(v)
	return string(b)
}

func sameSnapshot(t *testing.T, what, before, after string) {
	t.Helper()
	if before != after {
		t.Errorf("%s changed after rejected requests:\nbefore %s\nafter  %s", what, before, after)
	}
}

// ids are the "id" properties of a collection's items, in order.
func ids(items []map[string]any) []string {
	out := make([]string, 0, len(items))
	for _, m := range items {
		id, _ := m["id"].(string)
		out = append(out, id)
	}
	return out
}

// collect follows @odata.nextLink from path to the end and returns every
// item and the number of pages; it fails on a loop.
func (n *hnode) collect(t *testing.T, token, path string, hdr ...string) (items []map[string]any, pages int, last map[string]any) {
	t.Helper()
	next := path
	for next != "" {
		pages++
		if pages > 100 {
			t.Fatalf("paging from %s did not end", path)
		}
		r := n.get(t, token, next, hdr...).expect(t, http.StatusOK)
		last = r.obj(t)
		items = append(items, r.value(t)...)
		next, _ = last["@odata.nextLink"].(string)
	}
	return items, pages, last
}

// eventually polls cond every 50 ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}
