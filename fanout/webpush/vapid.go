package webpush

import (
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// tokenLifetime is the exp of a VAPID JWT. RFC 8292 §2 caps it at
	// 24 hours; half of that leaves room for a push service's clock.
	tokenLifetime = 12 * time.Hour
	// tokenRefresh: a cached token is replaced once less than this is
	// left, so that no request carries a token about to lapse in flight.
	tokenRefresh = time.Hour
	// maxCachedOrigins bounds the cache: origins come from subscription
	// endpoints, which users choose. Real push services are a handful.
	maxCachedOrigins = 256
)

// vapidCache holds one Authorization header value per push service origin.
// Signing is the costliest step of a send after the ECDH; a push service
// sees the same token for hours, which RFC 8292 §2 allows.
type vapidCache struct {
	keys    *KeyPair
	subject string

	mu     sync.Mutex
	tokens map[string]cachedToken
}

type cachedToken struct {
	header string // "vapid t=..., k=..."
	exp    time.Time
}

// authorization returns the Authorization header for a push service origin
// at time now.
func (c *vapidCache) authorization(origin string, now time.Time) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.tokens[origin]; ok && now.Before(t.exp.Add(-tokenRefresh)) {
		return t.header, nil
	}
	exp := now.Add(tokenLifetime)
	// MapClaims rather than RegisteredClaims: the latter writes aud as an
	// array, and RFC 8292 §2 and some push services want a string.
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"aud": origin,
		"exp": exp.Unix(),
		"sub": c.subject,
	})
	signed, err := tok.SignedString(c.keys.priv)
	if err != nil {
		return "", err
	}
	if len(c.tokens) >= maxCachedOrigins {
		for o, t := range c.tokens {
			if !now.Before(t.exp.Add(-tokenRefresh)) {
				delete(c.tokens, o)
			}
		}
		if len(c.tokens) >= maxCachedOrigins {
			clear(c.tokens) // simpler than LRU; re-signing is cheap enough
		}
	}
	h := "vapid t=" + signed + ", k=" + c.keys.PublicKey()
	c.tokens[origin] = cachedToken{header: h, exp: exp}
	return h, nil
}

// origin is the ASCII serialization of u's origin (RFC 6454 §6.2), the aud
// of RFC 8292 §2: scheme and host in lower case, the port only when it is
// not the scheme's default.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := u.Port()
	if port == "" || (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		return scheme + "://" + host
	}
	return scheme + "://" + host + ":" + port
}
