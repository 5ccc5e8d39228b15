package httpapi_test

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/credential"
	"github.com/herald-notify/herald/node"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

func TestErrorBodiesHaveTheContractShapeAndRequestIDs(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	// wantError checks the shape; call checks request-id and the echo of
	// client-request-id on every response, errors and successes alike.
	e := wantError(t, n.get(t, n.admin, "/v1.0/no/such/thing"), http.StatusNotFound, "itemNotFound")
	if e.Target != nil {
		t.Errorf("a 404 without a field has target %q", *e.Target)
	}
	r1 := n.get(t, n.admin, "/v1.0/me").expect(t, http.StatusOK)
	r2 := n.get(t, n.admin, "/v1.0/me").expect(t, http.StatusOK)
	if r1.Header.Get("request-id") == r2.Header.Get("request-id") {
		t.Errorf("two requests share the request-id %q", r1.Header.Get("request-id"))
	}
	// No client-request-id, none echoed.
	req, _ := http.NewRequest("GET", n.URL+"/healthz", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("request-id") == "" || res.Header.Get("client-request-id") != "" {
		t.Errorf("healthz headers %v", res.Header)
	}
	for _, path := range []string{"/v1.0/users/nobody", "/v1.0/applications/nothing", "/v1.0/me/notifications/none",
		"/v1.0/me/notificationSubscriptions/none", "/beta/users/nobody", "/v1.0"} {
		wantError(t, n.get(t, n.admin, path), http.StatusNotFound, "itemNotFound")
	}
}

func TestWrongMethodIs405WithAllow(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	users := n.snapshot(t, n.admin, "/v1.0/users")
	for _, c := range []struct {
		method, path string
		allow        []string
	}{
		{"PUT", "/v1.0/users", []string{"GET", "POST"}},
		{"DELETE", "/v1.0/users", []string{"GET", "POST"}},
		{"POST", "/v1.0/me", []string{"GET"}},
		{"PUT", "/v1.0/users/admin", []string{"GET", "PATCH", "DELETE"}},
		{"PUT", "/v1.0/me/notifications/abc", []string{"GET", "PATCH", "DELETE"}},
		{"PATCH", "/v1.0/me/notifications", []string{"GET", "POST", "DELETE"}},
		{"POST", "/v1.0/me/notifications/delta", []string{"GET"}},
		{"GET", "/v1.0/applications/x/addPassword", []string{"POST"}},
		{"GET", "/oauth2/v2.0/token", []string{"POST"}},
		{"POST", "/healthz", []string{"GET"}},
		{"DELETE", "/beta/me", []string{"GET"}},
		// Outside /v1.0 as well (found by review: 404, and under /ui/ a page).
		{"POST", "/openapi.json", []string{"GET"}},
		{"DELETE", "/sdk/herald.js", []string{"GET"}},
		{"PUT", "/ui/session", []string{"GET", "POST", "DELETE"}},
		{"GET", "/ui/session/refresh", []string{"POST"}},
		{"POST", "/ui/", []string{"GET"}},
		{"DELETE", "/ui/index.html", []string{"GET"}},
		{"TRACE", "/ui/", []string{"GET"}},
		// "/" only redirects a read to the web UI.
		{"POST", "/", []string{"GET", "HEAD"}},
		{"DELETE", "/", []string{"GET", "HEAD"}},
	} {
		r := n.call(t, c.method, c.path, n.admin, nil)
		wantError(t, r, http.StatusMethodNotAllowed, "methodNotAllowed")
		allow := strings.Split(strings.ReplaceAll(r.Header.Get("Allow"), " ", ""), ",")
		for _, m := range c.allow {
			if !slices.Contains(allow, m) {
				t.Errorf("%s %s: Allow %q lacks %s", c.method, c.path, r.Header.Get("Allow"), m)
			}
		}
		if slices.Contains(allow, c.method) {
			t.Errorf("%s %s: Allow %q names the refused method", c.method, c.path, r.Header.Get("Allow"))
		}
	}
	sameSnapshot(t, "users", users, n.snapshot(t, n.admin, "/v1.0/users"))
}

func compress(t *testing.T, enc string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "zlib":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		w, _ = flate.NewWriter(&buf, flate.DefaultCompression)
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestContentTypeAndContentEncodingRules(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	body := func(upn string) []byte {
		return mustJSON(map[string]any{"userPrincipalName": upn, "password": "password-" + upn})
	}
	before := n.snapshot(t, n.admin, "/v1.0/users")
	for _, c := range []struct {
		name string
		hdr  []string
	}{
		{"text/plain", []string{"Content-Type", "text/plain"}},
		{"form", []string{"Content-Type", "application/x-www-form-urlencoded"}},
		{"no Content-Type", []string{"Content-Type", ""}},
		{"brotli", []string{"Content-Encoding", "br"}},
		{"compress", []string{"Content-Encoding", "compress"}},
		// JSON is UTF-8; another charset would be read as UTF-8 anyway.
		{"UTF-16", []string{"Content-Type", "application/json; charset=utf-16"}},
		{"Latin-1", []string{"Content-Type", "application/json; charset=ISO-8859-1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantError(t, n.post(t, n.admin, "/v1.0/users", body("rejected"), c.hdr...), http.StatusUnsupportedMediaType, "unsupportedMediaType")
		})
	}
	wantError(t, n.post(t, n.admin, "/v1.0/users", []byte("not gzip at all"), "Content-Encoding", "gzip"), http.StatusBadRequest, "invalidRequest")
	wantError(t, n.post(t, n.admin, "/v1.0/users", []byte("not deflate at all"), "Content-Encoding", "deflate"), http.StatusBadRequest, "invalidRequest")
	sameSnapshot(t, "users", before, n.snapshot(t, n.admin, "/v1.0/users"))

	n.post(t, n.admin, "/v1.0/users", body("charset"), "Content-Type", "application/json; charset=utf-8").expect(t, http.StatusCreated)
	n.post(t, n.admin, "/v1.0/users", body("charset2"), "Content-Type", "application/json; charset=UTF-8").expect(t, http.StatusCreated)
	n.post(t, n.admin, "/v1.0/users", compress(t, "gzip", body("gzipped")), "Content-Encoding", "gzip").expect(t, http.StatusCreated)
	// HTTP's deflate is the zlib format (RFC 9110 §8.4.1.2); some clients
	// send raw DEFLATE under the same name.
	n.post(t, n.admin, "/v1.0/users", compress(t, "zlib", body("zlibbed")), "Content-Encoding", "deflate").expect(t, http.StatusCreated)
	n.post(t, n.admin, "/v1.0/users", compress(t, "raw-deflate", body("deflated")), "Content-Encoding", "deflate").expect(t, http.StatusCreated)
	for _, upn := range []string{"charset", "gzipped", "zlibbed", "deflated"} {
		n.get(t, n.admin, "/v1.0/users/"+upn).expect(t, http.StatusOK)
	}
	n.login(t, "gzipped", "password-gzipped")
}

func TestBodiesOver64KiBAre413(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	before := e.snapshot(t, e.alice.Token, feedAny)
	users := e.snapshot(t, e.admin, "/v1.0/users")
	pad := strings.Repeat(" ", 64<<10)
	big := []byte(`{"payload":{"rawContent":"x"}}` + pad)
	wantError(t, e.send(t, e.tasks, e.aliceTasks, big), http.StatusRequestEntityTooLarge, "payloadTooLarge")
	// Measured after decompression.
	wantError(t, e.send(t, e.tasks, e.aliceTasks, compress(t, "gzip", big), "Content-Encoding", "gzip"),
		http.StatusRequestEntityTooLarge, "payloadTooLarge")
	// Far over, on another endpoint.
	huge := []byte(`{"userPrincipalName":"huge","password":"huge-password","displayName":"` + strings.Repeat("h", 2<<20) + `"}`)
	wantError(t, e.post(t, e.admin, "/v1.0/users", huge), http.StatusRequestEntityTooLarge, "payloadTooLarge")
	sameSnapshot(t, "alice's feed", before, e.snapshot(t, e.alice.Token, feedAny))
	sameSnapshot(t, "users", users, e.snapshot(t, e.admin, "/v1.0/users"))
	// Just under the limit is fine (and the payload within 4096 bytes).
	ok := []byte(`{"payload":{"rawContent":"x"}}` + pad[:64<<10-len(`{"payload":{"rawContent":"x"}}`)])
	e.send(t, e.tasks, e.aliceTasks, ok).expect(t, http.StatusCreated)
}

func TestRateLimitsAre429WithRetryAfterAndStoreNothing(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, func(c *node.Config) {
		c.Limits.AppRate, c.Limits.AppBurst = 0.01, 3
		c.Limits.UserRate, c.Limits.UserBurst = 0.01, 8
	})
	// Application: three sends pass, the fourth is refused.
	for i := range 3 {
		e.sendOK(t, e.tasks, e.aliceTasks, visual("n"+strconv.Itoa(i)))
	}
	r := e.send(t, e.tasks, e.aliceTasks, visual("one too many"))
	wantError(t, r, http.StatusTooManyRequests, "activityLimitReached")
	if s, _ := strconv.Atoi(r.Header.Get("Retry-After")); s < 50 {
		t.Errorf("Retry-After %q: at 0.01 requests/s a token is ~100 s away", r.Header.Get("Retry-After"))
	}
	page, err := e.Store().ListNotifications(e.alice.ID, "", 100, nil)
	if err != nil || len(page.Items) != 3 {
		t.Errorf("alice has %d notifications after a refused send, want 3 (err %v)", len(page.Items), err)
	}
	// Another application has its own bucket.
	e.sendOK(t, e.mail, e.aliceMail, visual("mail"))

	// User: alice spent two of eight on signing up her subscriptions.
	for range 6 {
		e.get(t, e.alice.Token, "/v1.0/me").expect(t, http.StatusOK)
	}
	wantError(t, e.get(t, e.alice.Token, "/v1.0/me"), http.StatusTooManyRequests, "activityLimitReached")
	subs, _ := e.Store().ListSubscriptions(e.alice.ID)
	wantError(t, e.post(t, e.alice.Token, "/v1.0/me/notificationSubscriptions", map[string]any{"targetHostName": e.tasks.Host,
		"platformType": "web", "channel": map[string]any{"type": "live"}}), http.StatusTooManyRequests, "activityLimitReached")
	if after, _ := e.Store().ListSubscriptions(e.alice.ID); len(after) != len(subs) {
		t.Errorf("a refused subscribe stored a subscription")
	}
	// Bob is not limited by alice's use.
	e.get(t, e.bob.Token, "/v1.0/me").expect(t, http.StatusOK)
}

func TestExpiredAccessTokenIs401(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	var me struct{ ID string }
	n.get(t, n.admin, "/v1.0/me").expect(t, 200).into(t, &me)
	tok := resource.NewSecret(32)
	exp := time.Now().Add(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.Store().Propose(ctx, &raft.Command{Op: raft.OpIssueTokens, Now: time.Now().UnixNano(),
		Tokens: []raft.TokenGrant{{Hash: credential.HashToken(tok), Record: resource.TokenRecord{Kind: resource.TokenAccess,
			PrincipalType: resource.PrincipalUser, PrincipalID: me.ID, ExpiresAt: resource.At(exp)}}}}); err != nil {
		t.Fatal(err)
	}
	n.get(t, tok, "/v1.0/me").expect(t, http.StatusOK)
	eventually(t, 10*time.Second, "the token to expire", func() bool {
		return n.get(t, tok, "/v1.0/me").Status != http.StatusOK
	})
	wantError(t, n.get(t, tok, "/v1.0/me"), http.StatusUnauthorized, "unauthenticated")
}

func TestOperationalEndpoints(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	r := n.get(t, "", "/")
	if r.Status != http.StatusFound && r.Status != http.StatusMovedPermanently && r.Status != http.StatusSeeOther &&
		r.Status != http.StatusTemporaryRedirect && r.Status != http.StatusPermanentRedirect {
		t.Errorf("/ answered %d, want a redirect", r.Status)
	}
	if loc := r.Header.Get("Location"); loc != "/ui/" {
		t.Errorf("/ redirects to %q, want /ui/", loc)
	}
	n.get(t, "", "/ui/").expect(t, http.StatusOK)
	n.get(t, "", "/healthz").expect(t, http.StatusOK)
	n.get(t, "", "/readyz").expect(t, http.StatusOK)

	// A send, so the batch histogram has observations.
	e := &sendEnv{hnode: n, tasks: n.newApp(t, "tasks.contoso.com"), alice: n.newUser(t, "alice")}
	e.sendOK(t, e.tasks, n.subscribe(t, e.alice, e.tasks.Host), visual("m"))
	m := n.get(t, n.admin, "/metrics").expect(t, http.StatusOK)
	if ct := m.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type %q", ct)
	}
	for _, name := range []string{"herald_http_requests_total{", "herald_raft_batch_commands_bucket", "herald_raft_batch_commands_count"} {
		if !strings.Contains(string(m.Body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestBetaIsAnAliasOfV1(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	r := e.post(t, e.tasks.Token, "/beta/me/notifications", visual("via beta"), "X-UNS-ID", e.aliceTasks).expect(t, http.StatusCreated)
	id := str(r.obj(t), "id")
	v1 := e.get(t, e.alice.Token, "/v1.0/me/notifications/"+id).expect(t, http.StatusOK).Body
	beta := e.get(t, e.alice.Token, "/beta/me/notifications/"+id).expect(t, http.StatusOK).Body
	if !bytes.Equal(v1, beta) {
		t.Errorf("/beta and /v1.0 differ:\n%s\n%s", v1, beta)
	}
	e.patch(t, e.alice.Token, "/beta/me/notifications/"+id, map[string]any{"readState": "read"}).expect(t, http.StatusOK)
	var got map[string]any
	json.Unmarshal(e.get(t, e.alice.Token, "/v1.0/me/notifications/"+id).Body, &got)
	if got["readState"] != "read" {
		t.Errorf("a PATCH through /beta did not reach /v1.0: %v", got)
	}
	e.get(t, e.alice.Token, "/beta/me/notificationSubscriptions/"+e.aliceTasks).expect(t, http.StatusOK)
	e.get(t, e.admin, "/beta/users/alice").expect(t, http.StatusOK)
	e.get(t, e.admin, "/beta/applications/"+e.tasks.ID).expect(t, http.StatusOK)
	_, link := e.deltaRound(t, e.alice.Token, "/beta/me/notifications/delta")
	if !strings.Contains(link, "/beta/me/notifications/delta") {
		t.Errorf("deltaLink under /beta points elsewhere: %s", link)
	}
}

// The last voter cannot be removed: a definite 400, with nothing changed,
// not a 503 that says the write may have been committed and invites a retry.
func TestRemovingTheLastVoterIsRefused(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	before := n.get(t, n.admin, "/v1.0/admin/cluster").expect(t, http.StatusOK).obj(t)
	id := str(before, "leaderId")
	if id == "" {
		t.Fatalf("no leader in %v", before)
	}
	wantInvalid(t, n.del(t, n.admin, "/v1.0/admin/cluster/nodes/"+id), "")
	after := n.get(t, n.admin, "/v1.0/admin/cluster").expect(t, http.StatusOK).obj(t)
	if str(after, "leaderId") != id || len(after["nodes"].([]any)) != 1 {
		t.Errorf("after the refused removal: %v", after)
	}
	if nodes := after["nodes"].([]any); str(nodes[0].(map[string]any), "httpAddr") == "" {
		t.Errorf("the node's addresses were dropped: %v", nodes[0])
	}
}

// API answers hold users' data and, some, secrets shown once: no cache may
// keep them, and no browser may read them as anything but what they say.
func TestAPIAnswersAreNotCachedOrSniffed(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	for _, r := range []*resp{
		n.get(t, n.admin, "/v1.0/me").expect(t, http.StatusOK),
		n.post(t, n.admin, "/v1.0/applications", map[string]any{"displayName": "x", "targetHostName": "x.contoso.com"}).
			expect(t, http.StatusCreated),
		n.get(t, n.admin, "/beta/me").expect(t, http.StatusOK),
		n.get(t, "", "/v1.0/me").expect(t, http.StatusUnauthorized),
	} {
		if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: Cache-Control %q, X-Content-Type-Options %q", r.what, r.Header.Get("Cache-Control"), r.Header.Get("X-Content-Type-Options"))
		}
	}
}

// An OData option Herald does not implement is refused, not ignored: the
// caller would take the unfiltered answer for a filtered one.
func TestUnsupportedQueryOptionsAreRefused(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	for _, q := range []string{"$filter=readState%20eq%20'unread'", "$orderby=createdDateTime", "$skip=5", "%24select=id", "$count=true"} {
		r := n.get(t, n.admin, "/v1.0/me/notifications?"+q)
		e := wantError(t, r, http.StatusBadRequest, "invalidRequest")
		if !strings.HasPrefix(e.target(), "$") {
			t.Errorf("%s: target %q, want the option", q, e.target())
		}
	}
	// The supported ones and the plain filters still work.
	n.get(t, n.admin, "/v1.0/me/notifications?$top=5&readState=unread").expect(t, http.StatusOK)
	n.get(t, n.admin, "/v1.0/users?%24top=5").expect(t, http.StatusOK)
}

// OData allows each system query option once, and Graph refuses a second
// ("Query option '$top' was specified more than once"): taking the first
// and ignoring the rest would page, or resume, by a value the caller did
// not mean.
func TestAQueryOptionGivenTwiceIsRefused(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	for _, path := range []string{
		"/v1.0/me/notifications?$top=2&$top=3",
		"/v1.0/me/notifications?$top=2&%24top=3",
		"/v1.0/me/notifications/delta?$top=1&$top=1",
		"/beta/me/notifications?top=2&top=3",
		"/v1.0/users?$skiptoken=a&$skiptoken=b",
		"/v1.0/me/notifications/delta?$deltatoken=ZC4x&$deltatoken=ZC4y",
	} {
		e := wantError(t, n.get(t, n.admin, path), http.StatusBadRequest, "invalidRequest")
		if !strings.HasPrefix(e.target(), "$") {
			t.Errorf("%s: target %q, want the option", path, e.target())
		}
	}
	n.get(t, n.admin, "/v1.0/me/notifications?$top=2&readState=unread").expect(t, http.StatusOK)
}

// On /beta, as on Graph's beta endpoint, a system query option may be
// written without its "$": ?top=1 pages by one, and ?filter=… is refused
// as $filter is rather than ignored. /v1.0 keeps the "$".
func TestBetaTakesQueryOptionsWithoutTheirDollar(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	u := n.newUser(t, "betty")
	a := n.newApp(t, "beta.contoso.com")
	unsid := n.subscribe(t, u, a.Host)
	for i := range 3 {
		n.sendOK(t, a, unsid, visual(fmt.Sprint("n", i)))
	}
	page := n.get(t, u.Token, "/beta/me/notifications?top=1").expect(t, http.StatusOK).obj(t)
	items, _ := page["value"].([]any)
	next, _ := page["@odata.nextLink"].(string)
	if len(items) != 1 || !strings.Contains(next, "skiptoken") {
		t.Fatalf("/beta ?top=1: %d items, nextLink %q; want one and a link on", len(items), next)
	}
	rest, pages, _ := n.collect(t, u.Token, "/beta/me/notifications?top=1")
	if len(rest) != 3 || pages != 3 {
		t.Fatalf("/beta ?top=1 to the end: %d items in %d pages, want 3 in 3", len(rest), pages)
	}
	wantInvalid(t, n.get(t, u.Token, "/beta/me/notifications?filter=readState%20eq%20'read'"), "$filter")
	wantInvalid(t, n.get(t, u.Token, "/beta/me/notifications?top=1&$top=2"), "$top")
	if got := n.get(t, u.Token, "/v1.0/me/notifications?top=1").expect(t, http.StatusOK).value(t); len(got) != 3 {
		t.Fatalf("/v1.0 ?top=1 gave %d items: only /beta drops the $", len(got))
	}
}

// A path with empty, "." or ".." segments is answered in the API's error
// shape, with a request-id, not with net/http's HTML redirect (which a POST
// follows without its body).
func TestPathsNotInCanonicalFormAreRefused(t *testing.T) {
	t.Parallel()
	n := start(t, nil)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1.0//me"}, {http.MethodGet, "/v1.0/./me"}, {http.MethodGet, "/v1.0/users/../me"},
		{http.MethodPost, "/v1.0//me/notifications"},
	} {
		r := n.call(t, c.method, c.path, n.admin, nil)
		wantError(t, r, http.StatusNotFound, "itemNotFound")
		if r.Header.Get("request-id") == "" {
			t.Errorf("%s %s: no request-id", c.method, c.path)
		}
	}
	n.get(t, n.admin, "/v1.0/me").expect(t, http.StatusOK)
}
