package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-notify/herald/httpapi"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// TestOpenAPIDescribesEveryRoute holds /openapi.json true. Every route the
// server registers must be an operation of the description and the other
// way round; then one walk through the whole API on a real two-node
// cluster sends every request through a checker that validates it and its
// response against the description, and every operation must have been
// answered with a success at least once. Any difference fails the test:
// a property, status or header the description lacks or misnames, a route
// served that it does not describe, an operation it describes that nothing
// exercised.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	offline, err := newSpecCheck(t.Errorf)
	if err != nil {
		t.Fatalf("load the description: %v", err)
	}
	served := httpapi.New(httpapi.Options{UI: http.NotFoundHandler()}).Routes()
	notDescribed, notServed := routeDiff(served, offline.operations())
	for _, r := range notDescribed {
		t.Errorf("%s is served but not in openapi/openapi.yaml", r)
	}
	for _, r := range notServed {
		t.Errorf("%s is in openapi/openapi.yaml but not served", r)
	}

	const key = "openapi-test-cluster-key-0123456789abcdef"
	n := start(t, func(c *node.Config) {
		c.HTTPAddr = testnode.FreeAddr(t)
		c.ClusterKey = key
		c.Webhook.AllowPrivate = true
		c.Limits.AppRate, c.Limits.UserRate = 0, 0
		// As in the node package's cluster tests: two nodes under -race
		// on a busy machine must not lose their leader to a slow
		// heartbeat in the middle of a membership change.
		c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout = 500*time.Millisecond, 500*time.Millisecond
	})
	second := testnode.Config(t, t.TempDir())
	second.NodeID, second.HTTPAddr, second.ClusterKey = "second", testnode.FreeAddr(t), key
	second.Join = []string{n.Config.HTTPAddr}
	second.Raft = n.Config.Raft
	second.Webhook.AllowPrivate = true // it may own alice's slot, and so her deliveries
	other := testnode.Start(t, &second)

	check, err := newSpecCheck(t.Errorf)
	if err != nil {
		t.Fatal(err)
	}
	n.http.Transport = retryUncommitted{check}
	walkTheAPI(t, n, check, other)

	for _, op := range check.unanswered() {
		t.Errorf("%s: described, but the walk never got a success from it", op)
	}
}

// walkTheAPI calls every operation through n's checked client.
func walkTheAPI(t *testing.T, n *hnode, check *specCheck, other *testnode.Node) {
	ctx := context.Background()

	// Operations without a token.
	for _, p := range []string{"/openapi.json", "/sdk/herald.js", "/healthz", "/v1.0/webPush/vapidPublicKey"} {
		n.get(t, "", p).expect(t, http.StatusOK)
	}
	// Ready within 200 ms of the leader's commit index: on a loaded machine
	// a moment may pass first, and the 503 meanwhile is described too.
	eventually(t, 10*time.Second, "/readyz to answer 200", func() bool {
		return n.get(t, "", "/readyz").Status == http.StatusOK
	})
	n.get(t, "", "/metrics").expect(t, http.StatusUnauthorized)
	n.get(t, n.admin, "/metrics").expect(t, http.StatusOK)
	n.call(t, http.MethodHead, "/openapi.json", "", nil).expect(t, http.StatusOK)
	n.get(t, "", "/v1.0/me").expect(t, http.StatusUnauthorized)
	n.get(t, n.admin, "/beta/me", "ConsistencyLevel", "strong").expect(t, http.StatusOK)

	// Users, applications and their secrets (admin).
	alice := n.newUser(t, "alice")
	n.newUser(t, "bob")
	page := n.get(t, n.admin, "/v1.0/users?$top=1").expect(t, http.StatusOK).obj(t)
	if str(page, "@odata.nextLink") == "" {
		t.Fatalf("one user per page of three: no nextLink in %v", page)
	}
	n.get(t, n.admin, str(page, "@odata.nextLink")).expect(t, http.StatusOK)
	n.get(t, n.admin, "/v1.0/users/alice").expect(t, http.StatusOK)
	n.patch(t, n.admin, "/v1.0/users/"+alice.ID, map[string]any{"displayName": "Alice A."}).expect(t, http.StatusOK)
	n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": "alice", "password": "12345678"}).
		expect(t, http.StatusConflict)
	n.post(t, n.admin, "/v1.0/users", map[string]any{"userPrincipalName": "carol", "password": "12345678", "colour": "red"}).
		expect(t, http.StatusBadRequest)

	a := n.newApp(t, "tasks.contoso.com")
	n.get(t, n.admin, "/v1.0/applications").expect(t, http.StatusOK)
	n.get(t, n.admin, "/v1.0/applications/"+a.ID).expect(t, http.StatusOK)
	n.patch(t, n.admin, "/v1.0/applications/"+a.ID, map[string]any{"displayName": "Contoso Tasks"}).expect(t, http.StatusOK)
	if faces := n.get(t, alice.Token, "/v1.0/me/applications").expect(t, http.StatusOK).value(t); len(faces) != 1 ||
		faces[0]["displayName"] != "Contoso Tasks" || faces[0]["targetHostName"] != "tasks.contoso.com" {
		t.Errorf("alice's view of the applications: %v", faces)
	}
	cred := n.post(t, n.admin, "/v1.0/applications/"+a.ID+"/addPassword", map[string]any{"displayName": "second"}).
		expect(t, http.StatusOK).obj(t)
	n.post(t, n.admin, "/v1.0/applications/"+a.ID+"/removePassword", map[string]any{"keyId": str(cred, "keyId")}).
		expect(t, http.StatusNoContent)
	n.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}}, a.AppID+":"+a.Secret).expect(t, http.StatusOK)
	n.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {alice.Refresh}}).expect(t, http.StatusOK)
	n.tokenRequest(t, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wrong-password"}}).
		expect(t, http.StatusBadRequest)
	n.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {a.AppID}, "client_secret": {"hs_wrong"}}).
		expect(t, http.StatusUnauthorized)

	// Sessions: alice signs in twice, lists and reads hers, ends the other
	// one; an admin lists, reads and ends hers too. The audit log saw it all.
	again := n.login(t, "alice", alice.Password)
	mine := n.get(t, alice.Token, "/v1.0/me/sessions").expect(t, http.StatusOK).value(t)
	var otherSID string
	for _, ses := range mine {
		if ses["current"] != true {
			otherSID = str(ses, "id")
		}
	}
	if len(mine) < 2 || otherSID == "" {
		t.Fatalf("alice signed in twice, her sessions are %v", mine)
	}
	n.get(t, alice.Token, "/v1.0/me/sessions/"+otherSID).expect(t, http.StatusOK)
	n.get(t, n.admin, "/v1.0/users/"+alice.ID+"/sessions").expect(t, http.StatusOK)
	n.get(t, n.admin, "/v1.0/users/"+alice.ID+"/sessions/"+otherSID).expect(t, http.StatusOK)
	n.del(t, alice.Token, "/v1.0/me/sessions/"+otherSID).expect(t, http.StatusNoContent)
	n.get(t, again.Access, "/v1.0/me").expect(t, http.StatusUnauthorized)
	third := n.login(t, "alice", alice.Password)
	for _, ses := range n.get(t, third.Access, "/v1.0/me/sessions").expect(t, http.StatusOK).value(t) {
		if ses["current"] == true {
			n.del(t, n.admin, "/v1.0/users/"+alice.ID+"/sessions/"+str(ses, "id")).expect(t, http.StatusNoContent)
		}
	}
	n.get(t, third.Access, "/v1.0/me").expect(t, http.StatusUnauthorized)
	n.get(t, alice.Token, "/v1.0/me/sessions/"+otherSID).expect(t, http.StatusNotFound)
	audit := n.get(t, n.admin, "/v1.0/admin/auditLog?$top=1&action=session.revoke").expect(t, http.StatusOK).obj(t)
	if str(audit, "@odata.nextLink") == "" {
		t.Errorf("two revokes, one per page: no nextLink in %v", audit)
	}
	n.get(t, n.admin, "/v1.0/admin/auditLog?since=yesterday").expect(t, http.StatusBadRequest)

	// Alice registers a live device and a webhook.
	unsid := n.subscribe(t, alice, a.Host)
	hook := n.post(t, alice.Token, "/v1.0/me/notificationSubscriptions", map[string]any{"targetHostName": a.Host,
		"platformType": "Windows", "deviceName": "hook", "channel": map[string]any{"type": "webhook", "url": hookURL(t)}}).
		expect(t, http.StatusCreated).obj(t)
	if !strings.HasPrefix(str(hook, "secret"), "whsec_") {
		t.Fatalf("webhook subscription without its secret: %v", hook)
	}
	n.get(t, alice.Token, "/v1.0/me/notificationSubscriptions").expect(t, http.StatusOK)
	n.get(t, alice.Token, "/v1.0/me/notificationSubscriptions/"+unsid).expect(t, http.StatusOK)
	n.patch(t, alice.Token, "/v1.0/me/notificationSubscriptions/"+unsid, map[string]any{"deviceName": "phone"}).
		expect(t, http.StatusOK)
	n.get(t, n.admin, "/v1.0/users/"+alice.ID+"/notificationSubscriptions").expect(t, http.StatusOK)

	// Alice listens (SSE and WebSocket) and takes a delta token.
	sse := openSSE(t, n, alice.Token)
	ws := openWS(t, n, alice.Token)
	delta := n.get(t, alice.Token, "/v1.0/me/notifications/delta").expect(t, http.StatusOK).obj(t)
	deltaLink := str(delta, "@odata.deltaLink")
	if deltaLink == "" {
		t.Fatalf("delta without a deltaLink: %v", delta)
	}

	// The application sends, replaces and reads what it sent.
	body := visual("Build done", "appNotificationId", "build-1", "groupName", "builds", "priority", "low",
		"displayTimeToLive", "60", "targetPolicy", map[string]any{"platformTypes": []string{"web", "windows"}})
	nid := n.sendOK(t, a, unsid, body)
	body["payload"] = map[string]any{"rawContent": "{}", "visualContent": map[string]any{"title": "Build done again"}}
	n.send(t, a, unsid, body).expect(t, http.StatusOK)
	n.send(t, a, unsid, []any{body}).expect(t, http.StatusBadRequest)
	n.send(t, a, "", body, "X-UNS-ID", "").expect(t, http.StatusBadRequest)
	n.get(t, a.Token, "/v1.0/me/notifications", "X-UNS-ID", unsid).expect(t, http.StatusOK)
	n.get(t, a.Token, "/v1.0/me/notifications/"+nid, "X-UNS-ID", unsid).expect(t, http.StatusOK)
	n.get(t, a.Token, "/v1.0/me/notifications/"+nid+"/deliveries", "X-UNS-ID", unsid).expect(t, http.StatusOK)
	for _, ev := range []string{"created", "updated"} {
		sse.next(t, check, ev)
		ws.next(t, check, ev)
	}

	// Alice reads, dismisses, follows delta, deletes.
	n.get(t, alice.Token, "/v1.0/me/notifications?readState=unread&$top=5").expect(t, http.StatusOK)
	n.get(t, alice.Token, "/v1.0/me/notifications/"+nid).expect(t, http.StatusOK)
	n.patch(t, alice.Token, "/v1.0/me/notifications/"+nid, map[string]any{"readState": "read", "userActionState": "dismissed"}).
		expect(t, http.StatusOK)
	n.patch(t, alice.Token, "/v1.0/me/notifications/"+nid, map[string]any{"priority": "High"}).expect(t, http.StatusBadRequest)
	sse.next(t, check, "updated")
	ws.next(t, check, "updated")
	eventually(t, 20*time.Second, "the webhook delivery", func() bool {
		ds := n.get(t, alice.Token, "/v1.0/me/notifications/"+nid+"/deliveries").expect(t, http.StatusOK).value(t)
		for _, d := range ds {
			if d["channelType"] == "webhook" && d["state"] == "delivered" {
				return true
			}
		}
		return false
	})
	n.del(t, alice.Token, "/v1.0/me/notifications/"+nid).expect(t, http.StatusNoContent)
	sse.next(t, check, "deleted")
	ws.next(t, check, "deleted")
	changes := n.get(t, alice.Token, deltaLink).expect(t, http.StatusOK).value(t)
	if len(changes) != 1 || changes[0]["@removed"] == nil {
		t.Errorf("delta after a delete: %v", changes)
	}
	n.get(t, alice.Token, "/v1.0/me/notifications/delta?$deltatoken=bm90LWEtdG9rZW4").expect(t, http.StatusBadRequest)

	// An admin sends and looks at alice's feed and deliveries.
	sent := n.post(t, n.admin, "/v1.0/users/alice/notifications", visual("From the admin", "targetHostName", a.Host, "groupName", "admin")).
		expect(t, http.StatusCreated).obj(t)
	n.get(t, n.admin, "/v1.0/users/alice/notifications?status=any").expect(t, http.StatusOK)
	n.get(t, n.admin, "/v1.0/users/alice/notifications/"+str(sent, "id")).expect(t, http.StatusOK)
	n.get(t, n.admin, "/v1.0/users/alice/notifications/"+str(sent, "id")+"/deliveries").expect(t, http.StatusOK)
	n.get(t, n.admin, "/v1.0/admin/users/alice/lastDeliveries").expect(t, http.StatusOK)
	n.del(t, a.Token, "/v1.0/me/notifications?groupName=admin", "X-UNS-ID", unsid).expect(t, http.StatusNoContent)

	// The web UI's session: sign in, read it, refresh, sign out.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: check, Jar: jar, Timeout: 30 * time.Second}
	uiCall := func(method, path, body string, hdr ...string) (*http.Response, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, n.URL+path, rd)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := browser.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	if res, b := uiCall("POST", "/ui/session", `{"username":"alice","password":"`+alice.Password+`"}`); res.StatusCode != http.StatusOK {
		t.Fatalf("sign in: %d %s", res.StatusCode, b)
	}
	res, b := uiCall("GET", "/ui/session", "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("session: %d %s", res.StatusCode, b)
	}
	if res, b := uiCall("POST", "/ui/session/refresh", ""); res.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", res.StatusCode, b)
	}
	csrf := between(b, `"csrfToken":"`, `"`)
	if res, b := uiCall("DELETE", "/ui/session", "", "X-CSRF-Token", csrf); res.StatusCode != http.StatusNoContent {
		t.Fatalf("sign out: %d %s", res.StatusCode, b)
	}
	if res, b := uiCall("GET", "/ui/session", ""); res.StatusCode != http.StatusOK || !strings.Contains(b, `"user":null`) {
		t.Errorf("session after sign-out: %d %s, want 200 and no user", res.StatusCode, b)
	}

	// Operations: the cluster, a member removed and added back, a backup.
	eventually(t, 30*time.Second, "two members", func() bool {
		var st struct {
			Nodes []map[string]any `json:"nodes"`
		}
		n.get(t, n.admin, "/v1.0/admin/cluster").expect(t, http.StatusOK).into(t, &st)
		return len(st.Nodes) == 2
	})
	n.del(t, n.admin, "/v1.0/admin/cluster/nodes/second").expect(t, http.StatusNoContent)
	n.post(t, n.admin, "/v1.0/admin/cluster/nodes", map[string]any{"id": "second",
		"raftAddr": other.Store().RaftAddr(), "httpAddr": other.Config.HTTPAddr}).expect(t, http.StatusCreated)
	n.post(t, n.admin, "/v1.0/admin/cluster/nodes", map[string]any{"id": "third"}).expect(t, http.StatusBadRequest)
	n.get(t, n.admin, "/v1.0/admin/backup").expect(t, http.StatusOK)

	// Wrong methods and unknown paths get the error shape.
	n.call(t, http.MethodPut, "/v1.0/me", n.admin, nil).expect(t, http.StatusMethodNotAllowed)
	n.get(t, n.admin, "/v1.0/no/such/thing").expect(t, http.StatusNotFound)

	// Deleting what the walk made.
	n.del(t, alice.Token, "/v1.0/me/notificationSubscriptions/"+unsid).expect(t, http.StatusNoContent)
	n.del(t, n.admin, "/v1.0/applications/"+a.ID).expect(t, http.StatusNoContent)
	n.del(t, n.admin, "/v1.0/users/bob").expect(t, http.StatusNoContent)
}

// hookURL is a webhook receiver on loopback, so that deliveries reach a
// state.
func hookURL(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/hook"
}

func between(s, from, to string) string {
	_, rest, _ := strings.Cut(s, from)
	v, _, _ := strings.Cut(rest, to)
	return v
}

// checkedSSE is a live stream opened through the checker.
type checkedSSE struct {
	lines *bufio.Reader
	close func()
}

func openSSE(t *testing.T, n *hnode, token string) *checkedSSE {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v1.0/me/notifications/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := (&http.Client{Transport: n.http.Transport}).Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("open the stream: %v %v", err, res)
	}
	s := &checkedSSE{lines: bufio.NewReader(res.Body), close: func() { cancel(); res.Body.Close() }}
	t.Cleanup(s.close)
	return s
}

// next reads the next event, which must be of type want with data that the
// description's schema for it accepts.
func (s *checkedSSE) next(t *testing.T, check *specCheck, want string) {
	t.Helper()
	timer := time.AfterFunc(20*time.Second, s.close)
	defer timer.Stop()
	var event, data, id string
	for {
		line, err := s.lines.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended waiting for %s: %v", want, err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" && event != "" {
			break
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			event = value
		case "data":
			data = value
		case "id":
			id = value
		}
	}
	if event != want || id == "" {
		t.Fatalf("SSE event %q id %q, want %q with an id", event, id, want)
	}
	name := "Notification"
	if want == "deleted" {
		name = "Removed"
	}
	if err := check.schema(name, []byte(data)); err != nil {
		t.Errorf("SSE %s data is not a %s of the description: %v\n%s", event, name, err, data)
	}
}

type checkedWS struct {
	conn *websocket.Conn
}

func openWS(t *testing.T, n *hnode, token string) *checkedWS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(n.URL, "http") + "/v1.0/me/notifications/stream?access_token=" + url.QueryEscape(token)
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: &http.Client{Transport: n.http.Transport}})
	if err != nil {
		t.Fatalf("open the WebSocket: %v", err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return &checkedWS{conn: conn}
}

func (w *checkedWS) next(t *testing.T, check *specCheck, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, b, err := w.conn.Read(ctx)
	if err != nil {
		t.Fatalf("WebSocket read waiting for %s: %v", want, err)
	}
	if err := check.schema("StreamFrame", b); err != nil {
		t.Errorf("WebSocket frame is not a StreamFrame of the description: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), fmt.Sprintf(`"type":%q`, want)) {
		t.Errorf("WebSocket frame %s, want type %s", b, want)
	}
}

// retryUncommitted sends a request again after a 503 that left nothing done
// (a read, or a write that says it was not committed or that the node could
// not confirm its state: an election or a slow barrier under a loaded -race
// run), as a client following Retry-After would; each answer, the 503s too,
// goes through the check.
type retryUncommitted struct{ next http.RoundTripper }

func (r retryUncommitted) RoundTrip(req *http.Request) (*http.Response, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := r.next.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) ||
			req.Body != nil && req.GetBody == nil {
			return resp, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		safe := req.Method == http.MethodGet || req.Method == http.MethodHead ||
			bytes.Contains(b, []byte("not committed")) || bytes.Contains(b, []byte("could not confirm"))
		if !safe {
			resp.Body = io.NopCloser(bytes.NewReader(b))
			return resp, nil
		}
		time.Sleep(200 * time.Millisecond)
		req = req.Clone(req.Context())
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
	}
}
