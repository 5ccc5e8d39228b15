package resource

import (
	"regexp"
	"strings"
)

// Roles a user may hold.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// User is the API shape of a user (API.md §3).
type User struct {
	ID                string   `json:"id"`
	UserPrincipalName string   `json:"userPrincipalName"`
	DisplayName       string   `json:"displayName"`
	Roles             []string `json:"roles"`
	AccountEnabled    bool     `json:"accountEnabled"`
	CreatedDateTime   Time     `json:"createdDateTime"`
}

// IsAdmin reports whether u holds the admin role.
func (u *User) IsAdmin() bool {
	for _, r := range u.Roles {
		if r == RoleAdmin {
			return true
		}
	}
	return false
}

// UserRecord is a user as stored: the API shape plus its password hash.
type UserRecord struct {
	User
	PasswordHash string `json:"passwordHash"`
}

// Application is the API shape of an application (API.md §3).
type Application struct {
	ID                  string               `json:"id"`
	AppID               string               `json:"appId"`
	DisplayName         string               `json:"displayName"`
	TargetHostName      string               `json:"targetHostName"`
	CreatedDateTime     Time                 `json:"createdDateTime"`
	PasswordCredentials []PasswordCredential `json:"passwordCredentials"`
}

// PasswordCredential is one client secret. SecretText is set only in the
// response that created it.
type PasswordCredential struct {
	KeyID         string `json:"keyId"`
	DisplayName   string `json:"displayName"`
	Hint          string `json:"hint"`
	StartDateTime Time   `json:"startDateTime"`
	EndDateTime   Time   `json:"endDateTime"`
	SecretText    string `json:"secretText,omitempty"`
}

// CredentialRecord is a stored credential: never the secret, only its hash.
type CredentialRecord struct {
	PasswordCredential
	SecretHash string `json:"secretHash"`
}

// ApplicationRecord is an application as stored.
type ApplicationRecord struct {
	ID              string             `json:"id"`
	AppID           string             `json:"appId"`
	DisplayName     string             `json:"displayName"`
	TargetHostName  string             `json:"targetHostName"`
	CreatedDateTime Time               `json:"createdDateTime"`
	Credentials     []CredentialRecord `json:"credentials"`
}

// View returns the API shape, without secrets.
func (a *ApplicationRecord) View() Application {
	v := Application{ID: a.ID, AppID: a.AppID, DisplayName: a.DisplayName,
		TargetHostName: a.TargetHostName, CreatedDateTime: a.CreatedDateTime,
		PasswordCredentials: make([]PasswordCredential, 0, len(a.Credentials))}
	for _, c := range a.Credentials {
		pc := c.PasswordCredential
		pc.SecretText = ""
		v.PasswordCredentials = append(v.PasswordCredentials, pc)
	}
	return v
}

// Principal kinds of a token.
const (
	PrincipalUser = "user"
	PrincipalApp  = "app"
)

// Token kinds.
const (
	TokenAccess  = "access"
	TokenRefresh = "refresh"
)

// TokenRecord is what a token hash maps to.
type TokenRecord struct {
	Kind          string `json:"kind"`
	PrincipalType string `json:"principalType"`
	// PrincipalID is the user id, or the application's object id.
	PrincipalID string `json:"principalId"`
	ExpiresAt   Time   `json:"expiresAt"`
	// Session is shared by every token born of one sign-in, so that a
	// sign-out or the sessions API can end them together.
	Session string `json:"session,omitempty"`
	// UsedAt is when a refresh token was first rotated (from rules level
	// 2): it is kept until ExpiresAt, moved to a minute later, so that a
	// client that lost the answer can use it again (raft/apply.go,
	// RefreshReuseGrace).
	UsedAt Time `json:"usedAt,omitzero"`
	// Parent is the hash of the refresh token this one was rotated from;
	// it goes at this one's first use.
	Parent string `json:"parent,omitempty"`
}

var upnPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$`)

// ValidateUPN checks a userPrincipalName: a login name or an e-mail address.
func ValidateUPN(upn string) *Error {
	if !upnPattern.MatchString(upn) {
		return Invalid("userPrincipalName", "userPrincipalName must be 1 to 128 letters, digits or . _ @ + -, starting with a letter or digit.")
	}
	if IsGUID(upn) {
		// A path's {id} is a user's id or userPrincipalName, the id
		// looked up first: such a name would reach another user.
		return Invalid("userPrincipalName", "userPrincipalName cannot have the shape of a user id (a GUID).")
	}
	return nil
}

// ValidatePassword enforces the contract's minimum length.
func ValidatePassword(pw string) *Error {
	if len([]rune(pw)) < 8 {
		return Invalid("password", "password must have at least 8 characters.")
	}
	if len(pw) > 1024 {
		return Invalid("password", "password must have at most 1024 bytes.")
	}
	return nil
}

// ValidateRoles checks and normalises a role list; empty means ["user"].
func ValidateRoles(roles []string) ([]string, *Error) {
	if len(roles) == 0 {
		return []string{RoleUser}, nil
	}
	seen := map[string]bool{}
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		r = strings.ToLower(strings.TrimSpace(r))
		if r != RoleUser && r != RoleAdmin {
			return nil, Invalid("roles", "roles may hold only %q and %q.", RoleUser, RoleAdmin)
		}
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out, nil
}

// ValidateDisplayName checks a display name's length.
func ValidateDisplayName(name string, required bool) *Error {
	if required && strings.TrimSpace(name) == "" {
		return Invalid("displayName", "displayName is required.")
	}
	if len(name) > 256 {
		return Invalid("displayName", "displayName must have at most 256 characters.")
	}
	if hasControl(name) {
		return Invalid("displayName", "displayName may not hold control characters.")
	}
	return nil
}

var hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateHostName checks a targetHostName: a lower-case DNS name.
func ValidateHostName(field, host string) *Error {
	if host == "" {
		return Invalid(field, "%s is required.", field)
	}
	if len(host) > 253 || host != strings.ToLower(host) {
		return Invalid(field, "%s must be a lower-case DNS name.", field)
	}
	for _, l := range strings.Split(host, ".") {
		if !hostLabel.MatchString(l) {
			return Invalid(field, "%s must be a lower-case DNS name.", field)
		}
	}
	if IsGUID(host) {
		// An application is looked up by its id, appId or host name, in
		// that order: such a name would reach another application.
		return Invalid(field, "%s cannot have the shape of an application id (a GUID).", field)
	}
	return nil
}
