package httpapi

// Sign-in for the web UI with a session cookie.
//
// The UI runs in a browser, where a bearer token kept by script would be
// readable by any script injected into the page. So the UI signs in here
// instead: the access token goes into an HttpOnly cookie that script cannot
// read, and authenticate accepts that cookie wherever it accepts a bearer
// token (the REST API and the live stream).
//
// A cookie is ambient: the browser attaches it to requests that other sites
// make it send. Three things stop that from being abused:
//   - SameSite=Strict keeps the cookie off requests that start on another
//     site.
//   - A request authenticated by the cookie is refused when the browser says
//     it came from another origin (Sec-Fetch-Site, or Origin when that header
//     is missing), which covers WebSocket upgrades too.
//   - Every state-changing request authenticated by the cookie must carry
//     X-CSRF-Token. Its value is derived from the sign-in session's id, which
//     only the server knows, and the page learns it from the JSON answers of
//     /ui/session. Another origin can neither read those answers nor compute
//     the value. Because it is tied to the session rather than to one access
//     token, it stays the same across token refreshes, so several tabs of one
//     sign-in keep working while one of them refreshes.
//
// Requests with an Authorization header never look at the cookie, so API
// clients need no CSRF token.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/herald-notify/herald/credential"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

const (
	// sessionCookie holds the session's access token; sent on every path.
	sessionCookie = "herald_session"
	// refreshCookie holds the refresh token; sent only to /ui/session, so
	// it never travels with ordinary API requests.
	refreshCookie = "herald_refresh"
	refreshPath   = "/ui/session"
	csrfHeader    = "X-CSRF-Token"
)

// uiRoutes registers the web UI's own endpoints: the session, and the admin
// read models the console needs beyond the contract (adminviews.go).
func (s *Server) uiRoutes(rt *router) {
	s.handleRoot("GET /ui/session", "ui-session", s.getSession)
	s.handleRoot("POST /ui/session", "ui-session", s.signIn)
	s.handleRoot("DELETE /ui/session", "ui-session", s.signOut)
	s.handleRoot("POST /ui/session/refresh", "ui-session-refresh", s.refreshSession)
	s.adminViewRoutes(rt)
}

// sessionToken is the access token in the session cookie of a request that
// has no bearer token, or "" when there is no cookie. It refuses requests
// from other origins, and state-changing requests without the session's
// CSRF token. A token it passes on is still checked by authenticate.
func (s *Server) sessionToken(r *http.Request) (string, error) {
	v, planted := cookieOnce(r, sessionCookie)
	if planted {
		return "", errPlanted
	}
	if v == "" {
		return "", nil
	}
	if s.crossOrigin(r) {
		return "", denied("The session cookie is not accepted on requests from another site.")
	}
	if safeMethod(r.Method) {
		return v, nil
	}
	rec, ok, err := s.state.Token(credential.HashToken(v))
	if err == nil && !ok && s.lookAgain(r) { // consistency.go
		rec, ok, err = s.state.Token(credential.HashToken(v))
	}
	if err != nil {
		return "", err
	}
	// An unknown token gets the 401 that tells the page to refresh or sign
	// in again (a CSRF error would not); it must not go on to authenticate,
	// which could find it on a second look and skip the CSRF check.
	if !ok {
		if err := unknownToken(r); err != nil { // consistency.go
			return "", err
		}
		return "", unauthenticated("The access token is unknown or expired.")
	}
	if !validCSRF(r.Header.Get(csrfHeader), rec.Session) {
		return "", denied("The request lacks the page's X-CSRF-Token; reload the page and try again.")
	}
	return v, nil
}

// cookieOnce is the value of the request's cookie name ("" without one),
// and whether it came more than once. Herald sets each of its cookies
// once, host-only, at one path; a second one of the same name was set by
// someone else (another port of the host, a sibling subdomain, a plain
// HTTP answer), with a longer path so that the browser sends it first.
// Taking either could act as the planter's account, so neither is taken.
func cookieOnce(r *http.Request, name string) (value string, planted bool) {
	cs := r.CookiesNamed(name)
	if len(cs) > 1 {
		return "", true
	}
	if len(cs) == 0 {
		return "", false
	}
	return cs[0].Value, false
}

// errPlanted is a 403, not a 401: a refresh would not cure it, and the
// pages show a 403's words rather than refresh and retry for ever.
var errPlanted = denied("The browser sent two Herald cookies of one name, one of them set by another site; " +
	"clear this site's cookies in the browser and sign in again.")

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// csrfToken is the CSRF token of a sign-in session: a one-way function of
// the session id, so showing it to the page reveals nothing else.
func csrfToken(session string) string {
	sum := sha256.Sum256([]byte("herald-ui-csrf\x00" + session))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func validCSRF(got, session string) bool {
	if got == "" || session == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(csrfToken(session))) == 1
}

// crossOrigin reports whether a browser marked the request as started by
// another origin. Fetch metadata is the browser's own statement; Origin is
// the fallback for browsers or requests without it.
func (s *Server) crossOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none": // "none": the user opened the URL directly
		return false
	case "cross-site", "same-site":
		return true
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false // not sent on same-origin GETs by older browsers
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return true
	}
	if strings.EqualFold(u.Host, r.Host) {
		return false
	}
	if pu, err := url.Parse(s.opts.PublicURL); err == nil && pu.Host != "" && strings.EqualFold(u.Host, pu.Host) {
		return false
	}
	return true
}

// sessionInfo is the answer of GET, POST /ui/session and of a refresh.
type sessionInfo struct {
	User      resource.User `json:"user"`
	CSRFToken string        `json:"csrfToken"`
	// ExpiresIn is the access token's lifetime in seconds; the page
	// refreshes before then.
	ExpiresIn int `json:"expiresIn"`
}

type signInInput struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// signIn is POST /ui/session with a user name and password, as JSON or as
// a form. It sets the session cookies and answers the user and CSRF token.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) error {
	// A sign-in started by another site would sign the victim's browser
	// into the attacker's account (login CSRF).
	if s.crossOrigin(r) {
		return denied("Sign in from Herald's own sign-in page.")
	}
	var in signInInput
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/x-www-form-urlencoded" {
		// Decoded as every body is (Content-Encoding; 413 over the limit).
		body, err := decodedBody(r)
		if err != nil {
			return err
		}
		f, err := url.ParseQuery(string(body))
		if err != nil {
			return resource.Errorf(resource.CodeInvalidRequest, "The sign-in form could not be read.")
		}
		in.Username, in.Password = f.Get("username"), f.Get("password")
	} else if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Username == "" || in.Password == "" {
		return resource.Invalid("username", "Enter a user name and a password.")
	}
	u, err := s.checkPassword(r, in.Username, in.Password, time.Now())
	if err != nil {
		return err
	}
	session := resource.NewSecret(16)
	tr, err := s.issue(r, resource.PrincipalUser, u.ID, session, "", true)
	if err != nil {
		return oauthAsGraph(err)
	}
	s.setSessionCookies(w, r, tr)
	writeJSON(w, http.StatusOK, sessionInfo{User: u.User, CSRFToken: csrfToken(session), ExpiresIn: tr.ExpiresIn})
	return nil
}

// checkPassword applies the password grant's rules (throttling, equal cost
// for unknown users, disabled accounts refused) with answers in the API's
// error shape.
func (s *Server) checkPassword(r *http.Request, name, pw string, now time.Time) (*resource.UserRecord, error) {
	if err := s.admitSignIn(r, name, now); err != nil {
		return nil, err
	}
	wrong := unauthenticated("The user name or password is wrong.")
	u, found, err := s.state.UserByName(name)
	if err == nil && (!found || !strings.EqualFold(u.UserPrincipalName, name)) && s.lookAgain(r) { // consistency.go
		u, found, err = s.state.UserByName(name)
	}
	if err != nil {
		return nil, err
	}
	if !found && s.noUsersYet() {
		return nil, errFirstAdminPending
	}
	var ok bool
	if found && strings.EqualFold(u.UserPrincipalName, name) {
		u, ok, err = s.checkUserPassword(r, u, pw)
	} else {
		// Same cost as a real check, through the same pool.
		found, err = false, s.hashes.CheckDecoy(r.Context(), pw)
	}
	if err != nil {
		return nil, hashingErr(err)
	}
	if !found || !ok {
		s.signInFailed(r, name, now)
		return nil, wrong
	}
	if !u.AccountEnabled {
		s.signInFailure(r, resource.ActorUser, name) // audit.go
		return nil, unauthenticated("This account is disabled; ask an admin to enable it.")
	}
	return u, nil
}

// errFirstAdminPending answers a sign-in on a node that holds no user yet:
// a cluster that has just formed creates its first admin a moment later,
// and the admin's right password must not be called wrong meanwhile.
var errFirstAdminPending = unavailable("This node holds no users yet: a new cluster creates its first admin a moment after it forms, "+
	"and a node that has just joined catches up. Retry after the time in Retry-After.", time.Second)

// noUsersYet reports whether this node's state holds no user at all.
func (s *Server) noUsersYet() bool {
	p, err := s.state.ListUsers("", 1)
	return err == nil && len(p.Items) == 0
}

// checkUserPassword checks pw against u's password hash. On a mismatch it
// looks the user up again (consistency.go) and checks once more if the
// hash changed: the password may have been changed through another node
// a moment ago. Looking again also gives a known name's wrong password the
// round trip an unknown name's costs on a follower, which would otherwise
// tell the two apart. It returns the user as checked.
func (s *Server) checkUserPassword(r *http.Request, u *resource.UserRecord, pw string) (*resource.UserRecord, bool, error) {
	ok, err := s.hashes.Check(r.Context(), u.PasswordHash, pw)
	if err != nil || ok || !s.lookAgain(r) {
		return u, ok, err
	}
	fresh, found, err := s.state.User(u.ID)
	if err != nil || !found || fresh.PasswordHash == u.PasswordHash {
		return u, false, err
	}
	ok, err = s.hashes.Check(r.Context(), fresh.PasswordHash, pw)
	return fresh, ok, err
}

// Sign-in throttling. In a cluster the leader's counters are the
// cluster's (Options.SignInLimits, cluster/signin.go); a node's own
// counters also filter what it asks the leader about.
const (
	// Every attempt on one account from one address: a guesser at one
	// account is slowed without locking its owner out elsewhere.
	loginPairRate, loginPairBurst = 2, 10
	// Failures from one address, whatever the names: an address that
	// sprays many names is slowed, while a shared office address whose
	// users mostly type their passwords right is not.
	loginAddrRate, loginAddrBurst = 1, 20
	// Failures on one account from all addresses: a bound on guessing
	// spread over many addresses, loose enough that one address (at most
	// loginAddrRate failures a second) cannot lock the account.
	loginUserRate, loginUserBurst = 10, 50
)

// admitSignIn refuses a password sign-in with 429 and Retry-After when the
// caller's address or the account has failed too often, or the pair of them
// is tried too often, by this node's counters or the cluster's. It runs
// before the hash, so a refused attempt costs nothing. A follower that
// cannot ask the leader refuses with 503: without a leader no token could
// be issued anyway, and the hash would still tell a guesser whether the
// password was right.
func (s *Server) admitSignIn(r *http.Request, name string, now time.Time) error {
	addr, user := clientAddr(r), strings.ToLower(name)
	wait := s.SignInCounters(addr, user, false, now)
	if wait == 0 && s.opts.SignInLimits != nil {
		w, here, err := s.opts.SignInLimits(r.Context(), addr, user, false)
		if err != nil {
			return unavailable("Sign-in is unavailable while this node cannot reach the cluster's leader; retry after the time in Retry-After.", time.Second)
		}
		if !here {
			wait = w
		}
	}
	if wait == 0 {
		return nil
	}
	return &retryAfter{resource.Errorf(resource.CodeRateLimited, "Too many sign-in attempts; wait a moment and try again."), wait}
}

// signInFailed counts a wrong user name or password against the address
// and the account, here and in the cluster's counters. The client may have
// gone meanwhile; the failure counts all the same.
func (s *Server) signInFailed(r *http.Request, name string, now time.Time) {
	addr, user := clientAddr(r), strings.ToLower(name)
	s.SignInCounters(addr, user, true, now)
	s.signInFailure(r, resource.ActorUser, name) // audit.go
	if s.opts.SignInLimits != nil {
		// An error is the cluster's to log; the next attempt through this
		// node is refused until the leader answers again.
		s.opts.SignInLimits(context.WithoutCancel(r.Context()), addr, user, true)
	}
}

// SignInCounters applies one sign-in attempt to this node's counters: with
// failed, it counts a failure against the address and the account; else it
// says how long an attempt must wait (0: go ahead, and it is counted
// against the pair). The leader answers its followers with it.
func (s *Server) SignInCounters(addr, user string, failed bool, now time.Time) time.Duration {
	if s.opts.SignInClock != nil {
		now = s.opts.SignInClock()
	}
	if failed {
		s.limits.charge("login:addr:"+addr, loginAddrRate, loginAddrBurst, now)
		s.limits.charge("login:user:"+user, loginUserRate, loginUserBurst, now)
		return 0
	}
	wait := max(s.limits.waitFor("login:addr:"+addr, loginAddrRate, now),
		s.limits.waitFor("login:user:"+user, loginUserRate, now))
	if wait > 0 {
		return wait
	}
	_, wait = s.limits.allow("login:pair:"+user+"\x00"+addr, loginPairRate, loginPairBurst, now)
	return wait
}

// hashingErr answers a password check the pool would not take: 503 at
// once, never a wait that grows with the load.
func hashingErr(err error) error {
	if errors.Is(err, credential.ErrBusy) {
		return unavailable("Too many sign-ins are being checked right now; retry after the time in Retry-After.", time.Second)
	}
	return err
}

// oauthAsGraph turns issue's RFC 6749 errors into the API's error shape.
func oauthAsGraph(err error) error {
	var oe *oauthError
	if errors.As(err, &oe) {
		return unauthenticated(oe.Desc)
	}
	return err
}

// getSession is GET /ui/session: who the cookie signs in, and the CSRF
// token, for a page that was reloaded. Being signed out is an answer, not an
// error: without a live session it answers 200 {"user":null}, with
// "refreshable" telling the page whether POST /ui/session/refresh would
// work, so a signed-out page load makes no failing request at all.
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if _, err := r.Cookie(sessionCookie); err != nil {
		return s.signedOut(w, r)
	}
	p, err := s.authenticate(r, false)
	if isUnauthenticated(err) {
		return s.signedOut(w, r)
	}
	if err != nil {
		return err
	}
	if p.user == nil || p.session == "" {
		return s.signedOut(w, r)
	}
	rec, _, err := s.state.Token(credential.HashToken(mustCookie(r, sessionCookie)))
	if err != nil {
		return err
	}
	left := AccessTokenTTL
	if rec != nil {
		left = time.Until(rec.ExpiresAt.Time)
	}
	writeJSON(w, http.StatusOK, sessionInfo{User: p.user.User, CSRFToken: csrfToken(p.session), ExpiresIn: int(left / time.Second)})
	return nil
}

// signedOut answers GET /ui/session for a browser without a live access
// token. It only reads the refresh token (a GET must not rotate it).
func (s *Server) signedOut(w http.ResponseWriter, r *http.Request) error {
	refreshable := false
	rt, planted := cookieOnce(r, refreshCookie)
	if planted && !s.crossOrigin(r) {
		// As the refresh would be: "not refreshable" had the page show its
		// sign-in form, without a word, at every load once the access
		// cookie expired, and each new sign-in lasted only that long.
		return errPlanted
	}
	if rt != "" && !s.crossOrigin(r) {
		hash := credential.HashToken(rt)
		rec, ok, err := s.state.Token(hash)
		if err == nil && !ok && s.lookAgain(r) { // consistency.go
			rec, ok, err = s.state.Token(hash)
		}
		if err != nil {
			return err
		}
		if !ok {
			if err := unknownToken(r); err != nil { // consistency.go
				return err
			}
		}
		refreshable = ok && rec.Kind == resource.TokenRefresh && rec.PrincipalType == resource.PrincipalUser &&
			s.tokenNow().Before(rec.ExpiresAt.Time)
	}
	writeJSON(w, http.StatusOK, signedOutInfo{Refreshable: refreshable})
	return nil
}

// signedOutInfo is GET /ui/session's answer without a session.
type signedOutInfo struct {
	User        *resource.User `json:"user"`
	Refreshable bool           `json:"refreshable"`
}

func mustCookie(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// refreshSession is POST /ui/session/refresh: it rotates the refresh token
// in its cookie and sets a new access token. It needs no CSRF token: the
// refresh cookie goes only to this path, other sites cannot make the
// browser send it (SameSite, and the origin check), and the new tokens land
// in cookies the caller cannot read, so a forged refresh gains nothing.
func (s *Server) refreshSession(w http.ResponseWriter, r *http.Request) error {
	if s.crossOrigin(r) {
		return denied("The session cannot be refreshed from another site.")
	}
	rt, planted := cookieOnce(r, refreshCookie)
	if planted {
		// Clearing Herald's own cookies would leave the planted one.
		return errPlanted
	}
	if rt == "" {
		return unauthenticated("Not signed in.")
	}
	hash := credential.HashToken(rt)
	rec, ok, err := s.state.Token(hash)
	if err == nil && !ok && s.lookAgain(r) { // consistency.go
		rec, ok, err = s.state.Token(hash)
	}
	if err != nil {
		return err
	}
	if !ok {
		// Cookies kept: the session may live on a node further ahead.
		if err := unknownToken(r); err != nil { // consistency.go
			return err
		}
	}
	if !ok || rec.Kind != resource.TokenRefresh || rec.PrincipalType != resource.PrincipalUser ||
		!s.tokenNow().Before(rec.ExpiresAt.Time) {
		s.refreshRefused(r, rec) // audit.go
		s.clearSessionCookies(w, r)
		return unauthenticated("The session ended; sign in again.")
	}
	u, ok, err := s.state.User(rec.PrincipalID)
	if err != nil {
		return err
	}
	if !ok || !u.AccountEnabled {
		s.refreshRefused(r, rec) // audit.go
		s.clearSessionCookies(w, r)
		return unauthenticated("This account no longer exists or is disabled.")
	}
	tr, err := s.issue(r, resource.PrincipalUser, u.ID, rec.Session, hash, true)
	if err != nil {
		return oauthAsGraph(err)
	}
	s.setSessionCookies(w, r, tr)
	writeJSON(w, http.StatusOK, sessionInfo{User: u.User, CSRFToken: csrfToken(rec.Session), ExpiresIn: tr.ExpiresIn})
	return nil
}

// signOut is DELETE /ui/session: it revokes every token of the session (on
// all nodes, through Raft) and clears the cookies. It needs the CSRF token,
// so another site cannot sign the user out.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) error {
	if s.crossOrigin(r) {
		return denied("Sign out from Herald's own pages.")
	}
	// The access token may have expired while the refresh token still
	// works; either one names the session to end. Of cookies planted
	// beside them (cookieOnce), the page's CSRF token picks its own.
	var rec *resource.TokenRecord
	some := false
	for _, c := range append(r.CookiesNamed(sessionCookie), r.CookiesNamed(refreshCookie)...) {
		if c.Value == "" {
			continue
		}
		found, ok, err := s.state.Token(credential.HashToken(c.Value))
		if err != nil {
			return err
		}
		if ok && found.Session != "" {
			some = true
			if validCSRF(r.Header.Get(csrfHeader), found.Session) {
				rec = found
				break
			}
		}
	}
	if some && rec == nil {
		return denied("The request lacks the page's X-CSRF-Token; reload the page and try again.")
	}
	if rec != nil {
		actor := resource.AuditActor{Type: resource.ActorUser, ID: rec.PrincipalID}
		if u, ok, _ := s.state.User(rec.PrincipalID); ok {
			actor.Name = u.UserPrincipalName
		}
		sid := resource.SessionID(rec.Session)
		if _, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpRevokeSession, Now: time.Now().UnixNano(),
			UserID: rec.PrincipalID, Session: rec.Session,
			Audit: []resource.AuditRecord{s.record(r, actor, actSignOut, "session "+sid+" of "+actor.Name, "web UI")}}); err != nil {
			return err
		}
		s.waitReplicated(r) // sessions.go
	}
	s.clearSessionCookies(w, r)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// secureCookies: over TLS, or behind a proxy whose public URL is https.
func (s *Server) secureCookies(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(strings.ToLower(s.opts.PublicURL), "https://")
}

func (s *Server) setSessionCookies(w http.ResponseWriter, r *http.Request, tr *tokenResponse) {
	secure := s.secureCookies(r)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: tr.AccessToken, Path: "/",
		MaxAge: tr.ExpiresIn, HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: refreshCookie, Value: tr.RefreshToken, Path: refreshPath,
		MaxAge: int(RefreshTokenTTL / time.Second), HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
}

func (s *Server) clearSessionCookies(w http.ResponseWriter, r *http.Request) {
	secure := s.secureCookies(r)
	for _, c := range []struct{ name, path string }{{sessionCookie, "/"}, {refreshCookie, refreshPath}} {
		http.SetCookie(w, &http.Cookie{Name: c.name, Value: "", Path: c.path, MaxAge: -1,
			HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
	}
}
