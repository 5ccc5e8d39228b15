package httpapi

// Sessions (API.md §2): the tokens of one sign-in, listed and revoked by
// their user and by an admin. A session is shown by a public id derived
// from its key, never by the key or a token.

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// maxSessionsListed bounds a session list: the most recently used ones.
const maxSessionsListed = 1000

// revokeWait bounds how long a revocation waits for the other nodes to
// apply it before it answers.
const revokeWait = 2 * time.Second

func (s *Server) securityRoutes(rt *router) {
	rt.handle("GET", "/me/sessions", s.userOnly(s.listMySessions))
	rt.handle("GET", "/me/sessions/{sid}", s.userOnly(s.getMySession))
	rt.handle("DELETE", "/me/sessions/{sid}", s.userOnly(s.revokeMySession))
	rt.handle("GET", "/users/{id}/sessions", s.adminOnly(s.listUserSessions))
	rt.handle("GET", "/users/{id}/sessions/{sid}", s.adminOnly(s.getUserSession))
	rt.handle("DELETE", "/users/{id}/sessions/{sid}", s.adminOnly(s.revokeUserSession))
	rt.handle("GET", "/admin/auditLog", s.adminOnly(s.auditLog))
}

// sessionViews are a user's sessions, most recently used first; current
// marks the caller's own.
func (s *Server) sessionViews(uid, current string) ([]resource.Session, error) {
	recs, err := s.state.Sessions(uid)
	if err != nil {
		return nil, err
	}
	out := make([]resource.Session, 0, len(recs))
	for _, rec := range recs {
		v := rec.Session
		v.Current = current != "" && rec.Key == current
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b resource.Session) int {
		if c := b.LastUsedDateTime.Compare(a.LastUsedDateTime.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out[:min(len(out), maxSessionsListed)], nil
}

func (s *Server) listMySessions(w http.ResponseWriter, r *http.Request, p *principal) error {
	return s.writeSessions(w, r, p.user.ID, p.session)
}

func (s *Server) listUserSessions(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	return s.writeSessions(w, r, u.ID, p.session)
}

func (s *Server) writeSessions(w http.ResponseWriter, r *http.Request, uid, current string) error {
	v, err := s.sessionViews(uid, current)
	if err != nil {
		return err
	}
	// The caller's own session missing: it began through another node a
	// moment ago (consistency.go).
	mine := slices.ContainsFunc(v, func(x resource.Session) bool { return x.Current })
	if current != "" && !mine && r.PathValue("id") == "" && s.lookAgain(r) {
		if v, err = s.sessionViews(uid, current); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, collection{Value: v})
	return nil
}

// findSession finds one of a user's sessions by its public id, looking
// again after a read barrier before it says 404 (consistency.go).
func (s *Server) findSession(r *http.Request, uid, current string) (*resource.Session, error) {
	sid := r.PathValue("sid")
	for {
		v, err := s.sessionViews(uid, current)
		if err != nil {
			return nil, err
		}
		if i := slices.IndexFunc(v, func(x resource.Session) bool { return x.ID == sid }); i >= 0 {
			return &v[i], nil
		}
		if !s.lookAgain(r) {
			return nil, resource.NotFound("session")
		}
	}
}

func (s *Server) getMySession(w http.ResponseWriter, r *http.Request, p *principal) error {
	v, err := s.findSession(r, p.user.ID, p.session)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) getUserSession(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	v, err := s.findSession(r, u.ID, p.session)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) revokeMySession(w http.ResponseWriter, r *http.Request, p *principal) error {
	return s.revokeSessionOf(w, r, p, &p.user.User)
}

func (s *Server) revokeUserSession(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	return s.revokeSessionOf(w, r, p, &u.User)
}

// revokeSessionOf ends one session of u: its access and refresh tokens are
// deleted through Raft, and the answer waits until the other nodes have
// applied that, so the tokens fail at once wherever they are tried.
func (s *Server) revokeSessionOf(w http.ResponseWriter, r *http.Request, p *principal, u *resource.User) error {
	v, err := s.findSession(r, u.ID, p.session)
	if err != nil {
		return err
	}
	detail := "signed in " + v.CreatedDateTime.String() + " from " + v.ClientAddress
	if v.UserAgent != "" {
		detail += " (" + v.UserAgent + ")"
	}
	if _, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpRevokeSession, Now: time.Now().UnixNano(),
		UserID: u.ID, ID: v.ID,
		Audit: s.audit(r, p, actSessionRevoke, "session "+v.ID+" of "+u.UserPrincipalName, detail)}); err != nil {
		return err
	}
	s.waitReplicated(r)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// waitReplicated holds a revocation's answer until every node that answers
// has applied it, for at most revokeWait.
func (s *Server) waitReplicated(r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), revokeWait)
	defer cancel()
	if err := s.state.WaitReplicated(ctx); err != nil {
		s.log.Warn("a revocation was not applied on every node in time", "wait", revokeWait, "error", err)
	}
}
