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
