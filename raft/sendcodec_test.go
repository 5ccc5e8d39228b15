package raft

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/herald-notify/herald/resource"
)

// texts covers what JSON escapes or encoding/json rewrites: quotes and
// backslashes, HTML, control bytes, U+2028, bytes that are not UTF-8.
var texts = []string{"", "a", "plain text 123", "héllo wörld", "😀", "<b>&amp;</b>", `x"y\z`,
	"line\nbreak\ttab", "\x01\x7f", "\u2028\u2029", "\xff\xfe bad", "bench-42", "2026-12-03T10:00:00.000Z"}

// fill sets v, recursively, to random values: every string, number,
// pointer and slice field of the types a send holds, including fields
// added after this test was written.
func fill(r *rand.Rand, v reflect.Value) {
	if v.Type() == reflect.TypeFor[resource.Time]() {
		if r.IntN(8) > 0 {
			v.Set(reflect.ValueOf(resource.At(time.UnixMilli(r.Int64N(4e12)))))
		}
		return
	}
	if v.Type() == reflect.TypeFor[json.RawMessage]() {
		if r.IntN(2) == 0 {
			v.SetBytes([]byte(`{"k":[1,"<x>"]}`))
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(texts[r.IntN(len(texts))])
	case reflect.Int, reflect.Int64:
		v.SetInt([]int64{0, 1, -7, 1 << 40, -1 << 62}[r.IntN(5)])
	case reflect.Int8, reflect.Int16, reflect.Int32:
		v.SetInt(int64(r.IntN(100) - 50))
	case reflect.Uint64:
		v.SetUint([]uint64{0, 1, 1 << 63}[r.IntN(3)])
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		v.SetUint(uint64(r.IntN(200)))
	case reflect.Float64, reflect.Float32:
		v.SetFloat(float64(r.IntN(1000)) / 8)
	case reflect.Map:
		if r.IntN(2) == 0 {
			m := reflect.MakeMap(v.Type())
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(r, k)
			fill(r, e)
			m.SetMapIndex(k, e)
			v.Set(m)
		}
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Pointer:
		if r.IntN(3) > 0 {
			p := reflect.New(v.Type().Elem())
			fill(r, p.Elem())
			v.Set(p)
		}
	case reflect.Slice:
		switch r.IntN(4) {
		case 0: // nil
		case 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			s := reflect.MakeSlice(v.Type(), 1+r.IntN(3), 3)
			for i := range s.Len() {
				fill(r, s.Index(i))
			}
			v.Set(s)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(r, v.Field(i))
			}
		}
	default:
		panic("fill: no case for " + v.Type().String())
	}
}

// randomSend is a send as the API makes it, with random content.
func randomSend(r *rand.Rand) *Command {
	n := &resource.NotificationRecord{}
	fill(r, reflect.ValueOf(n).Elem())
	if r.IntN(4) > 0 {
		n.FallbackPolicy = nil // rare from the API, and left to encoding/json
	}
	if n.TargetPolicy.PlatformTypes == nil && r.IntN(4) > 0 {
		n.TargetPolicy.PlatformTypes = []string{}
	}
	c := &Command{Op: OpSend, Now: r.Int64(), Notif: n}
	if r.IntN(2) == 0 {
		c.RequestID = texts[r.IntN(len(texts))]
	}
	if r.IntN(2) == 0 {
		c.MaxItems = r.IntN(1000)
	}
	return c
}

// canonicalSend is a send in the shape every send from the API has.
func canonicalSend(i int) *Command {
	now := time.UnixMilli(1_796_000_000_000 + int64(i))
	raw := "b:1:2"
	return &Command{Op: OpSend, Now: now.UnixNano(), RequestID: "x.1", MaxItems: 5000, Notif: &resource.NotificationRecord{
		Notification: resource.Notification{ID: "n1", TargetHostName: "a.example", AppNotificationID: "bench-1",
			Payload:      resource.Payload{RawContent: &raw, VisualContent: &resource.VisualContent{Title: "Build 1", Body: "passed"}},
			TargetPolicy: resource.TargetPolicy{PlatformTypes: []string{}}, Priority: "High",
			ExpirationDateTime: resource.At(now.Add(time.Hour)), CreatedDateTime: resource.At(now),
			LastModifiedDateTime: resource.At(now), ReadState: "unread", UserActionState: "noInteraction", Status: "active"},
		UserID: "u1", AppID: "a1"}}
}

func marshalEntry(t *testing.T, cmds []*Command) []byte {
	t.Helper()
	b, err := json.Marshal(cmds)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{entryJSON}, b...)
}

// Entries of sends, of other commands and of both are written byte for
// byte as json.Marshal writes them and read back as json.Unmarshal reads
// them; the notifications and records the FSM stores likewise.
func TestSendCodecMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fast := 0
	for round := range 3000 {
		cmds := make([]*Command, 1+r.IntN(4))
		for i := range cmds {
			cmds[i] = randomSend(r)
			if r.IntN(10) == 0 {
				// Another command, or a send with a field a send from
				// the API does not set.
				fill(r, reflect.ValueOf(cmds[i]).Elem())
				if r.IntN(2) == 0 {
					cmds[i].Op = OpSend
				}
			}
		}
		want := marshalEntry(t, cmds)
		got, err := encodeEntry(cmds)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: entry\n got %s\nwant %s", round, got, want)
		}
		var wantCmds []*Command
		if err := json.Unmarshal(want[1:], &wantCmds); err != nil {
			t.Fatal(err)
		}
		gotCmds, err := decodeEntry(want)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotCmds, wantCmds) {
			t.Fatalf("round %d: decoded\n got %+v\nwant %+v", round, gotCmds, wantCmds)
		}
		if _, ok := decodeSends(want[1:]); ok {
			fast++
		}
		for _, c := range cmds {
			if c.Notif == nil {
				continue
			}
			n := c.Notif
			if want, _ := json.Marshal(n.Notification); !bytes.Equal(appendNotification(nil, &n.Notification), want) {
				t.Fatalf("notification\n got %s\nwant %s", appendNotification(nil, &n.Notification), want)
			}
			if want, _ := json.Marshal(n); !bytes.Equal(appendNotificationRecord(nil, n), want) {
				t.Fatalf("record\n got %s\nwant %s", appendNotificationRecord(nil, n), want)
			}
		}
	}
	// Random sends often hold what the fast path leaves to encoding/json
	// (a null time, a fallbackPolicy, another command); about a fifth of
	// the entries have none of it (625 of 3000 with this seed).
	if fast < 400 {
		t.Errorf("the fast path read %d of 3000 entries", fast)
	}
	for i := range 3 {
		entry := marshalEntry(t, []*Command{canonicalSend(i), canonicalSend(i + 1)})
		if _, ok := decodeSends(entry[1:]); !ok {
			t.Errorf("the fast path refused a send as the API makes it: %s", entry)
		}
	}
}

// Every field of Command other than a send's own makes it not a plain
// send, so that appendSend never drops one; this fails when Command gains
// a field that plainSend does not check.
func TestPlainSendChecksEveryOtherField(t *testing.T) {
	own := map[string]bool{"Op": true, "Now": true, "RequestID": true, "Notif": true, "MaxItems": true}
	r := rand.New(rand.NewPCG(3, 4))
	typ := reflect.TypeFor[Command]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if own[f.Name] {
			continue
		}
		c := canonicalSend(0)
		v := reflect.ValueOf(c).Elem().Field(i)
		for v.IsZero() {
			fill(r, v)
		}
		if plainSend(c) {
			t.Errorf("a send with %s set is taken for a plain send", f.Name)
		}
	}
	if !plainSend(canonicalSend(0)) {
		t.Error("a send as the API makes it is not a plain send")
	}
}

// FuzzDecodeSends: whatever the fast path reads, encoding/json reads too,
// to the same commands.
func FuzzDecodeSends(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 8 {
		b, _ := json.Marshal([]*Command{canonicalSend(i), randomSend(r)})
		f.Add(b)
	}
	b, _ := json.Marshal([]*Command{canonicalSend(0)})
	f.Add(b)
	f.Add([]byte(`[{"op":"send","now":1,"notif":{"id":"a\u00e9\ud83d\ude00","seq":0}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := decodeSends(data)
		if !ok {
			return
		}
		var want []*Command
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("the fast path read what encoding/json refuses (%v): %q", err, data)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded %q\n got %+v\nwant %+v", data, got, want)
		}
	})
}

// FuzzEntryRoundTrip: whatever commands a node reads from an entry, it
// writes as json.Marshal writes them (by hand or not), and reads that back
// to the same commands: a command that a leader could propose but no node
// could read would make its whole entry undecodable, on every replica.
func FuzzEntryRoundTrip(f *testing.F) {
	r := rand.New(rand.NewPCG(15, 16))
	for i := range 8 {
		var c Command
		fill(r, reflect.ValueOf(&c).Elem())
		b, _ := json.Marshal([]*Command{canonicalSend(i), randomSend(r), &c})
		f.Add(b)
	}
	f.Add([]byte(`[{"op":"addPassword","now":1,"credential":{"endDateTime":"9999-12-31T23:59:59-23:59"}}]`))
	f.Add([]byte(`[{"op":"send","now":1,"notif":{"id":"\ud800\u2028<\u0000","expirationDateTime":"2026-01-01T00:00:00.5+14:00"}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds, err := DecodeCommands(data)
		if err != nil {
			return
		}
		for _, c := range cmds {
			want, err := json.Marshal(c)
			if err != nil {
				return // a command json.Marshal refuses is refused when proposed
			}
			if got, _ := appendCommand(nil, c); !bytes.Equal(got, want) {
				t.Fatalf("command %q\n got %s\nwant %s", data, got, want)
			}
		}
		entry, err := encodeEntry(cmds)
		if err != nil {
			t.Fatalf("encode %q: %v", data, err)
		}
		back, err := decodeEntry(entry)
		if err != nil {
			t.Fatalf("%q written as %s, which does not decode: %v", data, entry, err)
		}
		again, err := encodeEntry(back)
		if err != nil || !bytes.Equal(again, entry) {
			t.Fatalf("%q written as %s, then as %s (%v)", data, entry, again, err)
		}
	})
}

// FuzzDecodeSendResult: a follower reads a forwarded send's result (and
// the FSM a remembered one) as encoding/json reads it, and the bytes it
// keeps to answer with are that notification.
func FuzzDecodeSendResult(f *testing.F) {
	r := rand.New(rand.NewPCG(17, 18))
	for i := range 8 {
		n := randomSend(r).Notif.Notification
		if i%2 == 0 {
			n = canonicalSend(i).Notif.Notification
		}
		f.Add(encodeSendResult(SendResult{Notification: n, Created: i%3 == 0, Encoded: appendNotification(nil, &n)}))
	}
	f.Add([]byte(`{"Notification":{"id":"a\u00e9","readState":"unread"},"Created":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeSendResult(b)
		var want SendResult
		werr := json.Unmarshal(b, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: error %v, encoding/json %v", b, err, werr)
		}
		if err != nil {
			return
		}
		got := v.(SendResult)
		if !reflect.DeepEqual(got.Notification, want.Notification) || got.Created != want.Created {
			t.Fatalf("%q\n got %+v\nwant %+v", b, got, want)
		}
		if got.Encoded != nil {
			var n resource.Notification
			if err := json.Unmarshal(got.Encoded, &n); err != nil || !reflect.DeepEqual(n, got.Notification) {
				t.Fatalf("%q: keeps %s, which reads as %+v (%v)", b, got.Encoded, n, err)
			}
		}
	})
}

// BenchmarkEntryCodec encodes and decodes an entry of 64 sends, by hand
// and with encoding/json; one op is one send.
func BenchmarkEntryCodec(b *testing.B) {
	cmds := make([]*Command, 64)
	for i := range cmds {
		cmds[i] = canonicalSend(i)
	}
	b.Run("sendcodec", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i += len(cmds) {
			data, err := encodeEntry(cmds)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := decodeEntry(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i += len(cmds) {
			data, err := json.Marshal(cmds)
			if err != nil {
				b.Fatal(err)
			}
			var out []*Command
			if err := json.Unmarshal(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The records a send writes besides the notification are byte for byte
// what json.Marshal writes, for random values of every field (a field
// added to one of these types and not to its encoder fails here).
func TestSendRecordsMatchMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for range 3000 {
		var d resource.DeliveryRecord
		fill(r, reflect.ValueOf(&d).Elem())
		if want, _ := json.Marshal(d); !bytes.Equal(encodeDelivery(&d), want) {
			t.Fatalf("delivery\n got %s\nwant %s", encodeDelivery(&d), want)
		}
		var c storedChange
		fill(r, reflect.ValueOf(&c).Elem())
		if want, _ := json.Marshal(&c); !bytes.Equal(encodeStoredChange(&c), want) {
			t.Fatalf("change\n got %s\nwant %s", encodeStoredChange(&c), want)
		}
		var rec requestRecord
		fill(r, reflect.ValueOf(&rec).Elem())
		if r.IntN(2) == 0 {
			rec.Result.Error = nil
		}
		switch r.IntN(4) {
		case 0:
			rec.Result.Value = []byte(`{"a": [1, "x y"],"b":"\u2028 <"}`)
		case 1:
			rec.Result.Value = []byte(`{"a":"x y\"<"}`)
		}
		sent := r.IntN(2) == 0
		if sent {
			n := randomSend(r).Notif.Notification
			w, err := EncodeResult(SendResult{Notification: n, Created: true, Encoded: appendNotification(nil, &n)}, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			rec.Result = *w
		}
		want, _ := json.Marshal(rec)
		got, ok := encodeRequestRecord(&rec)
		if ok && !bytes.Equal(got, want) {
			t.Fatalf("request record\n got %s\nwant %s", got, want)
		}
		if !ok && sent {
			t.Fatalf("a send's result was left to encoding/json: %s", want)
		}
		want, _ = json.Marshal(rec.Result)
		if got, ok := AppendWireResult([]byte("x"), &rec.Result); ok && !bytes.Equal(got[1:], want) {
			t.Fatalf("wire result\n got %s\nwant %s", got[1:], want)
		} else if !ok && sent {
			t.Fatalf("a send's wire result was left to encoding/json: %s", want)
		}
	}
}

// A send's encodings are made in one buffer each: the size estimates
// cover a notification of the bench's shape, and its record with a live
// delivery to each of five streams.
func TestSendEncodingsAllocateOnce(t *testing.T) {
	now := time.Date(2026, 12, 5, 16, 30, 0, 0, time.UTC)
	c := sendCmd(resource.NewGUID(), resource.NewGUID(), "bench-123456", now, now.Add(24*time.Hour))
	n := c.Notif
	raw := "b:123:456"
	n.Payload.RawContent = &raw
	n.Payload.VisualContent = &resource.VisualContent{Title: "Build 123456 finished", Body: "All 1432 tests passed."}
	n.GroupName = "builds"
	for range 5 {
		n.LiveTargets = append(n.LiveTargets, resource.LiveTarget{SubscriptionID: resource.NewGUID(), PlatformType: "windows", PendingSeq: 1 << 40})
	}
	var data []byte
	if a := testing.AllocsPerRun(100, func() {
		data = appendNotification(make([]byte, 0, notificationSize(&n.Notification)), &n.Notification)
	}); a != 1 {
		t.Errorf("the notification's encoding allocated %v times, want 1 (%d bytes, estimated %d)", a, len(data), notificationSize(&n.Notification))
	}
	if a := testing.AllocsPerRun(100, func() { encodeRecord(data, n) }); a != 1 {
		t.Errorf("the record's encoding allocated %v times, want 1 (%d bytes)", a, len(encodeRecord(data, n)))
	}
}
