package httpapi

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/herald-notify/herald/credential"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// Token lifetimes.
const (
	AccessTokenTTL  = time.Hour
	RefreshTokenTTL = 14 * 24 * time.Hour
)

// principal is the authenticated caller.
type principal struct {
	user    *resource.UserRecord        // set for users
	app     *resource.ApplicationRecord // set for applications
	session string
	// tokenHash names the access token, so a long-lived stream can check
	// that it was not revoked since.
	tokenHash string
}

func (p *principal) isAdmin() bool { return p.user != nil && p.user.IsAdmin() }

// bearer extracts the access token: the Authorization header, or (for
// streams, whose browser APIs cannot set headers) the access_token query
// parameter.
func bearer(r *http.Request, allowQuery bool) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		if t, ok := strings.CutPrefix(h, "bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	if allowQuery {
		return r.URL.Query().Get("access_token")
	}
	return ""
}

// authenticate resolves the caller and applies its rate limit.
func (s *Server) authenticate(r *http.Request, allowQuery bool) (*principal, error) {
	tok := bearer(r, allowQuery)
	if tok == "" && r.Header.Get("Authorization") != "" {
		// Some other scheme (Basic, a malformed header): never fall back
		// to the ambient cookie for a request that named its credentials.
		return nil, unauthenticated("The Authorization header must be Bearer <token>.")
	}
	if tok == "" {
		var err error
		if tok, err = s.sessionToken(r); err != nil { // the web UI's cookie (session.go)
			return nil, err
		}
	}
	if tok == "" {
		return nil, unauthenticated("An access token is required: send Authorization: Bearer <token>.")
	}
	hash := credential.HashToken(tok)
	rec, ok, err := s.state.Token(hash)
	if err == nil && !ok && s.lookAgain(r) {
		// Issued through another node a moment ago, perhaps.
		rec, ok, err = s.state.Token(hash)
	}
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if !ok {
		if err := unknownToken(r); err != nil { // consistency.go
			return nil, err
		}
	}
	if !ok || rec.Kind != resource.TokenAccess || !now.Before(rec.ExpiresAt.Time) {
		return nil, unauthenticated("The access token is unknown or expired.")
	}
	p := &principal{session: rec.Session, tokenHash: hash}
	var key string
	var rate float64
	var burst int
	switch rec.PrincipalType {
	case resource.PrincipalUser:
		u, ok, err := s.state.User(rec.PrincipalID)
		if err != nil {
			return nil, err
		}
		if !ok || !u.AccountEnabled {
			return nil, unauthenticated("The access token's user no longer exists or is disabled.")
		}
		p.user = u
		key, rate, burst = userKeyPrefix+u.ID, s.opts.UserRate, s.opts.UserBurst
		if rec.Session != "" {
			s.touchSession(r, u.ID, rec.Session) // audit.go
		}
	case resource.PrincipalApp:
		a, ok, err := s.state.App(rec.PrincipalID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, unauthenticated("The access token's application no longer exists.")
		}
		p.app = a
		key, rate, burst = appKeyPrefix+a.ID, s.opts.AppRate, s.opts.AppBurst
	default:
		return nil, unauthenticated("The access token is unknown or expired.")
	}
	if allowed, wait := s.limits.allowShared(key, rate, burst, now); !allowed { // ratelimits.go
		return nil, &retryAfter{resource.Errorf(resource.CodeRateLimited,
			"Too many requests; retry after the time in Retry-After."), wait}
	}
	return p, nil
}

// stillValid reports whether a stream's token still holds: not revoked
// (sign-out, password change), not expired, its user still enabled.
func (s *Server) stillValid(p *principal) bool {
	rec, ok, err := s.state.Token(p.tokenHash)
	if err != nil || !ok || !time.Now().Before(rec.ExpiresAt.Time) {
		return false
	}
	u, ok, err := s.state.User(rec.PrincipalID)
	return err == nil && ok && u.AccountEnabled
}

// authed wraps a handler that any authenticated caller may use.
func (s *Server) authed(h func(w http.ResponseWriter, r *http.Request, p *principal) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := s.authenticate(r, false)
		if err != nil {
			return err
		}
		return h(w, r, p)
	}
}

// userOnly wraps a handler for user tokens.
func (s *Server) userOnly(h func(w http.ResponseWriter, r *http.Request, p *principal) error) handlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request, p *principal) error {
		if p.user == nil {
			return denied("This endpoint needs a user's token, not an application's.")
		}
		return h(w, r, p)
	})
}

// adminOnly wraps a handler for admins.
func (s *Server) adminOnly(h func(w http.ResponseWriter, r *http.Request, p *principal) error) handlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request, p *principal) error {
		if !p.isAdmin() {
			return denied("This endpoint needs an admin.")
		}
		return h(w, r, p)
	})
}

// oauthError is an RFC 6749 §5.2 error.
type oauthError struct {
	status int
	Code   string `json:"error"`
	Desc   string `json:"error_description"`
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Desc }

func oauthFail(status int, code, desc string) *oauthError {
	return &oauthError{status: status, Code: code, Desc: desc}
}

type tokenResponse struct {
	TokenType    string `json:"token_type"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// token is POST /oauth2/v2.0/token.
func (s *Server) token(w http.ResponseWriter, r *http.Request) error {
	resp, err := s.grant(r)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	var oe *oauthError
	if errors.As(err, &oe) {
		if oe.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="herald"`)
		}
		writeJSON(w, oe.status, oe)
		return nil
	}
	if err != nil {
		// Refused for the server's sake (a limit, no leader, a full pool
		// of password hashes): still in RFC 6749's shape, as every answer
		// of this endpoint, so that an OAuth client library reads it.
		// Microsoft's identity platform answers its throttling the same
		// way.
		status, re := s.classify(w, r, err)
		code := "server_error"
		switch {
		case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable ||
			status == http.StatusInsufficientStorage:
			code = "temporarily_unavailable"
		case status < 500:
			code = "invalid_request"
		}
		writeJSON(w, status, oauthFail(status, code, re.Message))
		return nil
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) grant(r *http.Request) (*tokenResponse, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return nil, oauthFail(400, "invalid_request", "The token request must be application/x-www-form-urlencoded.")
	}
	// Encoded as every other body may be (API.md §1), with the refusals
	// in RFC 6749's shape, as every answer here.
	body, err := decodedBody(r)
	if err != nil {
		var re *resource.Error
		switch {
		case !errors.As(err, &re):
			return nil, oauthFail(400, "invalid_request", "The form could not be read.")
		case re.Code == resource.CodePayloadTooLarge:
			return nil, oauthFail(http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("The token request is over %d bytes.", MaxBodyBytes))
		case re.Code == resource.CodeUnsupportedMedia:
			return nil, oauthFail(http.StatusUnsupportedMediaType, "invalid_request", re.Message)
		default:
			return nil, oauthFail(400, "invalid_request", re.Message)
		}
	}
	f, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, oauthFail(400, "invalid_request", "The form could not be parsed.")
	}
	r.PostForm = f
	for k, v := range f {
		if len(v) > 1 {
			// RFC 6749 §3.1: no parameter more than once. Which copy
			// counts would be the server's guess.
			return nil, oauthFail(400, "invalid_request", "The parameter "+k+" is given more than once.")
		}
	}
	now := s.tokenNow()
	switch f.Get("grant_type") {
	case "client_credentials":
		id, secret, basic := r.BasicAuth()
		if !basic {
			id, secret = f.Get("client_id"), f.Get("client_secret")
		}
		if id == "" || secret == "" {
			return nil, oauthFail(400, "invalid_request", "client_id and client_secret are required.")
		}
		// Per application and client address: an appId is no secret, and
		// a bucket of its own would let anyone who knows it keep the
		// application from its tokens by guessing.
		if ok, wait := s.limits.allow("login:app:"+id+"\x00"+clientAddr(r), 5, 20, now); !ok {
			return nil, &retryAfter{resource.Errorf(resource.CodeRateLimited, "Too many token requests."), wait}
		}
		a, found, err := s.state.AppBy(id)
		if err == nil && (!found || a.AppID != id || !secretMatches(a, secret, now)) && s.lookAgain(r) {
			// The application or its secret may be new, added through
			// another node.
			a, found, err = s.state.AppBy(id)
		}
		if err != nil {
			return nil, err
		}
		if !found || a.AppID != id || !secretMatches(a, secret, now) {
			s.signInFailure(r, resource.ActorApplication, id) // audit.go
			return nil, oauthFail(401, "invalid_client", "The client id or secret is wrong, or the secret expired.")
		}
		return s.issue(r, resource.PrincipalApp, a.ID, "", "", false)
	case "password":
		name, pw := f.Get("username"), f.Get("password")
		if name == "" || pw == "" {
			return nil, oauthFail(400, "invalid_request", "username and password are required.")
		}
		if err := s.admitSignIn(r, name, now); err != nil {
			return nil, err
		}
		u, found, err := s.state.UserByName(name)
		if err == nil && (!found || u.UserPrincipalName != name && !strings.EqualFold(u.UserPrincipalName, name)) && s.lookAgain(r) {
			// A user created through another node a moment ago.
			u, found, err = s.state.UserByName(name)
		}
		if err != nil {
			return nil, err
		}
		wrong := oauthFail(400, "invalid_grant", "The user name or password is wrong.")
		if !found && s.noUsersYet() {
			return nil, errFirstAdminPending
		}
		if !found || u.UserPrincipalName != name && !strings.EqualFold(u.UserPrincipalName, name) {
			// Same cost as a real check, and through the same pool, so
			// unknown names are bounded like known ones.
			if err := s.hashes.CheckDecoy(r.Context(), pw); err != nil {
				return nil, hashingErr(err)
			}
			s.signInFailed(r, name, now)
			return nil, wrong
		}
		u, ok, err := s.checkUserPassword(r, u, pw)
		if err != nil {
			return nil, hashingErr(err)
		}
		if !ok {
			s.signInFailed(r, name, now)
			return nil, wrong
		}
		if !u.AccountEnabled {
			s.signInFailure(r, resource.ActorUser, name) // audit.go
			return nil, oauthFail(400, "invalid_grant", "The account is disabled.")
		}
		return s.issue(r, resource.PrincipalUser, u.ID, resource.NewSecret(16), "", true)
	case "refresh_token":
		rt := f.Get("refresh_token")
		if rt == "" {
			return nil, oauthFail(400, "invalid_request", "refresh_token is required.")
		}
		hash := credential.HashToken(rt)
		rec, found, err := s.state.Token(hash)
		if err == nil && !found && s.lookAgain(r) {
			// Rotated through another node a moment ago, perhaps.
			rec, found, err = s.state.Token(hash)
		}
		if err != nil {
			return nil, err
		}
		if !found {
			if err := unknownToken(r); err != nil { // consistency.go
				return nil, err
			}
		}
		if !found || rec.Kind != resource.TokenRefresh || !now.Before(rec.ExpiresAt.Time) {
			s.refreshRefused(r, rec) // audit.go
			return nil, oauthFail(400, "invalid_grant", "The refresh token is invalid, expired or already used.")
		}
		return s.issue(r, rec.PrincipalType, rec.PrincipalID, rec.Session, hash, true)
	case "":
		return nil, oauthFail(400, "invalid_request", "grant_type is required.")
	default:
		return nil, oauthFail(400, "unsupported_grant_type", "Use client_credentials, password or refresh_token.")
	}
}

func secretMatches(a *resource.ApplicationRecord, secret string, now time.Time) bool {
	h := credential.HashToken(secret)
	match := false
	for _, c := range a.Credentials {
		if subtle.ConstantTimeCompare([]byte(c.SecretHash), []byte(h)) == 1 && now.Before(c.EndDateTime.Time) {
			match = true
		}
	}
	return match
}

// refreshRate and refreshBurst bound one principal's refreshes on a node.
// Each is a Raft commit and leaves the access token it replaces valid until
// it expires, and the API's request limit does not reach the token
// endpoint: unbounded, one refresh token minted hundreds of live tokens a
// second (1.3 million live tokens an hour). A client refreshes about once
// an hour on each device; the bound leaves room for many devices and
// tests that refresh in a loop, and holds a script to a thirtieth of that.
const (
	refreshRate  = 10.0
	refreshBurst = 50
)

// tokenNow is the clock that tokens are issued, and refresh tokens judged,
// by: time.Now unless a test moves it (Options.TokenClock).
func (s *Server) tokenNow() time.Time {
	if s.opts.TokenClock != nil {
		return s.opts.TokenClock()
	}
	return time.Now()
}

// issue stores new tokens through Raft and returns them.
func (s *Server) issue(r *http.Request, ptype, pid, session, consume string, refresh bool) (*tokenResponse, error) {
	now := s.tokenNow()
	access := resource.NewSecret(32)
	cmd := &raft.Command{Op: raft.OpIssueTokens, Now: now.UnixNano(), ConsumeHash: consume,
		Tokens: []raft.TokenGrant{{Hash: credential.HashToken(access), Record: resource.TokenRecord{
			Kind: resource.TokenAccess, PrincipalType: ptype, PrincipalID: pid,
			ExpiresAt: resource.At(now.Add(AccessTokenTTL)), Session: session}}}}
	if session != "" {
		cmd.Client = clientInfo(r) // the session record's address and user agent
		s.sessionStarted(session)
	}
	// A refresh is not audited: the session's lastUsedDateTime shows it.
	if consume == "" && ptype == resource.PrincipalUser {
		cmd.Audit = s.signInAudit(r, pid) // audit.go
	}
	resp := &tokenResponse{TokenType: "Bearer", AccessToken: access, ExpiresIn: int(AccessTokenTTL / time.Second)}
	if refresh {
		resp.RefreshToken = resource.NewSecret(32)
		cmd.Tokens = append(cmd.Tokens, raft.TokenGrant{Hash: credential.HashToken(resp.RefreshToken),
			Record: resource.TokenRecord{Kind: resource.TokenRefresh, PrincipalType: ptype, PrincipalID: pid,
				ExpiresAt: resource.At(now.Add(RefreshTokenTTL)), Session: session}})
	}
	if consume != "" {
		if ok, wait := s.limits.allow("refresh:"+pid, refreshRate, refreshBurst, now); !ok {
			return nil, &retryAfter{resource.Errorf(resource.CodeRateLimited,
				"Too many token refreshes; retry after the time in Retry-After."), wait}
		}
	}
	if _, err := s.state.Propose(r.Context(), cmd); err != nil {
		var re *resource.Error
		if errors.As(err, &re) && (re.Code == "invalid_grant" || re.Code == "invalid_client") {
			if consume != "" {
				// Used up or revoked since it was looked up.
				s.refreshRefused(r, &resource.TokenRecord{PrincipalType: ptype, PrincipalID: pid}) // audit.go
			}
			status := 400
			if re.Code == "invalid_client" {
				status = 401
			}
			return nil, oauthFail(status, re.Code, re.Message)
		}
		return nil, err
	}
	if consume == "" && ptype == resource.PrincipalApp {
		s.appSignIn(r, pid) // audit.go: application sign-ins are counted per minute
	}
	return resp, nil
}
