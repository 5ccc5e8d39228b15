package node_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-notify/herald/internal/testnode"
)

// The public listener answers the inter-node paths it does not serve as it
// answers any other path (API.md §1): a request-id header, and 404 or 405
// (with Allow) in the contract's error shape, not net/http's plain text.
// The one public route, GET /internal/cluster/peer, carries a request-id too.
func TestPublicInternalPathsAnswerInTheErrorShape(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	n := testnode.Start(t, &cfg)
	for _, tc := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{http.MethodGet, "/internal/cluster/status", http.StatusNotFound, "itemNotFound", ""},
		{http.MethodPost, "/internal/cluster/join", http.StatusNotFound, "itemNotFound", ""},
		{http.MethodGet, "/internal/cluster/nosuch", http.StatusNotFound, "itemNotFound", ""},
		{http.MethodPost, "/internal/cluster/peer", http.StatusMethodNotAllowed, "methodNotAllowed", "GET, HEAD"},
		{http.MethodDelete, "/internal/cluster/peer", http.StatusMethodNotAllowed, "methodNotAllowed", "GET, HEAD"},
	} {
		req, _ := http.NewRequest(tc.method, n.URL+tc.path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct {
				Code       string `json:"code"`
				InnerError struct {
					RequestID string `json:"request-id"`
				} `json:"innerError"`
			} `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || err != nil || body.Error.Code != tc.code {
			t.Errorf("%s %s: %s, code %q (%v), want %d %s", tc.method, tc.path, resp.Status, body.Error.Code, err, tc.status, tc.code)
		}
		if id := resp.Header.Get("request-id"); id == "" || body.Error.InnerError.RequestID != id {
			t.Errorf("%s %s: request-id header %q, innerError %q", tc.method, tc.path, id, body.Error.InnerError.RequestID)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	resp, err := http.Get(n.URL + "/internal/cluster/peer")
	if err != nil {
		t.Fatal(err)
	}
	var peer struct{ ID, RaftAddr string }
	err = json.NewDecoder(resp.Body).Decode(&peer)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || peer.ID != cfg.NodeID || peer.RaftAddr != n.Store().RaftAddr() {
		t.Errorf("GET /internal/cluster/peer: %s %+v, %v", resp.Status, peer, err)
	}
	if resp.Header.Get("request-id") == "" {
		t.Error("GET /internal/cluster/peer has no request-id header")
	}
}
