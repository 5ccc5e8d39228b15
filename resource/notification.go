package resource

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Notification limits of API.md §5.
const (
	MaxPayloadBytes        = 4096
	MaxNameLength          = 256
	MaxDisplayTimeToLive   = 2592000
	DefaultNotificationTTL = 7 * 24 * time.Hour
	MaxNotificationTTL     = 30 * 24 * time.Hour
)

// Notification states.
const (
	ReadUnread = "unread"
	ReadRead   = "read"

	ActionNone      = "noInteraction"
	ActionActivated = "activated"
	ActionDismissed = "dismissed"
	ActionSnoozed   = "snoozed"

	StatusActive  = "active"
	StatusDeleted = "deleted"
)

// Priorities.
const (
	PriorityNone = "None"
	PriorityHigh = "High"
	PriorityLow  = "Low"
)

// VisualContent is what a device shows.
type VisualContent struct {
	Title string `json:"title"`
	Body  string `json:"body,omitempty"`
}

// Payload is the content an application sends.
type Payload struct {
	RawContent    *string        `json:"rawContent,omitempty"`
	VisualContent *VisualContent `json:"visualContent,omitempty"`
}

// TargetPolicy limits the platforms a notification goes to.
type TargetPolicy struct {
	PlatformTypes []string `json:"platformTypes"`
}

// EndpointFallback is the iOS fallback of Graph's fallbackPolicy.
type EndpointFallback struct {
	PlatformTypes          StringOrList   `json:"platformTypes"`
	FallbackDelayInSeconds int            `json:"fallbackDelayInSeconds"`
	VisualContent          *VisualContent `json:"visualContent"`
}

// FallbackPolicy wraps EndpointFallback as Graph does.
type FallbackPolicy struct {
	EndpointFallback *EndpointFallback `json:"endpointFallback"`
}

// StringOrList accepts "iOS" as well as ["iOS"].
type StringOrList []string

func (s *StringOrList) UnmarshalJSON(b []byte) error {
	// A null leaves the list as it is, as encoding/json does with a
	// slice: json.Unmarshal into a string takes null too, and made it
	// [""], which is written back as a list and read as another value.
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = StringOrList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// Seconds accepts an integer or a numeric string, as Graph's examples send
// "displayTimeToLive": "60".
type Seconds int

func (s *Seconds) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		b = []byte(str)
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	// Digits only, as the description's pattern says: ParseInt takes a
	// sign too.
	if err != nil || n < 0 || n > MaxDisplayTimeToLive || len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		return Invalid("displayTimeToLive", "displayTimeToLive must be whole seconds from 0 to %d.", MaxDisplayTimeToLive)
	}
	*s = Seconds(n)
	return nil
}

// NotificationInput is the body an application (or an admin) posts.
type NotificationInput struct {
	TargetHostName     string          `json:"targetHostName"`
	AppNotificationID  string          `json:"appNotificationId"`
	GroupName          string          `json:"groupName"`
	Payload            *Payload        `json:"payload"`
	TargetPolicy       *TargetPolicy   `json:"targetPolicy"`
	Priority           string          `json:"priority"`
	DisplayTimeToLive  *Seconds        `json:"displayTimeToLive"`
	ExpirationDateTime *Time           `json:"expirationDateTime"`
	FallbackPolicy     *FallbackPolicy `json:"fallbackPolicy"`
}

// Notification is the API shape of a stored notification.
type Notification struct {
	ID                   string          `json:"id"`
	TargetHostName       string          `json:"targetHostName"`
	AppNotificationID    string          `json:"appNotificationId,omitempty"`
	GroupName            string          `json:"groupName,omitempty"`
	Payload              Payload         `json:"payload"`
	TargetPolicy         TargetPolicy    `json:"targetPolicy"`
	Priority             string          `json:"priority"`
	DisplayTimeToLive    *int            `json:"displayTimeToLive,omitempty"`
	ExpirationDateTime   Time            `json:"expirationDateTime"`
	FallbackPolicy       *FallbackPolicy `json:"fallbackPolicy,omitempty"`
	CreatedDateTime      Time            `json:"createdDateTime"`
	LastModifiedDateTime Time            `json:"lastModifiedDateTime"`
	ReadState            string          `json:"readState"`
	UserActionState      string          `json:"userActionState"`
	Status               string          `json:"status"`
}

// NotificationRecord is a notification as stored: whose it is and who sent it.
type NotificationRecord struct {
	Notification
	UserID string `json:"userId"`
	AppID  string `json:"appObjectId"`
	// Seq is the change-log sequence number of the last change.
	Seq uint64 `json:"seq,omitempty"`
	// LiveTargets are the live subscriptions the notification was fanned
	// out to that hold no delivery record of their own: a pending live
	// delivery is kept here, and gets a record when a stream reports it
	// (raft/delivery.go).
	LiveTargets []LiveTarget `json:"liveTargets,omitempty"`
}

// LiveTarget is a pending delivery to a live subscription: what its
// delivery record would hold, the rest being the same for every one.
type LiveTarget struct {
	SubscriptionID string `json:"subscriptionId"`
	PlatformType   string `json:"platformType"`
	// PendingSeq is the change last fanned out to the subscription.
	PendingSeq uint64 `json:"pendingSeq"`
}

// LiveTarget returns the pending live delivery to subscription sid.
func (n *NotificationRecord) LiveTarget(sid string) (LiveTarget, bool) {
	for _, t := range n.LiveTargets {
		if t.SubscriptionID == sid {
			return t, true
		}
	}
	return LiveTarget{}, false
}

// SetLiveTarget records t as pending, in place of an earlier one to the
// same subscription. The list is copied, never changed in place: a record
// read from a cache may share it.
func (n *NotificationRecord) SetLiveTarget(t LiveTarget) {
	n.DropLiveTarget(t.SubscriptionID)
	n.LiveTargets = append(n.LiveTargets[:len(n.LiveTargets):len(n.LiveTargets)], t)
}

// DropLiveTarget forgets the pending live delivery to sid, once it has a
// record of its own.
func (n *NotificationRecord) DropLiveTarget(sid string) {
	for i := range n.LiveTargets {
		if n.LiveTargets[i].SubscriptionID == sid {
			n.LiveTargets = append(n.LiveTargets[:i:i], n.LiveTargets[i+1:]...)
			if len(n.LiveTargets) == 0 {
				n.LiveTargets = nil
			}
			return
		}
	}
}

// Targets reports whether a subscription on platform p receives n.
func (n *Notification) Targets(p string) bool { return policyTargets(n.TargetPolicy.PlatformTypes, p) }

// PolicyPlatform is a platform as a targetPolicy names it: subscriptions say
// "web" where target policies say "webPush" (API.md §4, §5).
func PolicyPlatform(p string) string {
	if p == PlatformWeb {
		return "webPush"
	}
	return p
}

// policyTargets reports whether a subscription platform p is in a target
// policy's list; an empty list targets every platform.
func policyTargets(list []string, p string) bool {
	if len(list) == 0 {
		return true
	}
	for _, t := range list {
		if q, _ := NormalizePlatform(t); q == p {
			return true
		}
	}
	return false
}

// Validate normalises in and checks every rule of API.md §5 at time now.
// appHost is the sending application's targetHostName.
func (in *NotificationInput) Validate(now time.Time, appHost string) *Error {
	// Host names are case-insensitive (DNS); the application's is stored
	// in lower case.
	if in.TargetHostName != "" && !strings.EqualFold(in.TargetHostName, appHost) {
		return Invalid("targetHostName", "targetHostName must be the sending application's (%s).", appHost)
	}
	in.TargetHostName = appHost
	if utf8.RuneCountInString(in.AppNotificationID) > MaxNameLength {
		return Invalid("appNotificationId", "appNotificationId must have at most %d characters.", MaxNameLength)
	}
	if utf8.RuneCountInString(in.GroupName) > MaxNameLength {
		return Invalid("groupName", "groupName must have at most %d characters.", MaxNameLength)
	}
	if hasControl(in.AppNotificationID) {
		return Invalid("appNotificationId", "appNotificationId must not contain control characters.")
	}
	if hasControl(in.GroupName) {
		return Invalid("groupName", "groupName must not contain control characters.")
	}
	if err := in.validatePayload(); err != nil {
		return err
	}
	if err := in.validateTargetPolicy(); err != nil {
		return err
	}
	switch strings.ToLower(in.Priority) {
	case "":
		in.Priority = PriorityNone
		if in.Payload.VisualContent != nil {
			in.Priority = PriorityHigh
		}
	case "none":
		in.Priority = PriorityNone
	case "high":
		in.Priority = PriorityHigh
	case "low":
		in.Priority = PriorityLow
	default:
		return Invalid("priority", "priority must be None, High or Low.")
	}
	switch {
	case in.ExpirationDateTime == nil: // year 1 is a past time, not an absent one
		t := At(now.Add(DefaultNotificationTTL))
		in.ExpirationDateTime = &t
	case !in.ExpirationDateTime.After(now):
		return Invalid("expirationDateTime", "expirationDateTime must be in the future.")
	case in.ExpirationDateTime.After(now.Add(MaxNotificationTTL)):
		return Invalid("expirationDateTime", "expirationDateTime must be at most 30 days from now.")
	}
	return in.validateFallback()
}

func (in *NotificationInput) validatePayload() *Error {
	p := in.Payload
	if p == nil || (p.RawContent == nil && p.VisualContent == nil) {
		return Invalid("payload", "payload with rawContent and/or visualContent is required.")
	}
	if p.VisualContent != nil && strings.TrimSpace(p.VisualContent.Title) == "" {
		return Invalid("payload.visualContent.title", "visualContent needs a title.")
	}
	if n := payloadSize(p); n > MaxPayloadBytes {
		return &Error{Code: CodePayloadTooLarge, Target: "payload",
			Message: "The serialized payload is " + strconv.Itoa(n) + " bytes; the limit is 4096."}
	}
	return nil
}

// payloadSize is the length of p as compact JSON, as a client would
// serialize it: without json.Marshal's escaping of <, > and & as \u003c and
// the like, which would count each of those characters six times. It is
// counted, not encoded: encoding it was 1 % of a node's CPU under ingest.
// TestPayloadSizeIsTheEncodedLength holds it to an encoder that does not
// escape HTML.
func payloadSize(p *Payload) int {
	if !validUTF8(p) {
		// Go releases write invalid UTF-8 differently (one U+FFFD a
		// byte, escaped, or one a sequence, raw): the encoder's own
		// count is the one to take.
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.Encode(p)
		return len(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
	}
	n := len("{}")
	if p.RawContent != nil {
		n += len(`"rawContent":`) + jsonStringLen(*p.RawContent)
	}
	if v := p.VisualContent; v != nil {
		if p.RawContent != nil {
			n++ // ,
		}
		n += len(`"visualContent":{"title":}`) + jsonStringLen(v.Title)
		if v.Body != "" {
			n += len(`,"body":`) + jsonStringLen(v.Body)
		}
	}
	return n
}

// validUTF8 reports whether every string of p is valid UTF-8.
func validUTF8(p *Payload) bool {
	if p.RawContent != nil && !utf8.ValidString(*p.RawContent) {
		return false
	}
	v := p.VisualContent
	return v == nil || utf8.ValidString(v.Title) && utf8.ValidString(v.Body)
}

// jsonStringLen is the length of the valid UTF-8 s as encoding/json writes
// it with HTML escaping off: quoted, with short escapes for ", \, \b, \f,
// \n, \r and \t, \u00XX for the other control characters, and \u2028 and
// \u2029 escaped.
func jsonStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20:
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			n += 6
		} else {
			n += size
		}
		i += size
	}
	return n
}

func (in *NotificationInput) validateTargetPolicy() *Error {
	if in.TargetPolicy == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, t := range in.TargetPolicy.PlatformTypes {
		p, ok := NormalizePlatform(t)
		if !ok {
			return Invalid("targetPolicy.platformTypes", "%q is not a platform type: use windows, ios, android or webPush.", t)
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, PolicyPlatform(p))
		}
	}
	in.TargetPolicy.PlatformTypes = out
	return nil
}

func (in *NotificationInput) validateFallback() *Error {
	if in.FallbackPolicy == nil {
		return nil
	}
	ef := in.FallbackPolicy.EndpointFallback
	if ef == nil {
		return Invalid("fallbackPolicy.endpointFallback", "fallbackPolicy needs endpointFallback.")
	}
	if len(ef.PlatformTypes) != 1 || !strings.EqualFold(ef.PlatformTypes[0], "iOS") {
		return Invalid("fallbackPolicy.endpointFallback.platformTypes", "endpointFallback.platformTypes may only be iOS.")
	}
	ef.PlatformTypes = StringOrList{"iOS"}
	if ef.FallbackDelayInSeconds < 60 || ef.FallbackDelayInSeconds > 600 {
		return Invalid("fallbackPolicy.endpointFallback.fallbackDelayInSeconds", "fallbackDelayInSeconds must be from 60 to 600.")
	}
	if ef.VisualContent == nil || strings.TrimSpace(ef.VisualContent.Title) == "" {
		return Invalid("fallbackPolicy.endpointFallback.visualContent.title", "endpointFallback.visualContent needs a title.")
	}
	if in.TargetPolicy == nil || len(in.TargetPolicy.PlatformTypes) == 0 {
		return nil // all platforms, iOS among them
	}
	for _, p := range in.TargetPolicy.PlatformTypes {
		if p == PlatformIOS {
			return nil
		}
	}
	return Invalid("fallbackPolicy", "fallbackPolicy needs iOS in targetPolicy.platformTypes.")
}

// NewNotification builds the stored notification for a validated input.
func (in *NotificationInput) NewNotification(id string, now time.Time) Notification {
	n := Notification{
		ID:                   id,
		TargetHostName:       in.TargetHostName,
		AppNotificationID:    in.AppNotificationID,
		GroupName:            in.GroupName,
		Payload:              *in.Payload,
		Priority:             in.Priority,
		ExpirationDateTime:   *in.ExpirationDateTime,
		FallbackPolicy:       in.FallbackPolicy,
		CreatedDateTime:      At(now),
		LastModifiedDateTime: At(now),
		ReadState:            ReadUnread,
		UserActionState:      ActionNone,
		Status:               StatusActive,
	}
	if in.TargetPolicy != nil {
		n.TargetPolicy.PlatformTypes = in.TargetPolicy.PlatformTypes
	}
	if n.TargetPolicy.PlatformTypes == nil {
		n.TargetPolicy.PlatformTypes = []string{}
	}
	if in.DisplayTimeToLive != nil {
		v := int(*in.DisplayTimeToLive)
		n.DisplayTimeToLive = &v
	}
	return n
}

// NotificationPatch is what a user may change (API.md §6).
type NotificationPatch struct {
	ReadState       *string `json:"readState"`
	UserActionState *string `json:"userActionState"`
}

// Validate normalises the states' spelling.
func (p *NotificationPatch) Validate() *Error {
	if p.ReadState == nil && p.UserActionState == nil {
		return Invalid("readState", "PATCH needs readState and/or userActionState.")
	}
	if p.ReadState != nil {
		switch strings.ToLower(*p.ReadState) {
		case "unread":
			*p.ReadState = ReadUnread
		case "read":
			*p.ReadState = ReadRead
		default:
			return Invalid("readState", "readState must be unread or read.")
		}
	}
	if p.UserActionState != nil {
		switch strings.ToLower(*p.UserActionState) {
		case "nointeraction":
			*p.UserActionState = ActionNone
		case "activated":
			*p.UserActionState = ActionActivated
		case "dismissed":
			*p.UserActionState = ActionDismissed
		case "snoozed":
			*p.UserActionState = ActionSnoozed
		default:
			return Invalid("userActionState", "userActionState must be noInteraction, activated, dismissed or snoozed.")
		}
	}
	return nil
}

// hasControl reports C0 control characters and DEL. In an identifier they
// are never meant: a NUL truncates it in C clients and logs, and a line
// break forges log lines and headers such as Web Push's Topic.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
