package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/herald-notify/herald/resource"
)

// Inter-node HTTP (joining, forwarded writes, status probes) lives under
// /internal/cluster/ and is authenticated by an HMAC of the request keyed by
// the cluster key, never by user tokens: a request must be fresh (its time
// within clockSkew) and its nonce unseen, so a captured request cannot be
// replayed.

const (
	clusterAuthHeader = "Herald-Cluster-Auth"
	// forwardedHeader marks a request one node passed on to the leader, so
	// that a node that lost leadership meanwhile answers 503 instead of
	// forwarding again (no loops).
	forwardedHeader = "Herald-Forwarded"
	clockSkew       = time.Minute
	maxInternalBody = 1 << 20
)

type clusterAuth struct {
	// key is the cluster key. Without one every internal request is
	// refused: an HMAC keyed by nothing proves nothing, and these routes
	// share the public listener.
	key []byte

	mu   sync.Mutex
	seen map[string]time.Time // nonce → when it may be forgotten
}

func (a *clusterAuth) mac(method, path, ts, nonce string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, a.key)
	fmt.Fprintf(m, "herald-internal\n%s\n%s\n%s\n%s\n%x", method, path, ts, nonce, sum)
	return hex.EncodeToString(m.Sum(nil))
}

func (a *clusterAuth) sign(req *http.Request, body []byte) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := resource.NewSecret(16)
	req.Header.Set(clusterAuthHeader, ts+" "+nonce+" "+a.mac(req.Method, req.URL.Path, ts, nonce, body))
}

func (a *clusterAuth) verify(r *http.Request, body []byte) bool {
	if len(a.key) == 0 {
		return false
	}
	var ts, nonce, mac string
	if n, _ := fmt.Sscanf(r.Header.Get(clusterAuthHeader), "%s %s %s", &ts, &nonce, &mac); n != 3 {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	when := time.Unix(sec, 0)
	if time.Since(when).Abs() > clockSkew {
		return false
	}
	if !hmac.Equal([]byte(mac), []byte(a.mac(r.Method, r.URL.Path, ts, nonce, body))) {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if len(a.seen) > 10000 {
		for k, exp := range a.seen {
			if now.After(exp) {
				delete(a.seen, k)
			}
		}
	}
	if _, dup := a.seen[nonce]; dup {
		return false
	}
	a.seen[nonce] = when.Add(2 * clockSkew)
	return true
}
