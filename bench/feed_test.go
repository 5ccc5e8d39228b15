package bench

import (
	"encoding/json"
	"strings"
	"testing"
)

// pageOf builds a page as httpapi's writeEncoded does: the items as
// encoded, then the links as json.Marshal escapes them.
func pageOf(t *testing.T, items []string, next, delta string) []byte {
	t.Helper()
	b := []byte(`{"value":[` + strings.Join(items, ",") + `]`)
	for _, l := range []struct{ name, link string }{{"@odata.nextLink", next}, {"@odata.deltaLink", delta}} {
		if l.link == "" {
			continue
		}
		q, err := json.Marshal(l.link)
		if err != nil {
			t.Fatal(err)
		}
		b = append(append(b, `,"`+l.name+`":`...), q...)
	}
	return append(b, '}')
}

func TestReadPageReadsTheLinkAsADecoderDoes(t *testing.T) {
	trap := `{"id":"1","payload":{"rawContent":"{\"value\":[],\"@odata.nextLink\":\"https://evil/\"}"}}`
	cases := []struct {
		name        string
		items       []string
		next, delta string
	}{
		{"middle", []string{`{"id":"a"}`, `{"id":"b"}`}, "https://h/v1.0/me/notifications?$top=50&$skiptoken=x<y>", ""},
		{"last", []string{`{"id":"a"}`}, "", ""},
		{"delta, more", []string{`{"id":"a"}`}, "https://h/v1.0/me/notifications/delta?$skiptoken=d&$top=50", ""},
		{"delta, done", []string{`{"id":"a"}`}, "", "https://h/v1.0/me/notifications/delta?$deltatoken=z"},
		{"empty", nil, "", "https://h/d"},
		{"a link inside a value", []string{trap}, "https://h/real", ""},
		{"a link inside the last value", []string{trap}, "", ""},
	}
	for _, c := range cases {
		p := pageOf(t, c.items, c.next, c.delta)
		for _, whole := range []bool{true, false} {
			link, empty, err := readPage(p, whole)
			if err != nil {
				t.Fatalf("%s (whole %v): %v", c.name, whole, err)
			}
			if link != c.next || empty != (len(c.items) == 0) {
				t.Errorf("%s (whole %v): link %q empty %v, want %q %v", c.name, whole, link, empty, c.next, len(c.items) == 0)
			}
		}
	}
}

func TestReadPageRefusesWhatIsNotAPage(t *testing.T) {
	for _, b := range []string{``, `{"error":{"code":"x"}}`, `{"value":[{"id":"a"}],"@odata.nextLink":"https://h/`, `{"value":[{"id":"a"}],"@odata.nextLink":7}`} {
		for _, whole := range []bool{true, false} {
			if _, _, err := readPage([]byte(b), whole); err == nil {
				t.Errorf("%q (whole %v) was read as a page", b, whole)
			}
		}
	}
	// Only the whole read sees inside the items.
	if _, _, err := readPage([]byte(`{"value":[{"id":],"@odata.nextLink":"x"}`), true); err == nil {
		t.Error("a broken item was read as a page")
	}
}
