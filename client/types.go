package client

import (
	"encoding/json"
	"time"
)

// Token is the answer of POST /oauth2/v2.0/token.
type Token struct {
	TokenType    string `json:"token_type"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"` // seconds
	RefreshToken string `json:"refresh_token,omitempty"`
}

// NewUser is the body of POST /v1.0/users. It is a type of its own because
// the server rejects unknown properties, so server-set fields such as id must
// not be sent.
type NewUser struct {
	UserPrincipalName string   `json:"userPrincipalName"`
	DisplayName       string   `json:"displayName,omitempty"`
	Password          string   `json:"password"`
	Roles             []string `json:"roles,omitempty"`
}

// User is a user as the server returns it.
type User struct {
	ID                string    `json:"id"`
	UserPrincipalName string    `json:"userPrincipalName"`
	DisplayName       string    `json:"displayName"`
	Roles             []string  `json:"roles"`
	AccountEnabled    bool      `json:"accountEnabled"`
	CreatedDateTime   time.Time `json:"createdDateTime,omitzero"`
}

// NewApplication is the body of POST /v1.0/applications.
type NewApplication struct {
	DisplayName    string `json:"displayName"`
	TargetHostName string `json:"targetHostName"`
}

// Application is an application service that sends notifications.
type Application struct {
	ID                  string               `json:"id"`
	AppID               string               `json:"appId"`
	DisplayName         string               `json:"displayName"`
	TargetHostName      string               `json:"targetHostName"`
	CreatedDateTime     time.Time            `json:"createdDateTime,omitzero"`
	PasswordCredentials []PasswordCredential `json:"passwordCredentials"`
}

// PasswordCredential is a client secret of an application. SecretText is set
// only in the answer that created it.
type PasswordCredential struct {
	KeyID       string    `json:"keyId"`
	DisplayName string    `json:"displayName,omitempty"`
	Hint        string    `json:"hint,omitempty"`
	EndDateTime time.Time `json:"endDateTime,omitzero"`
	SecretText  string    `json:"secretText,omitempty"`
}

// Notification is both what is sent (leave the server-set fields empty) and
// what is stored; the omitempty and omitzero tags keep unset fields out of
// requests, because the server rejects properties it does not expect.
type Notification struct {
	ID                string          `json:"id,omitempty"`
	TargetHostName    string          `json:"targetHostName,omitempty"`
	AppNotificationID string          `json:"appNotificationId,omitempty"`
	GroupName         string          `json:"groupName,omitempty"`
	Payload           *Payload        `json:"payload,omitempty"`
	TargetPolicy      *TargetPolicy   `json:"targetPolicy,omitempty"`
	Priority          string          `json:"priority,omitempty"`
	FallbackPolicy    *FallbackPolicy `json:"fallbackPolicy,omitempty"`
	// DisplayTimeToLive is seconds; json.Number because the API accepts both
	// a number and a numeric string.
	DisplayTimeToLive  json.Number `json:"displayTimeToLive,omitempty"`
	ExpirationDateTime time.Time   `json:"expirationDateTime,omitzero"`

	CreatedDateTime      time.Time `json:"createdDateTime,omitzero"`
	LastModifiedDateTime time.Time `json:"lastModifiedDateTime,omitzero"`
	ReadState            string    `json:"readState,omitempty"`
	UserActionState      string    `json:"userActionState,omitempty"`
	Status               string    `json:"status,omitempty"`

	// Removed is set on the delta entries of deleted and expired
	// notifications, which carry nothing but the id.
	Removed *Removed `json:"@removed,omitempty"`
}

// Payload is what a notification says: raw data for the client app and/or a
// visual toast.
type Payload struct {
	RawContent    string         `json:"rawContent,omitempty"`
	VisualContent *VisualContent `json:"visualContent,omitempty"`
}

// VisualContent is the title and body a device shows.
type VisualContent struct {
	Title string `json:"title"`
	Body  string `json:"body,omitempty"`
}

// TargetPolicy limits the platforms a notification is fanned out to.
type TargetPolicy struct {
	PlatformTypes []string `json:"platformTypes,omitempty"`
}

// FallbackPolicy is Graph's endpointFallback for iOS.
type FallbackPolicy struct {
	EndpointFallback *EndpointFallback `json:"endpointFallback,omitempty"`
}

// EndpointFallback says what to show on iOS when the raw notification was not
// acknowledged in time.
type EndpointFallback struct {
	PlatformTypes          StringList     `json:"platformTypes,omitempty"`
	FallbackDelayInSeconds int            `json:"fallbackDelayInSeconds,omitempty"`
	VisualContent          *VisualContent `json:"visualContent,omitempty"`
}

// StringList decodes from a JSON string or an array of strings, the two forms
// Graph allows for endpointFallback.platformTypes.
type StringList []string

// UnmarshalJSON accepts "iOS" as well as ["iOS"].
func (l *StringList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*l = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = StringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*l = many
	return nil
}

// Removed says why a notification left the feed: "deleted" or "expired".
type Removed struct {
	Reason string `json:"reason"`
}

// ClusterStatus is the answer of GET /v1.0/admin/cluster.
type ClusterStatus struct {
	LeaderID    string        `json:"leaderId"`
	Term        uint64        `json:"term"`
	CommitIndex uint64        `json:"commitIndex"`
	Nodes       []ClusterNode `json:"nodes"`
	SlotCount   int           `json:"slotCount"`
	// RulesLevel is the rules level the cluster's state machine applies.
	RulesLevel int `json:"rulesLevel"`
	// ClusterID is the identity of the cluster's history: made when the
	// cluster reaches rules level 2, and anew by a restore.
	ClusterID string `json:"clusterId,omitempty"`
}

// NewClusterNode is the body of POST /v1.0/admin/cluster/nodes.
type NewClusterNode struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raftAddr"`
	HTTPAddr string `json:"httpAddr"`
}

// ClusterNode is one member of the cluster as the leader sees it.
type ClusterNode struct {
	ID              string `json:"id"`
	HTTPAddr        string `json:"httpAddr"`
	RaftAddr        string `json:"raftAddr"`
	State           string `json:"state"` // leader, follower, candidate or unreachable
	Voter           bool   `json:"voter"`
	LastContactMs   int64  `json:"lastContactMs"`
	AppliedIndex    uint64 `json:"appliedIndex"`
	Slots           int    `json:"slots"`
	LiveConnections int    `json:"liveConnections"`
	// RulesLevel is the newest rules level the node's binary knows.
	RulesLevel int `json:"rulesLevel,omitempty"`
	// ClusterID is the cluster whose data the node holds.
	ClusterID string `json:"clusterId,omitempty"`
	// Disk is "full" while the node refuses writes that add data for
	// want of space (below --disk-reserve), "ok" otherwise.
	Disk string `json:"disk,omitempty"`
	// ClockOffsetMs is how far the node's clock is ahead of the leader's
	// (behind when negative), in ms; nil when not measured.
	ClockOffsetMs *int64 `json:"clockOffsetMs,omitempty"`
}
