package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"
)

// A collection written from its items' encodings is byte for byte the one
// json.Marshal writes, links (with '&', '<' and U+2028, which it escapes)
// and empty values included.
func TestWriteEncodedIsMarshal(t *testing.T) {
	items := []any{
		map[string]any{"id": "1", "title": "<b>a & b</b>"},
		map[string]any{"id": "2", "body": "line\u2028sep é"},
		[]int{1, 2},
	}
	link := "https://h.example/v1.0/me/notifications?%24top=50&$skiptoken=abc<>\u2028"
	for _, tc := range []struct {
		name        string
		items       []any
		next, delta string
	}{
		{"next", items, link, ""},
		{"delta", items, "", link},
		{"last", items[:1], "", ""},
		{"empty", []any{}, "", link},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(collection{Value: tc.items, NextLink: tc.next, DeltaLink: tc.delta})
			if err != nil {
				t.Fatal(err)
			}
			var raw [][]byte
			for _, it := range tc.items {
				b, err := json.Marshal(it)
				if err != nil {
					t.Fatal(err)
				}
				raw = append(raw, b)
			}
			rec := httptest.NewRecorder()
			writeRaw(rec, raw, tc.next, tc.delta)
			if got := rec.Body.Bytes(); !bytes.Equal(got, want) {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
			if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json; charset=utf-8" ||
				rec.Header().Get("Content-Length") != strconv.Itoa(len(want)) {
				t.Fatalf("status %d, header %v", rec.Code, rec.Header())
			}
		})
	}
}
