package resource

// Delivery states (API.md §7).
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
	DeliverySkipped   = "skipped"
)

// Delivery is the API shape of one fan-out target of a notification.
type Delivery struct {
	SubscriptionID      string  `json:"subscriptionId"`
	ChannelType         string  `json:"channelType"`
	PlatformType        string  `json:"platformType"`
	State               string  `json:"state"`
	Attempts            int     `json:"attempts"`
	LastAttemptDateTime Time    `json:"lastAttemptDateTime"`
	LastError           *string `json:"lastError"`
	DeliveredDateTime   Time    `json:"deliveredDateTime"`
	// AttemptHistory lists the latest attempts, oldest first, so a delivery
	// log can show each one and its error (Herald's addition to the shape).
	AttemptHistory []Attempt `json:"attemptHistory"`
}

// MaxAttemptHistory bounds Delivery.AttemptHistory.
const MaxAttemptHistory = 20

// Attempt is one try to deliver.
type Attempt struct {
	DateTime Time   `json:"dateTime"`
	Outcome  string `json:"outcome"`
	Error    string `json:"error,omitempty"`
}

// DeliveryRecord is a delivery as stored: what is still to be sent, and
// when to try next.
type DeliveryRecord struct {
	Delivery
	UserID         string `json:"userId"`
	NotificationID string `json:"notificationId"`
	// PendingSeq is the change still to deliver (0: nothing pending), and
	// PendingType its event. A newer change replaces an undelivered older
	// one: receivers get the notification as it is now.
	PendingSeq  uint64 `json:"pendingSeq,omitempty"`
	PendingType string `json:"pendingType,omitempty"`
	// NextAttempt is when a retry is due, so a restart resumes the schedule.
	NextAttempt Time `json:"nextAttempt"`
	// Host is what the engine's per-host limit counts: the endpoint's host,
	// or the provider for FCM and APNs.
	Host string `json:"host,omitempty"`
}

// DeliveryRef names a delivery that has work pending, for the engine.
type DeliveryRef struct {
	UserID         string
	NotificationID string
	SubscriptionID string
	ChannelType    string
	Host           string
	Seq            uint64
}
