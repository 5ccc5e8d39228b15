package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// fuzzNow is the fixed "now" of the fuzzers, so that a seed's times stay
// valid whatever day the tests run.
var fuzzNow = time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)

const fuzzHost = "tasks.contoso.com"

// fuzzCheckError fails unless err is a *resource.Error with one of codes
// and a message.
func fuzzCheckError(t *testing.T, stage string, err error, codes ...string) {
	t.Helper()
	var re *resource.Error
	if !errors.As(err, &re) || error(re) != err {
		t.Fatalf("%s: error %T %v is not a *resource.Error", stage, err, err)
	}
	ok := false
	for _, c := range codes {
		ok = ok || re.Code == c
	}
	if !ok {
		t.Fatalf("%s: code %q (%v), want one of %v", stage, re.Code, re, codes)
	}
	if re.Message == "" {
		t.Fatalf("%s: error without a message: %#v", stage, re)
	}
	if _, known := statusOf[re.Code]; !known {
		t.Fatalf("%s: code %q has no HTTP status", stage, re.Code)
	}
}

// fuzzStable checks that validating accepted input again changes nothing,
// and that its normalised JSON decodes and validates to the same value.
func fuzzStable[T any](t *testing.T, data []byte, in *T, validate func(*T) *resource.Error) {
	t.Helper()
	if !json.Valid(data) {
		t.Fatalf("accepted a body that is not one JSON value: %q", data)
	}
	first, err := json.Marshal(in)
	if err != nil {
		t.Fatalf("accepted input does not encode: %v", err)
	}
	if verr := validate(in); verr != nil {
		t.Fatalf("accepted input %s fails a second validation: %v", first, verr)
	}
	second, _ := json.Marshal(in)
	if !bytes.Equal(first, second) {
		t.Fatalf("validation is not idempotent:\n%s\n%s", first, second)
	}
	var again T
	if err := decodeBytes(first, &again); err != nil {
		t.Fatalf("normalised input %s does not decode: %v", first, err)
	}
	if verr := validate(&again); verr != nil {
		t.Fatalf("normalised input %s fails validation: %v", first, verr)
	}
	third, _ := json.Marshal(&again)
	if !bytes.Equal(first, third) {
		t.Fatalf("normalised input changes on a round trip:\n%s\n%s", first, third)
	}
}

// Valid bodies: the seeds the fuzzers start from, and what
// TestFuzzValidSeedsAreAccepted proves is accepted.
var (
	fuzzValidNotifications = []string{
		// Graph's examples, PascalCase keys and a string displayTimeToLive.
		`{"targetHostName":"tasks.contoso.com","appNotificationId":"testDirectToastNotification","GroupName":"TestGroup",
		  "ExpirationDateTime":"2026-11-28T23:59:00.000Z","Priority":"High","DisplayTimeToLive":"60",
		  "Payload":{"VisualContent":{"Title":"Hello World!","Body":"Notifications Are Great!"}},
		  "TargetPolicy":{"PlatformTypes":["windows","ios","android"]}}`,
		`{"targetHostName":"tasks.contoso.com","appNotificationId":"testRawNotification",
		  "payload":{"rawContent":"Hello World, Raw"},"targetPolicy":{"platformTypes":["windows","ios","android"]}}`,
		`{"targetHostName":"tasks.contoso.com","appNotificationId":"testDirectToastNotification","GroupName":"TestGroup",
		  "ExpirationDateTime":"2026-12-01T23:59:00.000Z","Priority":"High","DisplayTimeToLive":"60",
		  "Payload":{"VisualContent":{"Title":"Hello World!","Body":"Notifications Are Great!"}},
		  "TargetPolicy":{"PlatformTypes":["iOS"]},
		  "fallbackPolicy":{"endpointFallback":{"platformTypes":["iOS"],"fallbackDelayInSeconds":60,
		    "visualContent":{"title":"Hello fallback","body":"Sent after a minute"}}}}`,
		`{"payload":{"rawContent":"x","visualContent":{"title":"t"}},"priority":"low","displayTimeToLive":0,
		  "fallbackPolicy":{"endpointFallback":{"platformTypes":"ios","fallbackDelayInSeconds":600,"visualContent":{"title":"f"}}}}`,
		`{"payload":{"visualContent":{"title":"t"}},"targetPolicy":{"platformTypes":["webPush","web","WEB"]},"priority":"NONE"}`,
		`{"payload":{"rawContent":""},"targetPolicy":{"platformTypes":[]},"expirationDateTime":null,"displayTimeToLive":null}`,
		// Limits count characters, and the payload as a client serializes
		// it, where < is one byte and not json.Marshal's six.
		`{"appNotificationId":"` + strings.Repeat("é", 256) + `","groupName":"` + strings.Repeat("日", 256) + `","payload":{"rawContent":"x"}}`,
		`{"payload":{"rawContent":"` + strings.Repeat(`\u003c&>`, 1300) + `"}}`,
	}
	fuzzValidSubscriptions = []string{
		`{"targetHostName":"tasks.contoso.com","platformType":"web","deviceName":"Alice's laptop","channel":{"type":"live"},
		  "expirationDateTime":"2026-12-27T00:00:00.000Z"}`,
		`{"TargetHostName":"tasks.contoso.com","PlatformType":"WebPush","DeviceName":"Edge","Channel":{"Type":"webPush",
		  "endpoint":"https://fcm.googleapis.com/fcm/send/abc:def","expirationTime":null,
		  "keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"BTBZMqHH6r4Tts7J_aSIgg=="}}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"android","channel":{"type":"webhook","url":"https://hooks.example.com/herald"}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"android","channel":{"type":"fcm","token":"fcm-registration-token"}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"iOS","channel":{"type":"apns","token":"` + strings.Repeat("ab", 32) + `","topic":"com.contoso.tasks","environment":"sandbox"}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"windows","channel":{"type":"LIVE"},"expirationDateTime":null}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"web","channel":{"type":"live"},"deviceName":"` + strings.Repeat("日", 256) + `"}`,
	}
	fuzzValidPatches = []string{
		`{"readState":"read"}`, `{"userActionState":"dismissed"}`, `{"ReadState":"UNREAD","UserActionState":"Snoozed"}`,
		`{"readState":"read","userActionState":"noInteraction"}`, `{"userActionState":"activated"}`,
	}
)

func TestFuzzValidSeedsAreAccepted(t *testing.T) {
	for _, s := range fuzzValidNotifications {
		var in resource.NotificationInput
		if err := decodeBytes([]byte(s), &in); err != nil {
			t.Errorf("decode %s: %v", s, err)
		} else if verr := in.Validate(fuzzNow, fuzzHost); verr != nil {
			t.Errorf("validate %s: %v", s, verr)
		}
	}
	for _, s := range fuzzValidSubscriptions {
		var in resource.SubscriptionInput
		if err := decodeBytes([]byte(s), &in); err != nil {
			t.Errorf("decode %s: %v", s, err)
		} else if verr := in.Validate(fuzzNow); verr != nil {
			t.Errorf("validate %s: %v", s, verr)
		}
	}
	for _, s := range fuzzValidPatches {
		var p resource.NotificationPatch
		if err := decodeBytes([]byte(s), &p); err != nil {
			t.Errorf("decode %s: %v", s, err)
		} else if verr := p.Validate(); verr != nil {
			t.Errorf("validate %s: %v", s, verr)
		}
	}
}

func FuzzDecodeNotification(f *testing.F) {
	for _, s := range append(fuzzValidNotifications[:len(fuzzValidNotifications):len(fuzzValidNotifications)],
		// Tricky ones.
		``, ` `, `null`, `[]`, `[{"payload":{"rawContent":"x"}}]`, `"x"`, `{}`, `{"payload":null}`, `{"payload":{}}`,
		`{"payload":{"rawContent":"x"}} {}`, `{"payload":{"rawContent":"x"}}]`, `{"payload":{"rawContent":"x"}`,
		`{"payload":{"rawContent":"x"},"unknown":1}`, `{"payload":{"rawContent":"x","extra":true}}`,
		`{"payload":{"visualContent":{"title":"  "}}}`, `{"payload":{"visualContent":{"body":"no title"}}}`,
		`{"payload":{"rawContent":5}}`, `{"payload":"x"}`, `{"payload":[]}`,
		`{"payload":{"rawContent":"x"},"displayTimeToLive":"abc"}`, `{"payload":{"rawContent":"x"},"displayTimeToLive":-1}`,
		`{"payload":{"rawContent":"x"},"displayTimeToLive":2592001}`, `{"payload":{"rawContent":"x"},"displayTimeToLive":1e3}`,
		`{"payload":{"rawContent":"x"},"displayTimeToLive":" 60 "}`, `{"payload":{"rawContent":"x"},"displayTimeToLive":true}`,
		`{"payload":{"rawContent":"x"},"displayTimeToLive":"99999999999999999999999"}`,
		`{"payload":{"rawContent":"x"},"expirationDateTime":"not a time"}`,
		`{"payload":{"rawContent":"x"},"expirationDateTime":"2026-11-27T09:29:59.999Z"}`,
		`{"payload":{"rawContent":"x"},"expirationDateTime":"2027-01-01T00:00:00Z"}`,
		`{"payload":{"rawContent":"x"},"expirationDateTime":"2026-11-28T09:30:00.123456789+14:00"}`,
		`{"payload":{"rawContent":"x"},"expirationDateTime":"0001-01-01T00:00:00Z"}`,
		`{"payload":{"rawContent":"x"},"expirationDateTime":5}`,
		`{"payload":{"rawContent":"x"},"targetPolicy":{"platformTypes":"ios"}}`,
		`{"payload":{"rawContent":"x"},"targetPolicy":{"platformTypes":["linux"]}}`,
		`{"payload":{"rawContent":"x"},"targetPolicy":{"platformTypes":[null]}}`,
		`{"payload":{"rawContent":"x"},"targetPolicy":null}`,
		`{"payload":{"rawContent":"x"},"priority":"urgent"}`,
		`{"payload":{"rawContent":"x"},"targetHostName":"evil.example"}`,
		`{"payload":{"rawContent":"x"},"fallbackPolicy":{}}`,
		`{"payload":{"rawContent":"x"},"fallbackPolicy":{"endpointFallback":{"platformTypes":["iOS","android"],"fallbackDelayInSeconds":60,"visualContent":{"title":"f"}}}}`,
		`{"payload":{"rawContent":"x"},"fallbackPolicy":{"endpointFallback":{"platformTypes":"iOS","fallbackDelayInSeconds":59,"visualContent":{"title":"f"}}}}`,
		`{"payload":{"rawContent":"x"},"fallbackPolicy":{"endpointFallback":{"platformTypes":"iOS","fallbackDelayInSeconds":60.5,"visualContent":{"title":"f"}}}}`,
		`{"payload":{"rawContent":"x"},"fallbackPolicy":{"endpointFallback":{"platformTypes":null,"fallbackDelayInSeconds":60,"visualContent":{"title":"f"}}}}`,
		`{"payload":{"rawContent":"x"},"targetPolicy":{"platformTypes":["android"]},"fallbackPolicy":{"endpointFallback":{"platformTypes":"iOS","fallbackDelayInSeconds":60,"visualContent":{"title":"f"}}}}`,
		`{"payload":{"rawContent":"x"},"payload":{"visualContent":{"title":"dup"}}}`,
		`{"appNotificationId":"`+strings.Repeat("é", 257)+`","payload":{"rawContent":"x"}}`,
		`{"payload":{"rawContent":"`+strings.Repeat("<", 4080)+`"}}`,
		`{"groupName":"`+strings.Repeat("g", 257)+`","payload":{"rawContent":"x"}}`,
		`{"payload":{"rawContent":"`+strings.Repeat("x", 4100)+`"}}`,
		"{\"payload\":{\"rawContent\":\"\xff\xfe\"}}",
		"\ufeff{\"payload\":{\"rawContent\":\"x\"}}",
	) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var in resource.NotificationInput
		if err := decodeBytes(data, &in); err != nil {
			fuzzCheckError(t, "decode", err, resource.CodeInvalidRequest)
			return
		}
		if verr := in.Validate(fuzzNow, fuzzHost); verr != nil {
			fuzzCheckError(t, "validate", verr, resource.CodeInvalidRequest, resource.CodePayloadTooLarge)
			return
		}
		if in.TargetHostName != fuzzHost || in.Payload == nil || in.ExpirationDateTime == nil {
			t.Fatalf("accepted input not normalised: %+v", in)
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(in.Payload); err != nil || b.Len()-1 > resource.MaxPayloadBytes {
			t.Fatalf("accepted a %d-byte payload (%v)", b.Len()-1, err)
		}
		n := in.NewNotification("id", fuzzNow)
		if _, err := json.Marshal(n); err != nil {
			t.Fatalf("notification does not encode: %v", err)
		}
		fuzzStable(t, data, &in, func(in *resource.NotificationInput) *resource.Error { return in.Validate(fuzzNow, fuzzHost) })
	})
}

func FuzzDecodeSubscription(f *testing.F) {
	for _, s := range append(fuzzValidSubscriptions[:len(fuzzValidSubscriptions):len(fuzzValidSubscriptions)],
		// Tricky ones.
		``, `[]`, `{}`, `{"targetHostName":"tasks.contoso.com","platformType":"web"}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"linux","channel":{"type":"live"}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"web","channel":{"type":"live","url":"https://x"}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"web","channel":{"type":"webhook","url":"ftp://x"}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"web","channel":{"type":"webhook","url":"https://user:pw@x"}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"web","channel":{"type":"webPush","endpoint":"https://x","keys":{"p256dh":"AA","auth":"AA"}}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"ios","channel":{"type":"apns","token":"zz","topic":"t"}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"ios","channel":{"type":"apns","token":"`+strings.Repeat("ab", 32)+`","topic":"t","environment":"dev"}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"web","channel":{"type":"carrier pigeon"}}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"web","channel":{"type":"live"},"expirationDateTime":"2027-06-01T00:00:00Z"}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"web","channel":{"type":"live"},"expirationDateTime":"2020-01-01T00:00:00Z"}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"web","channel":{"type":"live"},"deviceName":"`+strings.Repeat("d", 257)+`"}`,
		`{"targetHostName":"tasks.contoso.com","platformType":"web","channel":{"type":"live"},"id":"forged"}`,
		`{"targetHostName":5}`, `{"channel":"live"}`,
	) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var in resource.SubscriptionInput
		if err := decodeBytes(data, &in); err != nil {
			fuzzCheckError(t, "decode", err, resource.CodeInvalidRequest)
			return
		}
		if verr := in.Validate(fuzzNow); verr != nil {
			fuzzCheckError(t, "validate", verr, resource.CodeInvalidRequest)
			return
		}
		if in.Channel == nil || in.ExpirationDateTime == nil || in.TargetHostName == "" {
			t.Fatalf("accepted input not normalised: %+v", in)
		}
		if _, ok := resource.NormalizePlatform(in.PlatformType); !ok {
			t.Fatalf("accepted platformType %q", in.PlatformType)
		}
		fuzzStable(t, data, &in, func(in *resource.SubscriptionInput) *resource.Error { return in.Validate(fuzzNow) })
	})
}

func FuzzNotificationPatch(f *testing.F) {
	for _, s := range append(fuzzValidPatches[:len(fuzzValidPatches):len(fuzzValidPatches)],
		``, `{}`, `[]`, `{"readState":null}`, `{"readState":1}`, `{"readState":"seen"}`, `{"status":"deleted"}`,
		`{"readState":"read","payload":{"rawContent":"x"}}`, `{"readState":"read"}x`, `{"userActionState":"dismissed"`,
	) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p resource.NotificationPatch
		if err := decodeBytes(data, &p); err != nil {
			fuzzCheckError(t, "decode", err, resource.CodeInvalidRequest)
			return
		}
		if verr := p.Validate(); verr != nil {
			fuzzCheckError(t, "validate", verr, resource.CodeInvalidRequest)
			return
		}
		if p.ReadState != nil && *p.ReadState != resource.ReadRead && *p.ReadState != resource.ReadUnread {
			t.Fatalf("accepted readState %q", *p.ReadState)
		}
		if p.UserActionState != nil {
			switch *p.UserActionState {
			case resource.ActionNone, resource.ActionActivated, resource.ActionDismissed, resource.ActionSnoozed:
			default:
				t.Fatalf("accepted userActionState %q", *p.UserActionState)
			}
		}
		fuzzStable(t, data, &p, func(p *resource.NotificationPatch) *resource.Error { return p.Validate() })
	})
}
