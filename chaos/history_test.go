//go:build linux

package chaos

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/herald-notify/herald/resource"
)

// Operation kinds of the history.
const (
	opPut    = "put"    // POST /me/notifications with an appNotificationId: create or replace
	opPatch  = "patch"  // PATCH readState and userActionState
	opDelete = "delete" // DELETE /me/notifications/{id}
	opGet    = "get"    // strong GET /me/notifications/{id}
	opList   = "list"   // strong GET /me/notifications?status=any
)

// notif is what the harness reads of a notification.
type notif struct {
	ID                string `json:"id"`
	AppNotificationID string `json:"appNotificationId"`
	Payload           struct {
		RawContent string `json:"rawContent"`
	} `json:"payload"`
	ReadState       string `json:"readState"`
	UserActionState string `json:"userActionState"`
	Status          string `json:"status"`
}

// state is the part of a notification the checks compare.
func (n notif) state() string {
	return fmt.Sprintf("%s/%s/%s/%s", n.Payload.RawContent, n.ReadState, n.UserActionState, n.Status)
}

// op is one request of the history: what was asked, of which node, when,
// and what came back. Status 0 is no answer (a timeout or a broken
// connection).
type op struct {
	ID     int
	Client int
	Node   int
	Kind   string
	User   int
	Key    string // appNotificationId
	NID    string // notification id, when known at the call
	// Arguments: the content of a put, the states of a patch.
	Content, Read, Action string
	Start, End            time.Time
	Status                int
	Err                   string
	// NotApplied: the answer says the write did not happen (a 503 whose
	// message says "not committed", as API-NOTES promises), or the
	// request never left (the dial failed). The checks hold the server
	// to it: such a write must leave no trace.
	NotApplied bool
	Result     *notif  // put, patch, get: the notification answered
	List       []notif // list
	// ListKeys are the keys of the user that had been put before a list
	// started: the keys the list observes, present or absent.
	ListKeys []string
}

// acked: the server answered with success.
func (o *op) acked() bool { return o.Status >= 200 && o.Status < 300 }

// definite: the answer says what happened (success or a client error);
// anything else (no answer, 5xx) may or may not have taken effect.
func (o *op) definite() bool { return o.NotApplied || (o.Status >= 200 && o.Status < 500) }

func (o *op) write() bool { return o.Kind == opPut || o.Kind == opPatch || o.Kind == opDelete }

func (o *op) String() string {
	s := fmt.Sprintf("#%d client %d node n%d %s user %d key %s id %s [%s..%s] ", o.ID, o.Client, o.Node+1, o.Kind,
		o.User, o.Key, o.NID, o.Start.Format("15:04:05.000"), o.End.Format("15:04:05.000"))
	switch o.Kind {
	case opPut:
		s += "content " + o.Content + " "
	case opPatch:
		s += o.Read + "/" + o.Action + " "
	}
	s += fmt.Sprintf("-> %d", o.Status)
	if o.NotApplied {
		s += " (not applied)"
	}
	if o.Err != "" {
		s += " " + o.Err
	}
	if o.Result != nil {
		s += " " + o.Result.ID + " " + o.Result.state()
	}
	return s
}

// event is one change a subscriber received.
type event struct {
	Seq    uint64
	Cursor string
	Type   string
	NID    string
	Data   json.RawMessage
	Node   int
}

func newEvent(cursor, typ string, data json.RawMessage, node int) (event, error) {
	seq, ok := resource.ParseCursor(cursor)
	if !ok {
		return event{}, fmt.Errorf("event cursor %q is not a cursor", cursor)
	}
	var id struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &id); err != nil || id.ID == "" {
		return event{}, fmt.Errorf("event data %s: no id (%v)", data, err)
	}
	return event{Seq: seq, Cursor: cursor, Type: typ, NID: id.ID, Data: data, Node: node}, nil
}

// delivery is one webhook request the receiver got.
type delivery struct {
	WebhookID string
	Body      string
	Type      string
	User      int
	N         notif
	SigOK     bool
	Answered  int
}

// history is everything recorded during a run.
type history struct {
	mu         sync.Mutex
	ops        []*op
	deliveries []delivery
	faults     []faultRecord
}

func (h *history) begin(o *op) *op {
	h.mu.Lock()
	defer h.mu.Unlock()
	o.ID = len(h.ops)
	o.Start = time.Now()
	h.ops = append(h.ops, o)
	return o
}

// end stamps the end of o; the op itself is only written by its client.
func (h *history) end(o *op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o.End = time.Now()
}

func (h *history) snapshot() []*op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*op(nil), h.ops...)
}

func (h *history) addDelivery(d delivery) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deliveries = append(h.deliveries, d)
}

func (h *history) allDeliveries() []delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]delivery(nil), h.deliveries...)
}

func (h *history) addFault(f faultRecord) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = append(h.faults, f)
}
