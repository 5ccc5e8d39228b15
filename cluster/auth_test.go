package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// Internal requests are accepted only when signed with the cluster key, fresh
// and not seen before; a node without a key accepts none, not even one
// "signed" with the empty key.
func TestClusterAuth(t *testing.T) {
	newAuth := func(key string) *clusterAuth {
		return &clusterAuth{key: []byte(key), seen: map[string]time.Time{}}
	}
	server := newAuth("k")
	body := []byte(`{"id":"n2"}`)
	req := func(signer *clusterAuth, b []byte) *http.Request {
		r, _ := http.NewRequest(http.MethodPost, "http://x/internal/cluster/join", bytes.NewReader(b))
		signer.sign(r, b)
		return r
	}
	r := req(newAuth("k"), body)
	if !server.verify(r, body) {
		t.Fatal("a request signed with the key was refused")
	}
	if server.verify(r, body) {
		t.Error("a replayed request was accepted")
	}
	if server.verify(req(newAuth("other"), body), body) {
		t.Error("a request signed with another key was accepted")
	}
	if r := req(newAuth("k"), body); server.verify(r, []byte(`{"id":"evil"}`)) {
		t.Error("a request whose body changed was accepted")
	}
	if server.verify(&http.Request{Method: http.MethodPost, Header: http.Header{}, URL: r.URL}, body) {
		t.Error("an unsigned request was accepted")
	}
	stale := req(newAuth("k"), body)
	ts := strconv.FormatInt(time.Now().Add(-2*clockSkew).Unix(), 10)
	stale.Header.Set(clusterAuthHeader, ts+" n1 "+server.mac(stale.Method, stale.URL.Path, ts, "n1", body))
	if server.verify(stale, body) {
		t.Error("a stale request was accepted")
	}
	if newAuth("").verify(req(newAuth(""), body), body) {
		t.Error("a node without a cluster key accepted an internal request")
	}
}

// A forwarded proposal the leader refuses with a non-200 other than 503
// (a 403 for clock skew, a 400 for size) becomes a 503 serviceNotAvailable
// for the client, not the leader's accessDenied or invalidRequest; admin
// requests keep the leader's error (a 404 for an unknown node).
func TestForwardErrorIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{{http.StatusForbidden, resource.CodeAccessDenied}, {http.StatusBadRequest, resource.CodeInvalidRequest},
		{http.StatusInternalServerError, resource.CodeGeneralException}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(tc.status)
			json.NewEncoder(w).Encode(map[string]any{"error": resource.Errorf(tc.code, "refused")})
		}))
		n := &Cluster{client: srv.Client(), auth: &clusterAuth{key: []byte("k"), seen: map[string]time.Time{}}}
		err := n.callNode(context.Background(), strings.TrimPrefix(srv.URL, "http://"), http.MethodPost,
			"/internal/cluster/propose", struct{}{}, nil, true)
		srv.Close()
		var re *resource.Error
		if !errors.As(err, &re) || re.Code != tc.code {
			t.Errorf("%d: callNode returned %v, want the peer's %s", tc.status, err, tc.code)
		}
		if !errors.As(forwardError(err), &re) || re.Code != resource.CodeUnavailable {
			t.Errorf("%d: forwarded write answered %v, want %s", tc.status, forwardError(err), resource.CodeUnavailable)
		}
	}
}
