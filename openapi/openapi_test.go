package openapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestDocumentIsValidOpenAPI31 loads the served JSON with kin-openapi and
// validates it as an OpenAPI 3.1 document, examples and patterns included.
func TestDocumentIsValidOpenAPI31(t *testing.T) {
	b, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi is %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation(), openapi3.EnableSchemaPatternValidation()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if doc.Paths.Len() < 30 {
		t.Fatalf("only %d paths", doc.Paths.Len())
	}
}

// TestKeyOrderKept checks that the JSON keeps the YAML's order, which the
// reference page relies on to list paths as written.
func TestKeyOrderKept(t *testing.T) {
	got, err := toJSON([]byte("b: 1\na: [x, 2, true, null, 1.5]\nc: {z: '3', y: '2026-01-01'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var compact = func(s string) string {
		var v json.RawMessage = []byte(s)
		out, _ := json.Marshal(v)
		return string(out)
	}
	want := `{"b":1,"a":["x",2,true,null,1.5],"c":{"z":"3","y":"2026-01-01"}}`
	if compact(string(got)) != want {
		t.Fatalf("got %s, want %s", compact(string(got)), want)
	}
}

func TestHandlerServesJSONWithETag(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	tag := rec.Header().Get("ETag")
	req := httptest.NewRequest(http.MethodGet, "/openapi.json", nil)
	req.Header.Set("If-None-Match", tag)
	rec = httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	if tag == "" || rec.Code != http.StatusNotModified {
		t.Fatalf("revalidation with ETag %q answered %d", tag, rec.Code)
	}
}
