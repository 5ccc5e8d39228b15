package httpapi

import (
	"net/http"
	"time"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// LocalHandler is what a node serves on the Unix socket in its data
// directory (node/local.go): a user's password reset without signing in,
// the way back in when the only admin's password is lost (its generated
// password scrolled out of the log, or the one person who knew it left).
// Reaching the socket is the authority: only the node's system user and
// root can (node/local.go), and they may also read, copy or replace the
// data directory itself, so it grants nothing they lack. `herald users reset-password` is its client.
func (s *Server) LocalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /local/resetPassword", s.wrap("local resetPassword", s.localResetPassword))
	mux.Handle("/", s.wrap("404", func(w http.ResponseWriter, r *http.Request) error {
		return resource.NotFound("resource")
	}))
	return mux
}

// LocalResetRequest and LocalResetAnswer are the local reset's body and
// answer. Password is optional: without one, a password is generated and
// answered once.
type LocalResetRequest struct {
	UserPrincipalName string `json:"userPrincipalName"`
	Password          string `json:"password,omitempty"`
}

type LocalResetAnswer struct {
	ID                string   `json:"id"`
	UserPrincipalName string   `json:"userPrincipalName"`
	AccountEnabled    bool     `json:"accountEnabled"`
	Roles             []string `json:"roles"`
	// Password is the generated password, when none was given.
	Password string `json:"password,omitempty"`
}

// localActor names the local socket in the audit log.
var localActor = resource.AuditActor{Type: resource.ActorSystem, Name: "local socket"}

func (s *Server) localResetPassword(w http.ResponseWriter, r *http.Request) error {
	var in LocalResetRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.UserPrincipalName == "" {
		return resource.Invalid("userPrincipalName", "userPrincipalName names the user whose password is reset.")
	}
	u, found, err := s.state.UserByName(in.UserPrincipalName)
	if err == nil && !found && s.lookAgain(r) { // this node may be behind (consistency.go)
		u, found, err = s.state.UserByName(in.UserPrincipalName)
	}
	if err != nil {
		return err
	}
	if !found {
		return resource.NotFound("user")
	}
	pw, generated := in.Password, in.Password == ""
	if generated {
		pw = resource.NewSecret(15)
	}
	if err := resource.ValidatePassword(pw); err != nil {
		return err
	}
	h, err := s.hashes.Hash(r.Context(), pw)
	if err != nil {
		return hashingErr(err)
	}
	rec := s.record(r, localActor, actUserPassword, u.UserPrincipalName,
		"through the node's local socket; every session of the user ended")
	rec.ClientAddress = "local"
	v, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpUpdateUser, Now: time.Now().UnixNano(),
		UserID: u.ID, UserPatch: &raft.UserPatch{PasswordHash: &h}, Audit: []resource.AuditRecord{rec}})
	if err != nil {
		return err
	}
	s.waitReplicated(r) // the old password and sessions fail at once on every node
	now := u.User
	if after, ok := v.(resource.User); ok { // as the reset left it
		now = after
	}
	out := LocalResetAnswer{ID: now.ID, UserPrincipalName: now.UserPrincipalName, AccountEnabled: now.AccountEnabled, Roles: now.Roles}
	if generated {
		out.Password = pw
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
