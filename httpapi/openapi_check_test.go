package httpapi_test

// specCheck holds the API to its OpenAPI description (openapi/openapi.yaml):
// an http.RoundTripper that checks every request and response passing
// through it with kin-openapi, and records which operations were answered.

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/herald-notify/herald/openapi"
)

type specCheck struct {
	doc    *openapi3.T
	router routers.Router
	next   http.RoundTripper
	// report receives every disagreement; tests pass t.Errorf.
	report func(format string, args ...any)

	mu sync.Mutex
	// answered maps "METHOD /path template" to the statuses seen.
	answered map[string]map[int]bool
	names    map[string]string // propertyNames
	bodies   *bodySchemas
}

// spec is the served description, loaded once per test process and
// shared by every checker: the document, its router and its compiled
// body schemas.
type spec struct {
	doc    *openapi3.T
	router routers.Router
	names  map[string]string // propertyNames
	bodies *bodySchemas
}

// specHost is the one server the router knows; canonical puts every
// request there, whichever node it goes to.
const specHost = "herald.test"

var loadSpec = sync.OnceValues(func() (*spec, error) {
	b, err := openapi.JSON()
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	// The document's server is "/", the node asked; the router matches
	// hosts.
	doc.Servers = openapi3.Servers{{URL: "http://" + specHost}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	bodies, err := newBodySchemas()
	if err != nil {
		return nil, err
	}
	return &spec{doc: doc, router: router, names: propertyNames(doc), bodies: bodies}, nil
})

func newSpecCheck(report func(string, ...any)) (*specCheck, error) {
	sp, err := loadSpec()
	if err != nil {
		return nil, err
	}
	return &specCheck{doc: sp.doc, router: sp.router, next: http.DefaultTransport, report: report,
		answered: map[string]map[int]bool{}, names: sp.names, bodies: sp.bodies}, nil
}

// outsideAPI are paths that are not API routes: the web UI's files (its
// session endpoints are API routes), the redirect to it, and the nodes'
// own endpoints.
func outsideAPI(p string) bool {
	return p == "/" || strings.HasPrefix(p, "/ui/") && !strings.HasPrefix(p, "/ui/session") ||
		strings.HasPrefix(p, "/internal/")
}

// canonical is the request as the description names it: /beta is an alias
// of /v1.0, an API path's trailing slash is read past, and HEAD is GET
// without a body.
func (c0 *specCheck) canonical(req *http.Request, body []byte) *http.Request {
	c := req.Clone(req.Context())
	u := *req.URL
	u.Scheme, u.Host, c.Host = "http", specHost, specHost
	if p, ok := c0.respelled(u.Path); ok {
		u.Path, u.RawPath = p, ""
	}
	if rest, ok := strings.CutPrefix(u.Path, "/beta/"); ok {
		u.Path = "/v1.0/" + rest
		u.RawPath = ""
	}
	if len(u.Path) > len("/v1.0/") && strings.HasPrefix(u.Path, "/v1.0/") && strings.HasSuffix(u.Path, "/") &&
		!strings.HasSuffix(u.Path, "//") {
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = ""
	}
	c.URL = &u
	if c.Method == http.MethodHead {
		c.Method = http.MethodGet
	}
	plain := decoded(req.Header.Get("Content-Encoding"), body)
	if strings.HasPrefix(req.Header.Get("Content-Type"), "application/json") {
		plain = c0.spelled(plain)
	}
	c.Body = io.NopCloser(bytes.NewReader(plain))
	c.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(plain)), nil }
	c.ContentLength = int64(len(plain))
	return c
}

// respelled gives an API path's fixed segments the description's spelling:
// the server, like Graph, matches them without regard to case under /v1.0
// and /beta (the description says so; a path template cannot). Of the
// templates a path matches so, the one with the most fixed segments
// speaks for it, as net/http's mux prefers the most specific pattern.
func (c *specCheck) respelled(p string) (string, bool) {
	// A trailing slash is read past (canonical), so the path without it
	// names the template.
	trimmed := strings.TrimSuffix(p, "/")
	slash := p[len(trimmed):]
	segs := strings.Split(trimmed, "/")
	if len(segs) < 2 {
		return p, false
	}
	switch {
	case strings.EqualFold(segs[1], "v1.0"):
		segs[1] = "v1.0"
	case strings.EqualFold(segs[1], "beta"):
		segs[1] = "beta"
	default:
		return p, false
	}
	best, fixed := []string(nil), -1
	for tpl := range c.doc.Paths.Map() {
		ts := strings.Split(tpl, "/")
		if len(ts) != len(segs) || ts[1] != "v1.0" {
			continue
		}
		n := 0
		for i := 2; i < len(ts) && n >= 0; i++ {
			switch {
			case strings.HasPrefix(ts[i], "{"):
			case strings.EqualFold(ts[i], segs[i]):
				n++
			default:
				n = -1
			}
		}
		if n > fixed {
			best, fixed = ts, n
		}
	}
	for i := 2; best != nil && i < len(best); i++ {
		if !strings.HasPrefix(best[i], "{") {
			segs[i] = best[i]
		}
	}
	out := strings.Join(segs, "/") + slash
	return out, out != p
}

// spelled gives the properties of a JSON body the description's spelling:
// the server, like Graph, matches property names without regard to case
// (encoding/json), which a JSON Schema cannot say.
func (c *specCheck) spelled(body []byte) []byte {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return body
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(x))
			for k, e := range x {
				if name, ok := c.names[strings.ToLower(k)]; ok {
					k = name
				}
				out[k] = walk(e)
			}
			return out
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		}
		return v
	}
	b, err := json.Marshal(walk(v))
	if err != nil {
		return body
	}
	return b
}

// propertyNames maps every property name of the description's schemas,
// lower-cased, to its spelling.
func propertyNames(doc *openapi3.T) map[string]string {
	names := map[string]string{}
	seen := map[*openapi3.Schema]bool{}
	var visit func(s *openapi3.SchemaRef)
	visit = func(s *openapi3.SchemaRef) {
		if s == nil || s.Value == nil || seen[s.Value] {
			return
		}
		seen[s.Value] = true
		for name, p := range s.Value.Properties {
			names[strings.ToLower(name)] = name
			visit(p)
		}
		visit(s.Value.Items)
		for _, list := range []openapi3.SchemaRefs{s.Value.AllOf, s.Value.AnyOf, s.Value.OneOf} {
			for _, e := range list {
				visit(e)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		visit(s)
	}
	return names
}

// decoded undoes a Content-Encoding the server accepts, so the body is
// checked as the server reads it; anything else is left as sent.
func decoded(enc string, body []byte) []byte {
	var r io.Reader
	switch strings.ToLower(enc) {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return body
		}
		r = zr
	case "deflate":
		// HTTP's deflate is zlib; some clients send raw DEFLATE, which the
		// server takes too.
		if zr, err := zlib.NewReader(bytes.NewReader(body)); err == nil {
			r = zr
		} else {
			r = flate.NewReader(bytes.NewReader(body))
		}
	default:
		return body
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return body
	}
	return b
}

// checkAuth accepts a request that carries the credential a security
// scheme names; whether it is valid is the server's to say.
func checkAuth(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	auth := r.Header.Get("Authorization")
	cookie := func(name string) error {
		if c, err := r.Cookie(name); err != nil || c.Value == "" {
			return fmt.Errorf("no %s cookie", name)
		}
		return nil
	}
	switch in.SecuritySchemeName {
	case "bearer", "oauth2":
		if !strings.HasPrefix(strings.ToLower(auth), "bearer ") {
			return errors.New("no bearer token")
		}
	case "clientBasic":
		if !strings.HasPrefix(strings.ToLower(auth), "basic ") {
			return errors.New("no basic credentials")
		}
	case "accessTokenQuery":
		if r.URL.Query().Get("access_token") == "" {
			return errors.New("no access_token parameter")
		}
	case "sessionCookie":
		return cookie("herald_session")
	case "refreshCookie":
		return cookie("herald_refresh")
	default:
		return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
	}
	return nil
}

func (c *specCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	what := req.Method + " " + req.URL.RequestURI()
	vreq := c.canonical(req, body)
	route, params, findErr := c.router.FindRoute(vreq)

	var in *openapi3filter.RequestValidationInput
	var reqErr error
	if findErr == nil {
		// Bodies are checked by bodySchemas: kin-openapi compiles a 3.1
		// schema anew for every value, tens of milliseconds a body.
		in = &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: checkAuth, IncludeResponseStatus: true,
				ExcludeRequestBody: true, ExcludeResponseBody: true}}
		reqErr = openapi3filter.ValidateRequest(req.Context(), in)
		if reqErr == nil {
			reqErr = c.requestBody(route, vreq)
		}
	}

	res, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if findErr != nil {
		c.undocumented(what, vreq.URL.Path, res)
		return res, nil
	}
	key := route.Method + " " + route.Path
	c.mu.Lock()
	if c.answered[key] == nil {
		c.answered[key] = map[int]bool{}
	}
	c.answered[key][res.StatusCode] = true
	c.mu.Unlock()

	if reqErr != nil && res.StatusCode < 400 {
		c.report("%s → %d: the server took a request that the description refuses: %v", what, res.StatusCode, reqErr)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode,
		Header: res.Header, Options: in.Options}
	// A live stream's body never ends and a WebSocket's is the connection:
	// their status and headers are checked here, their events by the test.
	// A HEAD's answer is a GET's without the body.
	stream := res.StatusCode == http.StatusSwitchingProtocols ||
		strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream")
	var bodyErr error
	if stream || req.Method == http.MethodHead {
		if stream && res.StatusCode == http.StatusOK {
			// The content type is still checked against the description.
			if route.Operation.Responses.Status(200).Value.Content.Get("text/event-stream") == nil {
				c.report("%s: an event stream the description does not have", what)
			}
		}
	} else {
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return nil, err
		}
		res.Body = io.NopCloser(bytes.NewReader(b))
		bodyErr = c.responseBody(route, res, b)
	}
	err = openapi3filter.ValidateResponse(req.Context(), out)
	if err == nil {
		err = bodyErr
	}
	if err != nil {
		c.report("%s → %d: the response differs from the description: %v", what, res.StatusCode, err)
	}
	return res, nil
}

// undocumented checks an answer to a request the description has no
// operation for: only "no such resource" and "not this method" are right,
// in the contract's error shape; anything else is a route the description
// lacks.
func (c *specCheck) undocumented(what, path string, res *http.Response) {
	if outsideAPI(path) {
		return
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(b))
	switch res.StatusCode {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return // answered before routing mattered
	default:
		c.report("%s → %d: served, but the description has no such operation", what, res.StatusCode)
		return
	}
	if err := c.bodies.validate("/components/schemas/ErrorResponse", b); err != nil {
		c.report("%s → %d: not the error shape: %v", what, res.StatusCode, err)
	}
}

// operations lists the description's "METHOD /path" operations.
func (c *specCheck) operations() []string {
	var out []string
	for p, item := range c.doc.Paths.Map() {
		for m := range item.Operations() {
			out = append(out, m+" "+p)
		}
	}
	sort.Strings(out)
	return out
}

// unanswered lists the operations that never got a success (2xx, or 101
// for a WebSocket).
func (c *specCheck) unanswered() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, op := range c.operations() {
		ok := false
		for s := range c.answered[op] {
			ok = ok || s/100 == 2 || s == http.StatusSwitchingProtocols
		}
		if !ok {
			out = append(out, op)
		}
	}
	return out
}

// schema validates a JSON value against a component schema, for what the
// round trip cannot see (stream events and WebSocket frames).
func (c *specCheck) schema(name string, raw []byte) error {
	if c.doc.Components.Schemas[name] == nil {
		return fmt.Errorf("no schema %s", name)
	}
	return c.bodies.validate("/components/schemas/"+name, raw)
}

// requestBody checks a request's body against its operation's: a media
// type it lists, present when required, and valid against its schema.
func (c *specCheck) requestBody(route *routers.Route, req *http.Request) error {
	rb := route.Operation.RequestBody
	b, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(b))
	if rb == nil || rb.Value == nil {
		return nil
	}
	if len(b) == 0 {
		if rb.Value.Required {
			return errors.New("the request body is required")
		}
		return nil
	}
	mt, ok := mediaType(rb.Value.Content, req.Header.Get("Content-Type"))
	if !ok {
		return fmt.Errorf("the request's Content-Type %q is not one of the operation's", req.Header.Get("Content-Type"))
	}
	ptr := "/paths/" + escape(route.Path) + "/" + strings.ToLower(route.Method) + "/requestBody/content/" + escape(mt) + "/schema"
	if mt == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(b))
		if err != nil {
			return err
		}
		v := map[string]any{}
		for k, vs := range form {
			v[k] = vs[0]
		}
		b, _ = json.Marshal(v)
	}
	return c.bodies.validate(ptr, b)
}

// responseBody checks an answer's body against the operation's answer for
// its status: a media type it lists, and for JSON, valid against its
// schema.
func (c *specCheck) responseBody(route *routers.Route, res *http.Response, b []byte) error {
	key := strconv.Itoa(res.StatusCode)
	ref := route.Operation.Responses.Value(key)
	if ref == nil {
		key = key[:1] + "XX"
		ref = route.Operation.Responses.Value(key)
	}
	if ref == nil || ref.Value == nil {
		return nil // ValidateResponse reports an undescribed status
	}
	if len(ref.Value.Content) == 0 {
		if len(b) > 0 {
			return fmt.Errorf("a body where the description has none: %.100s", b)
		}
		return nil
	}
	mt, ok := mediaType(ref.Value.Content, res.Header.Get("Content-Type"))
	if !ok {
		return fmt.Errorf("Content-Type %q is not one of the answer's", res.Header.Get("Content-Type"))
	}
	if mt != "application/json" {
		return nil // text, a module, a backup: strings
	}
	ptr := "/paths/" + escape(route.Path) + "/" + strings.ToLower(route.Method) + "/responses/" + key
	if ref.Ref != "" {
		ptr = strings.TrimPrefix(ref.Ref, "#")
	}
	return c.bodies.validate(ptr+"/content/"+escape(mt)+"/schema", b)
}

// mediaType finds the content entry for a Content-Type header.
func mediaType(content openapi3.Content, header string) (string, bool) {
	mt, _, err := mime.ParseMediaType(header)
	if err != nil {
		return "", false
	}
	if _, ok := content[mt]; ok {
		return mt, true
	}
	return "", false
}

// escape is a JSON pointer token (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// bodySchemas validates JSON values against schemas of the served
// document, each compiled once (JSON Schema 2020-12, the dialect of
// OpenAPI 3.1).
type bodySchemas struct {
	mu       sync.Mutex
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
}

const docURL = "https://herald.invalid/openapi.json"

func newBodySchemas() (*bodySchemas, error) {
	b, err := openapi.JSON()
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, err
	}
	return &bodySchemas{compiler: c, compiled: map[string]*jsonschema.Schema{}}, nil
}

// validate checks the JSON in b against the schema at pointer ptr of the
// document.
func (s *bodySchemas) validate(ptr string, b []byte) error {
	s.mu.Lock()
	sch, ok := s.compiled[ptr]
	if !ok {
		var err error
		if sch, err = s.compiler.Compile(docURL + "#" + ptr); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("the description's schema at %s: %w", ptr, err)
		}
		s.compiled[ptr] = sch
	}
	s.mu.Unlock()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not JSON: %w: %.100s", err, b)
	}
	return sch.Validate(v)
}

// routeDiff compares served routes with the description's operations.
func routeDiff(served, described []string) (notDescribed, notServed []string) {
	for _, r := range served {
		if !slices.Contains(described, r) {
			notDescribed = append(notDescribed, r)
		}
	}
	for _, d := range described {
		if !slices.Contains(served, d) {
			notServed = append(notServed, d)
		}
	}
	return notDescribed, notServed
}

// TestOpenAPICheckCatchesDrift shows that the checker fails on each kind
// of drift, against a server that answers what the test tells it to.
func TestOpenAPICheckCatchesDrift(t *testing.T) {
	user := `{"id":"u1","userPrincipalName":"alice","displayName":"Alice","roles":["user"],` +
		`"accountEnabled":true,"createdDateTime":"2026-11-27T09:30:00.000Z"`
	var status int
	var body string
	noRequestID := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if !noRequestID {
			w.Header().Set("request-id", "r1")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/v1.0/users/u1")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	defer srv.Close()
	var reports []string
	check, err := newSpecCheck(func(f string, args ...any) { reports = append(reports, fmt.Sprintf(f, args...)) })
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: check}
	cases := []struct {
		name, method, path, reqBody, want string
		status                            int
		respBody                          string
		noRequestID                       bool
	}{
		{name: "as described", method: "GET", path: "/v1.0/me", status: 200, respBody: user + "}"},
		{name: "as described under /beta", method: "GET", path: "/beta/me", status: 200, respBody: user + "}"},
		{name: "undocumented property", method: "GET", path: "/v1.0/me", status: 200, respBody: user + `,"shoeSize":42}`,
			want: "differs from the description"},
		{name: "property of the wrong type", method: "GET", path: "/v1.0/me", status: 200,
			respBody: strings.Replace(user, `"accountEnabled":true`, `"accountEnabled":"yes"`, 1) + "}", want: "differs"},
		{name: "undocumented status", method: "GET", path: "/v1.0/me", status: 409, respBody: `{}`, want: "differs"},
		{name: "error not in the error shape", method: "GET", path: "/v1.0/me", status: 404,
			respBody: `{"error":"nope"}`, want: "differs"},
		{name: "no request-id", method: "GET", path: "/v1.0/me", status: 200, respBody: user + "}", noRequestID: true,
			want: "request-id"},
		{name: "served but undescribed", method: "GET", path: "/v1.0/horoscope", status: 200, respBody: `{}`,
			want: "description has no such operation"},
		{name: "accepted what the description refuses", method: "POST", path: "/v1.0/users", status: 201,
			reqBody: `{"userPrincipalName":"bob","password":"12345678","shoeSize":42}`, respBody: user + "}",
			want: "took a request that the description refuses"},
	}
	for _, c := range cases {
		reports = nil
		status, body, noRequestID = c.status, c.respBody, c.noRequestID
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.reqBody))
		req.Header.Set("Authorization", "Bearer x")
		if c.reqBody != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		got := strings.Join(reports, "\n")
		switch {
		case c.want == "" && got != "":
			t.Errorf("%s: reported %s", c.name, got)
		case c.want != "" && !strings.Contains(got, c.want):
			t.Errorf("%s: want a report containing %q, got %q", c.name, c.want, got)
		}
	}
	if ops := check.unanswered(); !slices.Contains(ops, "GET /healthz") || slices.Contains(ops, "GET /v1.0/me") {
		t.Errorf("unanswered operations %v: want GET /healthz among them and GET /v1.0/me not", ops)
	}
	served, described := []string{"GET /a", "GET /b"}, []string{"GET /b", "GET /c"}
	if nd, ns := routeDiff(served, described); !slices.Equal(nd, []string{"GET /a"}) || !slices.Equal(ns, []string{"GET /c"}) {
		t.Errorf("routeDiff: not described %v, not served %v", nd, ns)
	}
}
