package httpapi

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/herald-notify/herald/resource"
)

// checkSendBody holds readSendBody to encoding/json on body: what the fast
// path reads, encoding/json reads alike and accepts; what encoding/json
// refuses, the fast path leaves to it. It reports whether the fast path
// read the body.
func checkSendBody(t *testing.T, body []byte) bool {
	t.Helper()
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' || !utf8.Valid(trimmed) {
		return false // decodeBytes refuses these before either decoder
	}
	var fast, strict resource.NotificationInput
	fastOK := readSendBody(trimmed, &fast)
	err := decodeStrict(trimmed, &strict)
	if !fastOK {
		if !reflect.DeepEqual(fast, resource.NotificationInput{}) {
			t.Fatalf("%s: the fast path gave up but changed its value: %+v", body, fast)
		}
		return false
	}
	if err != nil {
		t.Fatalf("%s: the fast path read it, encoding/json refuses it: %v", body, err)
	}
	if !reflect.DeepEqual(fast, strict) {
		t.Fatalf("%s: read differently\nfast:          %s\nencoding/json: %s", body, dump(fast), dump(strict))
	}
	return true
}

func dump(in resource.NotificationInput) string {
	s := fmt.Sprintf("%+v", in)
	if in.Payload != nil {
		s += fmt.Sprintf(" payload=%+v", *in.Payload)
		if in.Payload.RawContent != nil {
			s += fmt.Sprintf(" raw=%q", *in.Payload.RawContent)
		}
		if in.Payload.VisualContent != nil {
			s += fmt.Sprintf(" visual=%+v", *in.Payload.VisualContent)
		}
	}
	if in.TargetPolicy != nil {
		s += fmt.Sprintf(" policy=%#v", in.TargetPolicy.PlatformTypes)
	}
	if in.DisplayTimeToLive != nil {
		s += fmt.Sprintf(" ttl=%d", *in.DisplayTimeToLive)
	}
	if in.ExpirationDateTime != nil {
		s += fmt.Sprintf(" exp=%v", *in.ExpirationDateTime)
	}
	return s
}

// The bodies applications send take the fast path, and read as
// encoding/json reads them; the rest go to encoding/json.
func TestSendBodiesReadAsEncodingJSONReadsThem(t *testing.T) {
	for _, s := range []string{
		sendBody,
		`{"payload":{"rawContent":"x"}}`,
		`{}`,
		`{"payload":{}}`,
		`{"payload":{"visualContent":{"title":"Build 7 finished","body":"All tests passed."}},"targetHostName":"tasks.contoso.com","appNotificationId":"build-7","groupName":"builds","priority":"High","displayTimeToLive":60,"expirationDateTime":"2026-12-05T09:30:00.000Z","targetPolicy":{"platformTypes":["windows","iOS"]}}`,
		" {\n\t\"payload\" : { \"rawContent\" : \"é ✓ 😀\" } ,\r\n \"targetPolicy\":{ \"platformTypes\" : [ ] } } ",
		`{"targetPolicy":{}}`,
		`{"displayTimeToLive":0}`,
		`{"expirationDateTime":"2026-11-28T09:30:00.123456789+14:00"}`,
		"{\"payload\":{\"rawContent\":\"<b>&amp;</b> \u2028\"}}", // a real U+2028, not an escape
	} {
		if !checkSendBody(t, []byte(s)) {
			t.Errorf("%s: expected the fast path to read it", s)
		}
	}
	for _, s := range []string{
		`{"payload":{"rawContent":"a\"b"}}`,                  // escape
		`{"payload":{"rawContent":"a\u00e9"}}`,               // escape
		`{"Payload":{"rawContent":"x"}}`,                     // another case
		`{"payload":null}`,                                   // null
		`{"priority":null,"payload":{"rawContent":"x"}}`,     // null
		`{"payload":{"rawContent":"x"},"payload":{}}`,        // twice
		`{"payload":{"rawContent":"x","rawContent":"y"}}`,    // twice
		`{"payload":{"rawContent":"x"},"fallbackPolicy":{}}`, // left to encoding/json
		`{"payload":{"rawContent":"x"},"unknown":1}`,
		`{"displayTimeToLive":"60"}`,
		`{"displayTimeToLive":1e3}`,
		`{"displayTimeToLive":60.0}`,
		`{"displayTimeToLive":-1}`,
		`{"displayTimeToLive":007}`,
		`{"displayTimeToLive":2592001}`,
		`{"expirationDateTime":"tomorrow"}`,
		`{"expirationDateTime":5}`,
		`{"targetPolicy":{"platformTypes":"ios"}}`,
		`{"targetPolicy":{"platformTypes":["ios",]}}`,
		`{"payload":{"rawContent":"x"},}`,
		`{"payload":{"rawContent":"x"}} {}`,
		`{"payload":{"rawContent":"x"}`,
		"{\"payload\":{\"rawContent\":\"a\tb\"}}", // a raw control character
	} {
		if checkSendBody(t, []byte(s)) {
			t.Errorf("%s: expected the fast path to leave it to encoding/json", s)
		}
	}
}

// Generated bodies, most of them near the shape the fast path reads and
// many just off it, are read alike by both.
func TestGeneratedSendBodiesReadAlike(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 29))
	fast := 0
	const n = 20000
	for range n {
		if checkSendBody(t, genSendBody(rng)) {
			fast++
		}
	}
	// The generator is built so that about half its bodies are plain; if
	// none took the fast path, the comparison above proved nothing.
	if fast < n/10 {
		t.Fatalf("only %d of %d generated bodies took the fast path", fast, n)
	}
	t.Logf("%d of %d generated bodies took the fast path", fast, n)
}

func FuzzReadSendBody(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 5))
	for range 64 {
		f.Add(genSendBody(rng))
	}
	f.Add([]byte(sendBody))
	f.Fuzz(func(t *testing.T, body []byte) { checkSendBody(t, body) })
}

// genSendBody writes a body with some of the properties, in any order, and
// now and then something the fast path must not take for plain.
func genSendBody(rng *rand.Rand) []byte {
	odd := func() bool { return rng.IntN(12) == 0 }
	ws := func() string {
		if rng.IntN(3) > 0 {
			return ""
		}
		return []string{" ", "\n", "\t", "\r\n  ", "  "}[rng.IntN(5)]
	}
	str := func() string {
		if odd() {
			return []string{`null`, `5`, `true`, `{}`, `[]`, `"a\"b"`, `"\u00e9"`, `"a\\b"`, "\"a\tb\"", `"`, `"x`}[rng.IntN(11)]
		}
		parts := []string{"", "x", "Build 7", "é", "😀", "<&>", "\u2028", "a b c", "\x7f", strings.Repeat("y", rng.IntN(40))}
		return `"` + parts[rng.IntN(len(parts))] + parts[rng.IntN(len(parts))] + `"`
	}
	key := func(k string) string {
		if odd() {
			switch rng.IntN(3) {
			case 0:
				k = strings.ToUpper(k[:1]) + k[1:]
			case 1:
				k = "x" + k
			default:
				k = strings.ToLower(k)
			}
		}
		return ws() + `"` + k + `"` + ws() + ":" + ws()
	}
	object := func(members []string) string {
		rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
		if odd() && len(members) > 0 {
			members = append(members, members[rng.IntN(len(members))]) // a property twice
		}
		s := "{" + ws() + strings.Join(members, ","+ws()) + ws()
		if odd() {
			s += ","
		}
		return s + "}"
	}
	some := func(p float64, m string, members *[]string) {
		if rng.Float64() < p {
			*members = append(*members, m)
		}
	}
	var visual []string
	some(0.9, key("title")+str(), &visual)
	some(0.5, key("body")+str(), &visual)
	var payload []string
	some(0.6, key("rawContent")+str(), &payload)
	some(0.6, key("visualContent")+object(visual), &payload)
	var platforms []string
	for range rng.IntN(4) {
		platforms = append(platforms, ws()+str()+ws())
	}
	list := "[" + strings.Join(platforms, ",") + "]"
	if odd() {
		list = []string{`null`, `"ios"`, `[`, `[,]`, `["a",]`}[rng.IntN(5)]
	}
	var policy []string
	some(0.7, key("platformTypes")+list, &policy)
	ttl := []string{"0", "60", "2592000", "2592001", "123456789", "1234567890", "-5", "1.5", "1e2", "07", `"60"`, "null"}[rng.IntN(12)]
	exp := []string{`"2026-12-05T09:30:00.000Z"`, `"2026-12-05T09:30:00Z"`, `"2026-12-05T09:30:00.123456789+14:00"`, `"tomorrow"`, `""`, `5`, `null`}[rng.IntN(7)]
	var top []string
	some(0.9, key("payload")+object(payload), &top)
	some(0.4, key("targetHostName")+str(), &top)
	some(0.5, key("appNotificationId")+str(), &top)
	some(0.3, key("groupName")+str(), &top)
	some(0.3, key("priority")+str(), &top)
	some(0.3, key("targetPolicy")+object(policy), &top)
	some(0.3, key("displayTimeToLive")+ttl, &top)
	some(0.3, key("expirationDateTime")+exp, &top)
	some(0.05, key("fallbackPolicy")+"{}", &top)
	body := ws() + object(top) + ws()
	if odd() {
		body += []string{"{}", "]", "x", " ,"}[rng.IntN(4)]
	}
	if odd() && len(body) > 2 {
		body = body[:rng.IntN(len(body))]
	}
	return []byte(body)
}

// decodeBytes merges into a value already filled, as encoding/json does,
// rather than let the fast path replace it.
func TestSendBodyIntoAFilledValueMerges(t *testing.T) {
	in := resource.NotificationInput{GroupName: "kept"}
	if err := decodeBytes([]byte(`{"payload":{"rawContent":"x"}}`), &in); err != nil {
		t.Fatal(err)
	}
	if in.GroupName != "kept" || in.Payload == nil || in.Payload.RawContent == nil || *in.Payload.RawContent != "x" {
		t.Fatalf("decoded into a filled value: %s", dump(in))
	}
}
