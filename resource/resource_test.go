package resource

import (
	"bytes"
	"crypto/ecdh"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNotificationDefaultsFollowTheContract(t *testing.T) {
	now := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	var in NotificationInput
	body := `{"Payload":{"VisualContent":{"Title":"Hi"}},"DisplayTimeToLive":"60","TargetPolicy":{"PlatformTypes":["Web","iOS"]}}`
	if err := json.Unmarshal([]byte(body), &in); err != nil {
		t.Fatal(err)
	}
	if err := in.Validate(now, "tasks.contoso.com"); err != nil {
		t.Fatal(err)
	}
	n := in.NewNotification("id", now)
	if n.Priority != PriorityHigh || n.TargetHostName != "tasks.contoso.com" || *n.DisplayTimeToLive != 60 ||
		!n.ExpirationDateTime.Equal(now.Add(DefaultNotificationTTL)) || n.ReadState != ReadUnread {
		t.Fatalf("defaults: %+v", n)
	}
	if got := strings.Join(n.TargetPolicy.PlatformTypes, ","); got != "webPush,ios" {
		t.Fatalf("targetPolicy = %s, want webPush,ios", got)
	}
	if !n.Targets(PlatformWeb) || !n.Targets(PlatformIOS) || n.Targets(PlatformAndroid) {
		t.Fatal("Targets disagrees with the policy")
	}
	raw := "r"
	in = NotificationInput{Payload: &Payload{RawContent: &raw}}
	if err := in.Validate(now, "h.example"); err != nil || in.Priority != PriorityNone {
		t.Fatalf("raw notification: priority %q, %v; want None", in.Priority, err)
	}
}

func TestNotificationRulesNameTheField(t *testing.T) {
	now := time.Now()
	ok := func() *Payload { return &Payload{VisualContent: &VisualContent{Title: "t"}} }
	big := strings.Repeat("x", 4100)
	past, far := At(now.Add(-time.Minute)), At(now.Add(31*24*time.Hour))
	cases := map[string]struct {
		in     NotificationInput
		target string
		code   string
	}{
		"no payload":         {NotificationInput{}, "payload", CodeInvalidRequest},
		"visual, no title":   {NotificationInput{Payload: &Payload{VisualContent: &VisualContent{Body: "b"}}}, "payload.visualContent.title", CodeInvalidRequest},
		"payload too large":  {NotificationInput{Payload: &Payload{RawContent: &big}}, "payload", CodePayloadTooLarge},
		"other host":         {NotificationInput{Payload: ok(), TargetHostName: "other.example"}, "targetHostName", CodeInvalidRequest},
		"bad priority":       {NotificationInput{Payload: ok(), Priority: "urgent"}, "priority", CodeInvalidRequest},
		"expiry in the past": {NotificationInput{Payload: ok(), ExpirationDateTime: &past}, "expirationDateTime", CodeInvalidRequest},
		"expiry too far":     {NotificationInput{Payload: ok(), ExpirationDateTime: &far}, "expirationDateTime", CodeInvalidRequest},
		"bad platform":       {NotificationInput{Payload: ok(), TargetPolicy: &TargetPolicy{PlatformTypes: []string{"xbox"}}}, "targetPolicy.platformTypes", CodeInvalidRequest},
		"fallback without iOS target": {NotificationInput{Payload: ok(), TargetPolicy: &TargetPolicy{PlatformTypes: []string{"android"}},
			FallbackPolicy: &FallbackPolicy{EndpointFallback: &EndpointFallback{PlatformTypes: StringOrList{"iOS"}, FallbackDelayInSeconds: 60,
				VisualContent: &VisualContent{Title: "t"}}}}, "fallbackPolicy", CodeInvalidRequest},
	}
	for name, c := range cases {
		err := c.in.Validate(now, "h.example")
		if err == nil || err.Target != c.target || err.Code != c.code {
			t.Errorf("%s: %v, want %s on %s", name, err, c.code, c.target)
		}
	}
}

func TestChannelValidation(t *testing.T) {
	priv, err := ecdh.P256().GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes())
	good := []Channel{
		{Type: "LIVE"},
		{Type: "webPush", Endpoint: "https://push.example/x", Keys: &PushKeys{P256dh: key, Auth: "AAAAAAAAAAAAAAAAAAAAAA"}},
		{Type: "webhook", URL: "https://hooks.example/h"},
		{Type: "fcm", Token: "abc"},
		{Type: "apns", Token: strings.Repeat("ab", 32), Topic: "com.example.app"},
	}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", c.Type, err)
		}
	}
	bad := map[string]Channel{
		"channel":             {Type: "live", URL: "https://x.example"},
		"channel.keys.p256dh": {Type: "webPush", Endpoint: "https://push.example/x", Keys: &PushKeys{P256dh: "short", Auth: "AAAAAAAAAAAAAAAAAAAAAA"}},
		"channel.url":         {Type: "webhook", URL: "ftp://hooks.example/h"},
		"channel.token":       {Type: "apns", Token: "not hex", Topic: "t"},
		"channel.environment": {Type: "apns", Token: strings.Repeat("ab", 32), Topic: "t", Environment: "staging"},
		"channel.type":        {Type: "sms"},
	}
	for target, c := range bad {
		if err := c.Validate(); err == nil || err.Target != target {
			t.Errorf("%+v: %v, want an error on %s", c, err, target)
		}
	}
	// 65 bytes with the uncompressed prefix, but (0, 0) is on no curve.
	off := Channel{Type: "webPush", Endpoint: "https://push.example/x", Keys: &PushKeys{P256dh: "B" + strings.Repeat("A", 86), Auth: "AAAAAAAAAAAAAAAAAAAAAA"}}
	if err := off.Validate(); err == nil || err.Target != "channel.keys.p256dh" {
		t.Errorf("a p256dh off the curve: %v, want an error on channel.keys.p256dh", err)
	}
}

func TestCursorRoundTripsOnlyItsOwnForm(t *testing.T) {
	for _, seq := range []uint64{0, 1, 35, 36, 1 << 40} {
		if got, ok := ParseCursor(FormatCursor(seq)); !ok || got != seq {
			t.Fatalf("cursor of %d came back as %d, %v", seq, got, ok)
		}
	}
	for _, s := range []string{"", "c", "x1", "c01", "cZ", "c-1"} {
		if _, ok := ParseCursor(s); ok {
			t.Errorf("ParseCursor(%q) accepted", s)
		}
	}
}

// Time reads a plain quoted time without a json.Unmarshal of its own
// (plainString); every input must still read as it did through one.
func TestTimeReadsPlainAndEscapedStringsAlike(t *testing.T) {
	reference := func(b []byte) (time.Time, bool) {
		var s string
		if json.Unmarshal(b, &s) != nil {
			return time.Time{}, false
		}
		v, err := time.Parse(time.RFC3339Nano, s)
		return v, err == nil
	}
	for _, in := range []string{
		`"2026-12-03T17:57:41.015Z"`,
		`"2026-12-03T17:57:41Z"`,
		`"2026-12-03T18:57:41.0155+01:00"`,
		`"2026-12-03T17:57:41.015\u005a"`,
		`"2026-12-03T17:57:41.015Z\n"`,
		`"not a time"`,
		`""`,
		`"2026-12-03T17:57:41.015Ž"`,
		"\"2026-12-03T17:57:41.015\xff\"",
		`123`,
		`"`,
	} {
		var got Time
		err := got.UnmarshalJSON([]byte(in))
		want, ok := reference([]byte(in))
		if (err == nil) != ok {
			t.Errorf("%s: error %v, want an error: %v", in, err, !ok)
			continue
		}
		if ok && !got.Equal(At(want).Time) {
			t.Errorf("%s: %v, want %v", in, got, At(want))
		}
	}
}

// payloadSize counts what an encoder without HTML escaping writes, for
// every kind of character a string can hold: escapes short and long,
// HTML's, multibyte runes, the line separators JSON escapes, invalid UTF-8.
func TestPayloadSizeIsTheEncodedLength(t *testing.T) {
	encoded := func(p *Payload) int {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(p); err != nil {
			t.Fatal(err)
		}
		return b.Len() - 1 // the encoder's newline
	}
	pieces := []string{"", "a", "Build 42 finished", `"`, `\`, "\b\f\n\r\t", "\x00\x01\x1f", "\x7f",
		"<b>&amp;</b>", "é", "日本", "😀", "\u2028\u2029", "\xff", "\xe2\x80", "\xc3", "\xed\xa0\x80"}
	r := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		var sb strings.Builder
		for range r.IntN(6) {
			sb.WriteString(pieces[r.IntN(len(pieces))])
		}
		return sb.String()
	}
	for i := range 20000 {
		var p Payload
		if i%3 != 1 {
			raw := str()
			p.RawContent = &raw
		}
		if i%3 != 0 {
			p.VisualContent = &VisualContent{Title: str(), Body: str()}
		}
		if got, want := payloadSize(&p), encoded(&p); got != want {
			b, _ := json.Marshal(p)
			t.Fatalf("payloadSize %d, the encoder wrote %d bytes: %s", got, want, b)
		}
	}
}

// StringOrList reads as encoding/json reads a []string, and also a lone
// string: a null is no list, not [""] (which json.Marshal then wrote as a
// list of one, so that a command did not read back as it was written).
func TestStringOrListReadsNullAsNoList(t *testing.T) {
	for _, c := range []struct {
		in   string
		want StringOrList
	}{
		{`{"platformTypes":null}`, nil},
		{`{"platformTypes": null }`, nil},
		{`{}`, nil},
		{`{"platformTypes":"iOS"}`, StringOrList{"iOS"}},
		{`{"platformTypes":""}`, StringOrList{""}},
		{`{"platformTypes":[]}`, StringOrList{}},
		{`{"platformTypes":["iOS","x"]}`, StringOrList{"iOS", "x"}},
	} {
		var ef EndpointFallback
		if err := json.Unmarshal([]byte(c.in), &ef); err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if !reflect.DeepEqual(ef.PlatformTypes, c.want) {
			t.Errorf("%s read as %#v, want %#v", c.in, ef.PlatformTypes, c.want)
		}
		b, _ := json.Marshal(ef)
		var back EndpointFallback
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, ef) {
			t.Errorf("%s written as %s, read back as %#v (%v)", c.in, b, back, err)
		}
	}
}
