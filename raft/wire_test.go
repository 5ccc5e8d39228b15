package raft

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/herald-notify/herald/resource"
)

// Every result type a command returns comes back from the wire as the same
// concrete type and value, and errors keep their identity.
func TestWireResultRoundTrip(t *testing.T) {
	values := []any{nil, SendResult{Notification: resource.Notification{ID: "n1"}, Created: true},
		PurgeResult{Notifications: 2}, resource.User{ID: "u1", UserPrincipalName: "bob"},
		resource.ApplicationRecord{ID: "a1"}, resource.PasswordCredential{KeyID: "k1", SecretText: "s"},
		resource.SubscriptionRecord{AppID: "a1", WebhookSecret: "w"}, resource.Notification{ID: "n2"}, []byte("vapid")}
	for _, v := range values {
		w, err := EncodeResult(v, nil, 7)
		if err != nil {
			t.Fatalf("%T: %v", v, err)
		}
		b, _ := json.Marshal(w)
		var back WireResult
		json.Unmarshal(b, &back)
		got, err := back.Decode()
		if err != nil || !reflect.DeepEqual(got, v) || back.Applied != 7 {
			t.Errorf("%T: got %#v, %v", v, got, err)
		}
	}
	for _, e := range []error{ErrNotLeader, ErrUnknownOutcome, ErrClosed, ErrTimeout} {
		w, _ := EncodeResult(nil, e, 0)
		if _, err := w.Decode(); !errors.Is(err, e) {
			t.Errorf("%v came back as %v", e, err)
		}
	}
	w, _ := EncodeResult(nil, resource.NotFound("user"), 0)
	var re *resource.Error
	if _, err := w.Decode(); !errors.As(err, &re) || re.Code != resource.CodeNotFound {
		t.Errorf("resource error came back as %v", err)
	}
	if _, err := EncodeResult(struct{}{}, nil, 0); err == nil {
		t.Error("an unknown result type was encoded")
	}
}
