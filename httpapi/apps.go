package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/herald-notify/herald/credential"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// SecretTTL is how long a client secret is valid, as Graph's default.
const SecretTTL = 2 * 365 * 24 * time.Hour

type appInput struct {
	DisplayName    string `json:"displayName"`
	TargetHostName string `json:"targetHostName"`
}

type passwordInput struct {
	DisplayName string         `json:"displayName"`
	EndDateTime *resource.Time `json:"endDateTime"`
}

// newCredential makes a client secret; the caller shows SecretText once.
func newCredential(name string, end *resource.Time, now time.Time) (*resource.CredentialRecord, error) {
	if len(name) > 256 {
		return nil, resource.Invalid("displayName", "displayName must have at most 256 characters.")
	}
	exp := resource.At(now.Add(SecretTTL))
	if end != nil && !end.IsZero() {
		if !end.After(now) {
			return nil, resource.Invalid("endDateTime", "endDateTime must be in the future.")
		}
		exp = *end
	}
	secret := "hs_" + resource.NewSecret(30)
	return &resource.CredentialRecord{PasswordCredential: resource.PasswordCredential{
		KeyID: resource.NewGUID(), DisplayName: name, Hint: secret[:6], SecretText: secret,
		StartDateTime: resource.At(now), EndDateTime: exp}, SecretHash: credential.HashToken(secret)}, nil
}

func (s *Server) createApp(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in appInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if err := resource.ValidateDisplayName(in.DisplayName, true); err != nil {
		return err
	}
	if err := resource.ValidateHostName("targetHostName", in.TargetHostName); err != nil {
		return err
	}
	now := time.Now()
	cred, err := newCredential("default", nil, now)
	if err != nil {
		return err
	}
	secret := cred.SecretText
	cred.SecretText = ""
	app := &resource.ApplicationRecord{ID: resource.NewGUID(), AppID: resource.NewGUID(), DisplayName: in.DisplayName,
		TargetHostName: in.TargetHostName, CreatedDateTime: resource.At(now), Credentials: []resource.CredentialRecord{*cred}}
	if _, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpCreateApp, Now: now.UnixNano(), App: app,
		Audit: s.audit(r, p, actAppCreate, appTarget(app), "with one client secret, keyId "+cred.KeyID)}); err != nil {
		return err
	}
	view := app.View()
	view.PasswordCredentials[0].SecretText = secret
	w.Header().Set("Location", "/v1.0/applications/"+app.ID)
	writeJSON(w, http.StatusCreated, view)
	return nil
}

func (s *Server) lookupApp(r *http.Request) (*resource.ApplicationRecord, error) {
	a, ok, err := s.state.AppBy(r.PathValue("id"))
	if err == nil && !ok && s.lookAgain(r) { // consistency.go
		a, ok, err = s.state.AppBy(r.PathValue("id"))
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, resource.NotFound("application")
	}
	return a, nil
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request, p *principal) error {
	return writePage(s, w, r, s.state.ListApps, (*resource.ApplicationRecord).View)
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request, p *principal) error {
	a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.View())
	return nil
}

type appPatchInput struct {
	DisplayName    *string `json:"displayName"`
	TargetHostName *string `json:"targetHostName"`
}

func (s *Server) patchApp(w http.ResponseWriter, r *http.Request, p *principal) error {
	a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var in appPatchInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.TargetHostName != nil && *in.TargetHostName != a.TargetHostName {
		// Subscriptions and sent notifications are bound to the host name.
		return resource.Invalid("targetHostName", "targetHostName cannot be changed; register a new application instead.")
	}
	patch := &resource.ApplicationRecord{}
	if in.DisplayName != nil {
		if err := resource.ValidateDisplayName(*in.DisplayName, true); err != nil {
			return err
		}
		patch.DisplayName = *in.DisplayName
	}
	v, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpUpdateApp, Now: time.Now().UnixNano(), AppID: a.ID, App: patch,
		Audit: s.audit(r, p, actAppUpdate, appTarget(a), appPatchDetail(a, patch))})
	if err != nil {
		return err
	}
	rec := v.(resource.ApplicationRecord)
	writeJSON(w, http.StatusOK, rec.View())
	return nil
}

func (s *Server) deleteApp(w http.ResponseWriter, r *http.Request, p *principal) error {
	a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	if _, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpDeleteApp, Now: time.Now().UnixNano(), AppID: a.ID,
		Audit: s.audit(r, p, actAppDelete, appTarget(a), "")}); err != nil {
		return err
	}
	s.waitReplicated(r) // sessions.go: its tokens fail at once on every node
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) addPassword(w http.ResponseWriter, r *http.Request, p *principal) error {
	a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var in passwordInput
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		if err := decodeJSON(r, &in); err != nil {
			return err
		}
	}
	now := time.Now()
	cred, err := newCredential(strings.TrimSpace(in.DisplayName), in.EndDateTime, now)
	if err != nil {
		return err
	}
	secret := cred.SecretText
	cred.SecretText = ""
	if _, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpAddPassword, Now: now.UnixNano(), AppID: a.ID, Credential: cred,
		Audit: s.audit(r, p, actAppAddSecret, appTarget(a), fmt.Sprintf("keyId %s, displayName %q, expires %s", cred.KeyID, cred.DisplayName, cred.EndDateTime))}); err != nil {
		return err
	}
	out := cred.PasswordCredential
	out.SecretText = secret
	writeJSON(w, http.StatusOK, out)
	return nil
}

type removePasswordInput struct {
	KeyID string `json:"keyId"`
}

func (s *Server) removePassword(w http.ResponseWriter, r *http.Request, p *principal) error {
	a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var in removePasswordInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.KeyID == "" {
		return resource.Invalid("keyId", "keyId is required.")
	}
	if _, err := s.state.Propose(r.Context(), &raft.Command{Op: raft.OpRemovePassword, Now: time.Now().UnixNano(), AppID: a.ID, ID: in.KeyID,
		Audit: s.audit(r, p, actAppRemoveSecret, appTarget(a), "keyId "+clip(in.KeyID))}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// appTarget names an application in the audit log.
func appTarget(a *resource.ApplicationRecord) string {
	return a.DisplayName + " (" + a.TargetHostName + ", appId " + a.AppID + ")"
}

func appPatchDetail(a *resource.ApplicationRecord, patch *resource.ApplicationRecord) string {
	if patch.DisplayName != "" && patch.DisplayName != a.DisplayName {
		return fmt.Sprintf("displayName %q → %q", a.DisplayName, patch.DisplayName)
	}
	return "no change"
}

// appFace is what any signed-in user may know of an application: the name
// an inbox shows on its notifications (a Herald addition; notifications
// carry only the host name, as in Graph).
type appFace struct {
	DisplayName    string `json:"displayName"`
	TargetHostName string `json:"targetHostName"`
}

// listAppFaces is GET /v1.0/me/applications: the display name of every
// registered application, so an inbox can name who sent what.
func (s *Server) listAppFaces(w http.ResponseWriter, r *http.Request, p *principal) error {
	return writePage(s, w, r, s.state.ListApps, func(a *resource.ApplicationRecord) appFace {
		return appFace{DisplayName: a.DisplayName, TargetHostName: a.TargetHostName}
	})
}
