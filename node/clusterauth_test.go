package node

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
	"time"
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
