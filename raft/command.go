package raft

import (
	"github.com/herald-notify/herald/resource"
)

// Op names a command of the replicated state machine.
type Op string

// The commands. Each carries every id, time and hash it needs, chosen before
// it enters the log, so that applying it is deterministic on every node.
const (
	OpBootstrapAdmin Op = "bootstrapAdmin"
	OpCreateUser     Op = "createUser"
	OpUpdateUser     Op = "updateUser"
	OpDeleteUser     Op = "deleteUser"
	OpCreateApp      Op = "createApp"
	OpUpdateApp      Op = "updateApp"
	OpDeleteApp      Op = "deleteApp"
	OpAddPassword    Op = "addPassword"
	OpRemovePassword Op = "removePassword"
	OpIssueTokens    Op = "issueTokens"
	OpRevokeSession  Op = "revokeSession"
	// OpTouchSession notes that a session was used (lastUsedDateTime).
	OpTouchSession Op = "touchSession"
	// OpAudit writes audit records alone, for events that change nothing
	// else (failed sign-ins, a backup) or that the cluster made outside
	// the FSM (membership). Other commands carry theirs in Command.Audit.
	OpAudit            Op = "audit"
	OpCreateSub        Op = "createSub"
	OpUpdateSub        Op = "updateSub"
	OpDeleteSub        Op = "deleteSub"
	OpSend             Op = "send"
	OpPatchNotif       Op = "patchNotif"
	OpDeleteNotif      Op = "deleteNotif"
	OpDeleteNotifsBy   Op = "deleteNotifsBy"
	OpPurge            Op = "purge"
	OpSetVAPID         Op = "setVAPID"
	OpDeliveryOutcomes Op = "deliveryOutcomes"
	// OpSetNode records a cluster member's addresses; OpRemoveNode forgets
	// one. Raft's configuration knows only Raft addresses, and forwarding
	// needs every node to find the leader's HTTP address in its replica.
	OpSetNode    Op = "setNode"
	OpRemoveNode Op = "removeNode"
	// OpSetSlots replaces the slot table (DESIGN.md, Partitioning); the
	// leader computes it, so applying it is a plain write.
	OpSetSlots Op = "setSlots"
	// OpSetRules raises the rules level the FSM applies entries under
	// (rules.go): the leader proposes it once every member knows the level.
	OpSetRules Op = "setRules"
)

// NodeRecord is a cluster member as the replicated state knows it.
type NodeRecord struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"httpAddr"`
	RaftAddr string `json:"raftAddr"`
}

// Command is one state change. Op says which fields are set.
type Command struct {
	Op Op `json:"op"`
	// Now is the proposer's clock in Unix nanoseconds: the only clock Apply
	// may read.
	Now int64 `json:"now"`
	// RequestID, when set, makes the command idempotent: the FSM keeps its
	// result for RequestWindow after Now and answers a command with the
	// same id with that result again, applying nothing (dedup.go). A
	// follower sets it on what it forwards, so it can resend a command
	// whose first send may or may not have reached the leader.
	RequestID string `json:"requestId,omitempty"`

	User       *resource.UserRecord         `json:"user,omitempty"`
	UserPatch  *UserPatch                   `json:"userPatch,omitempty"`
	App        *resource.ApplicationRecord  `json:"app,omitempty"`
	Credential *resource.CredentialRecord   `json:"credential,omitempty"`
	Tokens     []TokenGrant                 `json:"tokens,omitempty"`
	Sub        *resource.SubscriptionRecord `json:"sub,omitempty"`
	SubPatch   *resource.SubscriptionPatch  `json:"subPatch,omitempty"`
	Notif      *resource.NotificationRecord `json:"notif,omitempty"`
	NotifPatch *resource.NotificationPatch  `json:"notifPatch,omitempty"`
	VAPID      []byte                       `json:"vapid,omitempty"`
	Outcomes   []DeliveryOutcome            `json:"outcomes,omitempty"`
	Node       *NodeRecord                  `json:"node,omitempty"`
	Slots      []string                     `json:"slots,omitempty"`
	// Level is OpSetRules' rules level.
	Level int `json:"level,omitempty"`
	// Audit records the command's action in the audit log, in the same
	// transaction as its effects (audit.go).
	Audit []resource.AuditRecord `json:"audit,omitempty"`
	// Client is where a sign-in came from, for its session record.
	Client *ClientInfo `json:"client,omitempty"`

	// Generic references; what they mean depends on Op.
	UserID      string `json:"userId,omitempty"`
	AppID       string `json:"appId,omitempty"` // an application's object id
	ID          string `json:"id,omitempty"`
	ConsumeHash string `json:"consumeHash,omitempty"` // a refresh token being rotated
	Session     string `json:"session,omitempty"`
	GroupName   string `json:"groupName,omitempty"`
	AppNotifID  string `json:"appNotificationId,omitempty"`

	// Limits in force when the command was proposed.
	MaxItems  int   `json:"maxItems,omitempty"`
	Retention int64 `json:"retention,omitempty"` // change-log retention, ns
	// AuditRetention is how long the purge keeps audit records, ns; zero
	// keeps them.
	AuditRetention int64 `json:"auditRetention,omitempty"`
}

// ClientInfo describes the client of a sign-in or of a session's use.
type ClientInfo struct {
	Address   string `json:"address,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
}

// UserPatch is an admin's PATCH of a user; nil fields stay.
type UserPatch struct {
	DisplayName    *string  `json:"displayName,omitempty"`
	PasswordHash   *string  `json:"passwordHash,omitempty"`
	Roles          []string `json:"roles,omitempty"`
	AccountEnabled *bool    `json:"accountEnabled,omitempty"`
}

// TokenGrant is a token to store under the hash of its secret.
type TokenGrant struct {
	Hash   string               `json:"hash"`
	Record resource.TokenRecord `json:"record"`
}

// SendResult is the outcome of OpSend.
type SendResult struct {
	Notification resource.Notification
	Created      bool
	// Encoded is Notification as JSON, the bytes the change carries, so
	// that the response is not encoded again. Only on the node that
	// applied the command: a forwarded result leaves it out.
	Encoded []byte `json:"-"`
}

// check refuses a command without the fields its op needs. A malformed
// entry must fail the same way on every replica, not panic them all.
func (c *Command) check() *resource.Error {
	missing := false
	switch c.Op {
	case OpBootstrapAdmin, OpCreateUser:
		missing = c.User == nil
	case OpUpdateUser:
		missing = c.UserPatch == nil
	case OpCreateApp, OpUpdateApp:
		missing = c.App == nil
	case OpAddPassword:
		missing = c.Credential == nil
	case OpCreateSub:
		missing = c.Sub == nil
	case OpUpdateSub:
		missing = c.SubPatch == nil
	case OpSend:
		missing = c.Notif == nil || c.Notif.ExpirationDateTime.IsZero()
	case OpPatchNotif:
		missing = c.NotifPatch == nil
	case OpSetNode:
		missing = c.Node == nil || c.Node.ID == ""
	case OpSetSlots:
		missing = len(c.Slots) != SlotCount
	case OpAudit:
		missing = len(c.Audit) == 0
	case OpSetRules:
		missing = c.Level <= 0
	}
	if missing {
		return resource.Errorf(resource.CodeInvalidRequest, "command %s lacks its body", c.Op)
	}
	return nil
}
