package httpapi

import "testing"

// propertyHolding names the property of a value as encoding/json writes it
// in a type error, at any depth, past arrays and earlier nested objects.
func TestPropertyHolding(t *testing.T) {
	body := []byte(`{"a":1,"b":{"c":[1,{"d":"x"}],"e":"tomorrow"},"f":true,"g":{"h":null,"i":12.5}}`)
	for value, want := range map[string]string{
		`"tomorrow"`: "b.e",
		`"x"`:        "b.c.d",
		`true`:       "f",
		`null`:       "g.h",
		`12.5`:       "g.i",
		`1`:          "a",
		`"absent"`:   "",
	} {
		if got := propertyHolding(body, value); got != want {
			t.Errorf("propertyHolding(%s) = %q, want %q", value, got, want)
		}
	}
}

// An escaped surrogate with no partner is no character: the decoders would
// store U+FFFD for it, so the body is refused and says where.
func TestLoneSurrogateEscapesAreFound(t *testing.T) {
	for body, want := range map[string]int{
		`{"a":"\ud800"}`:             6,
		`{"a":"x\udc00"}`:            7,
		`{"a":"\ud800\u0041"}`:       6,
		`{"a":"\ud83d\ude00"}`:       -1, // a pair: one character
		`{"a":"\\ud800"}`:            -1, // a backslash, then text
		`{"a":"\u00e9\"\ud800"}`:     14,
		`{"\ud800":1}`:               2,
		`{"a":"plain"}`:              -1,
		`{"a":"\ud83d\ude00\udc00"}`: 18,
		`{"a":"\ud83d"} `:            6,
		`{"a":"\uZZZZ\ud800"}`:       12,
	} {
		if got := loneSurrogateAt([]byte(body)); got != want {
			t.Errorf("%s: %d, want %d", body, got, want)
		}
	}
}
