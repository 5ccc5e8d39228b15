package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/herald-notify/herald/credential"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

type userInput struct {
	UserPrincipalName string   `json:"userPrincipalName"`
	DisplayName       string   `json:"displayName"`
	Password          string   `json:"password"`
	Roles             []string `json:"roles"`
	AccountEnabled    *bool    `json:"accountEnabled"`
}

// NewUserRecord validates a new user and hashes its password. The node uses
// it for the bootstrap admin too.
func NewUserRecord(upn, displayName, password string, roles []string, enabled bool, now time.Time) (*resource.UserRecord, error) {
	if err := resource.ValidateUPN(upn); err != nil {
		return nil, err
	}
	if err := resource.ValidateDisplayName(displayName, false); err != nil {
		return nil, err
	}
	if err := resource.ValidatePassword(password); err != nil {
		return nil, err
	}
	roles, verr := resource.ValidateRoles(roles)
	if verr != nil {
		return nil, verr
	}
	if displayName == "" {
		displayName = upn
	}
	return &resource.UserRecord{User: resource.User{ID: resource.NewGUID(), UserPrincipalName: upn,
		DisplayName: displayName, Roles: roles, AccountEnabled: enabled, CreatedDateTime: resource.At(now)},
		PasswordHash: credential.HashPassword(password)}, nil
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in userInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	enabled := in.AccountEnabled == nil || *in.AccountEnabled
	now := time.Now()
	var rec *resource.UserRecord
	var err error
	if perr := s.hashes.Do(r.Context(), func() {
		rec, err = NewUserRecord(in.UserPrincipalName, in.DisplayName, in.Password, in.Roles, enabled, now)
	}); perr != nil {
		return hashingErr(perr)
	}
	if err != nil {
		return err
	}
	v, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpCreateUser, Now: now.UnixNano(), User: rec,
		Audit: s.audit(r, p, actUserCreate, clip(rec.UserPrincipalName), fmt.Sprintf("roles %s, accountEnabled %t", strings.Join(rec.Roles, ","), rec.AccountEnabled))})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1.0/users/"+rec.ID)
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (s *Server) lookupUser(r *http.Request) (*resource.UserRecord, error) {
	u, ok, err := s.state.UserByName(r.PathValue("id"))
	if err == nil && !ok && s.lookAgain(r) { // consistency.go
		u, ok, err = s.state.UserByName(r.PathValue("id"))
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, resource.NotFound("user")
	}
	return u, nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, p *principal) error {
	return writePage(s, w, r, s.state.ListUsers, func(u *resource.UserRecord) resource.User { return u.User })
}

func views[T, V any](items []T, view func(*T) V) []V {
	out := make([]V, 0, len(items))
	for i := range items {
		out = append(out, view(&items[i]))
	}
	return out
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u.User)
	return nil
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, p *principal) error {
	writeJSON(w, http.StatusOK, p.user.User)
	return nil
}

type userPatchInput struct {
	DisplayName    *string  `json:"displayName"`
	Password       *string  `json:"password"`
	Roles          []string `json:"roles"`
	AccountEnabled *bool    `json:"accountEnabled"`
}

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	var in userPatchInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	patch := &raft.UserPatch{DisplayName: in.DisplayName, AccountEnabled: in.AccountEnabled}
	if in.DisplayName != nil {
		if err := resource.ValidateDisplayName(*in.DisplayName, true); err != nil {
			return err
		}
	}
	if in.Password != nil {
		if err := resource.ValidatePassword(*in.Password); err != nil {
			return err
		}
		h, err := s.hashes.Hash(r.Context(), *in.Password)
		if err != nil {
			return hashingErr(err)
		}
		patch.PasswordHash = &h
	}
	if in.Roles != nil {
		if len(in.Roles) == 0 {
			return resource.Invalid("roles", "roles must name at least one role.")
		}
		roles, verr := resource.ValidateRoles(in.Roles)
		if verr != nil {
			return verr
		}
		patch.Roles = roles
	}
	if u.ID == p.user.ID && ((in.AccountEnabled != nil && !*in.AccountEnabled) ||
		(patch.Roles != nil && !(&resource.User{Roles: patch.Roles}).IsAdmin())) {
		return denied("Admins cannot disable themselves or drop their own admin role.")
	}
	v, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpUpdateUser, Now: time.Now().UnixNano(),
		UserID: u.ID, UserPatch: patch, Audit: s.userPatchAudit(r, p, u, patch)})
	if err != nil {
		return err
	}
	if patch.PasswordHash != nil || (patch.AccountEnabled != nil && !*patch.AccountEnabled) {
		s.waitReplicated(r) // sessions.go: the user's tokens fail at once on every node
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	if u.ID == p.user.ID {
		return denied("Admins cannot delete themselves.")
	}
	if _, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpDeleteUser, Now: time.Now().UnixNano(), UserID: u.ID,
		Audit: s.audit(r, p, actUserDelete, u.UserPrincipalName, "")}); err != nil {
		return err
	}
	s.waitReplicated(r)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// userPatchAudit is one record per kind of change a PATCH makes: role
// changes, password resets and enabling or disabling stand out in the log.
func (s *Server) userPatchAudit(r *http.Request, p *principal, u *resource.UserRecord, patch *raft.UserPatch) []resource.AuditRecord {
	var out []resource.AuditRecord
	add := func(action, detail string) {
		out = append(out, s.record(r, actorOf(p), action, u.UserPrincipalName, detail))
	}
	if patch.Roles != nil && !slices.Equal(patch.Roles, u.Roles) {
		add(actUserRoles, "roles "+strings.Join(u.Roles, ",")+" → "+strings.Join(patch.Roles, ","))
	}
	if patch.PasswordHash != nil {
		add(actUserPassword, "every session of the user ended")
	}
	if patch.AccountEnabled != nil && *patch.AccountEnabled != u.AccountEnabled {
		if *patch.AccountEnabled {
			add(actUserEnable, "")
		} else {
			add(actUserDisable, "every session of the user ended")
		}
	}
	if patch.DisplayName != nil && *patch.DisplayName != u.DisplayName {
		add(actUserUpdate, fmt.Sprintf("displayName %q → %q", u.DisplayName, *patch.DisplayName))
	}
	if out == nil {
		add(actUserUpdate, "no change")
	}
	return out
}
