package raft

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
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

// A send's result travels as json.Marshal writes it, from the bytes the
// FSM encoded, and comes back as encoding/json reads it, with those bytes
// as its Encoded, so that a follower answers without encoding it again.
func TestSendResultsTravelWithTheirEncoding(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 2000 {
		n := randomSend(r).Notif.Notification
		if i%10 == 0 {
			n = canonicalSend(i).Notif.Notification
		}
		res := SendResult{Notification: n, Created: i%2 == 0, Encoded: appendNotification(nil, &n)}
		w, err := EncodeResult(res, nil, 3)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := json.Marshal(res); !bytes.Equal(w.Value, want) {
			t.Fatalf("value\n got %s\nwant %s", w.Value, want)
		}
		b, _ := json.Marshal(w)
		var back WireResult
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		v, err := back.Decode()
		if err != nil {
			t.Fatal(err)
		}
		var want SendResult
		json.Unmarshal(w.Value, &want)
		got := v.(SendResult)
		if !reflect.DeepEqual(got.Notification, want.Notification) || got.Created != want.Created {
			t.Fatalf("decoded %+v, want %+v", got, want)
		}
		if got.Encoded == nil && i%10 == 0 {
			t.Fatalf("a send as the API makes it came back without its encoding: %s", w.Value)
		}
		if got.Encoded != nil && !bytes.Equal(got.Encoded, res.Encoded) {
			t.Fatalf("encoded\n got %s\nwant %s", got.Encoded, res.Encoded)
		}
	}
}
