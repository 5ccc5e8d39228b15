package httpapi

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/herald-notify/herald/resource"
)

// MaxBodyBytes is the largest request body, after decompression (API.md §1).
const MaxBodyBytes = 64 << 10

// readBody checks the content type and encoding and returns the body,
// decompressed and at most MaxBodyBytes long.
func readBody(r *http.Request) ([]byte, error) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, resource.Errorf(resource.CodeUnsupportedMedia, "The body must be application/json.")
	}
	// JSON is UTF-8 (RFC 8259 §8.1); a body said to be in another charset
	// would be read as UTF-8 all the same, and its text changed.
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") && !strings.EqualFold(cs, "us-ascii") {
		return nil, resource.Errorf(resource.CodeUnsupportedMedia, "The body must be JSON in UTF-8, not charset %q.", cs)
	}
	return decodedBody(r)
}

// decodedBody returns the body decompressed per its Content-Encoding
// (gzip or deflate; another is 415), at most MaxBodyBytes long (413).
func decodedBody(r *http.Request) ([]byte, error) {
	var src io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
		if err != nil {
			return nil, resource.Invalid("", "The gzip body is malformed.")
		}
		defer zr.Close()
		src = zr
	case "deflate":
		// HTTP's deflate is the zlib format (RFC 9110 §8.4.1.2), but some
		// clients send raw DEFLATE under that name; accept both, as
		// browsers do.
		br := bufio.NewReader(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
		if h, err := br.Peek(2); err == nil && h[0]&0x0f == 8 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0 {
			zr, err := zlib.NewReader(br)
			if err != nil {
				return nil, resource.Invalid("", "The deflate body is malformed.")
			}
			defer zr.Close()
			src = zr
		} else {
			src = flate.NewReader(br)
		}
	default:
		return nil, resource.Errorf(resource.CodeUnsupportedMedia, "Content-Encoding %q is not supported; use gzip or deflate.", enc)
	}
	b, err := io.ReadAll(io.LimitReader(src, MaxBodyBytes+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge()
		}
		return nil, resource.Invalid("", "The body could not be read: %v.", err)
	}
	if len(b) > MaxBodyBytes {
		return nil, tooLarge()
	}
	return b, nil
}

func tooLarge() error {
	return resource.Errorf(resource.CodePayloadTooLarge, "The body is larger than 64 KiB.")
}

// decodeJSON reads a JSON object into v, rejecting unknown properties,
// trailing data and anything that is not an object.
func decodeJSON(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeBytes(b, v)
}

func decodeBytes(b []byte, v any) error {
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return resource.Invalid("", "The request body is empty; a JSON object is required.")
	}
	if trimmed[0] == '[' {
		return resource.Invalid("", "The body is a JSON array: multiple notifications is not supported; send one object per request.")
	}
	if trimmed[0] != '{' {
		return resource.Invalid("", "The body must be a JSON object.")
	}
	// encoding/json replaces invalid UTF-8 with U+FFFD without a word, so
	// what is stored would not be what was sent.
	if !utf8.Valid(trimmed) {
		return resource.Invalid("", "The body is not valid UTF-8 (at byte %d).", invalidUTF8At(trimmed))
	}
	// The same for an escaped surrogate with no partner ("\ud800"): it
	// stands for no character, and the decoders store U+FFFD for it.
	if at := loneSurrogateAt(trimmed); at >= 0 {
		return resource.Invalid("", "The body escapes a UTF-16 surrogate that has no partner (at byte %d); it is no character.", at)
	}
	// Nothing Herald takes nests deeper than a few levels, and reading a
	// deep body costs memory for each level: encoding/json's decoder and
	// the search for an unknown property's path build one value per level
	// (about 3 MiB for 10,000 of them, encoding/json's own bound), for
	// each request in flight.
	if nestsDeeperThan(trimmed, maxBodyDepth) {
		return resource.Invalid("", "The body nests deeper than %d levels.", maxBodyDepth)
	}
	if bytes.Contains(trimmed, []byte(`"@odata.`)) {
		var err error
		if trimmed, err = withoutAnnotations(trimmed); err != nil {
			return err
		}
	}
	// The fast path replaces the whole value, where encoding/json would
	// merge into it: it takes only a value that is still zero.
	if in, send := v.(*resource.NotificationInput); send && *in == (resource.NotificationInput{}) && readSendBody(trimmed, in) {
		return nil // sendbody.go
	}
	return decodeStrict(trimmed, v)
}

// withoutAnnotations drops OData control information ("@odata.type" and
// the like) from the objects of a body, whichever resource it is: Graph's
// SDKs write "@odata.type" into every object they send (a PATCH of a
// notification, a user, a subscription as much as a send), and Graph
// reads past it. Only property names are looked at, so a string value
// that holds "@odata." is kept whole. The rest is copied token by token in its order, so that the
// decoders read it as they would have without the annotations (which of
// two same-named properties wins, two objects merged).
func withoutAnnotations(body []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	out, err := copyWithout(dec, make([]byte, 0, len(body)), true, 0)
	if err != nil {
		return nil, jsonError(err, body)
	}
	// Whatever follows the object is refused later, as without annotations.
	return append(out, body[dec.InputOffset():]...), nil
}

// nestsDeeperThan reports whether the JSON text b opens more than max
// objects and arrays inside one another. Brackets within strings do not
// count.
func nestsDeeperThan(b []byte, max int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case inString:
			if escaped {
				escaped = false
			} else if c == '\\' {
				escaped = true
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > max {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}

// maxBodyDepth bounds how deep a body may nest. copyWithout recurses once
// per level, and a 64 KiB body of '[' is 65,000 levels: about 32 MiB of
// stack for one request. A notification nests three levels.
const maxBodyDepth = 64

// copyWithout reads one value from dec, depth levels down, and, when keep,
// appends it to out without its objects' "@odata." members.
func copyWithout(dec *json.Decoder, out []byte, keep bool, depth int) ([]byte, error) {
	tok, err := dec.Token()
	if err != nil {
		return out, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth++; depth > maxBodyDepth {
			return out, resource.Invalid("", "The body nests deeper than %d levels.", maxBodyDepth)
		}
		if keep {
			out = append(out, byte(t))
		}
		first := true
		for dec.More() {
			if t == '{' {
				k, err := dec.Token()
				if err != nil {
					return out, err
				}
				key, _ := k.(string)
				if strings.HasPrefix(key, "@odata.") {
					if out, err = copyWithout(dec, out, false, depth); err != nil {
						return out, err
					}
					continue
				}
				if keep {
					if !first {
						out = append(out, ',')
					}
					out = appendJSONString(out, key)
					out = append(out, ':')
				}
			} else if keep && !first {
				out = append(out, ',')
			}
			first = false
			if out, err = copyWithout(dec, out, keep, depth); err != nil {
				return out, err
			}
		}
		end, err := dec.Token() // the closing delimiter
		if err != nil {
			return out, err
		}
		if keep {
			out = append(out, byte(end.(json.Delim)))
		}
	case string:
		if keep {
			out = appendJSONString(out, t)
		}
	case json.Number:
		if keep {
			out = append(out, t...)
		}
	case bool:
		if keep {
			out = strconv.AppendBool(out, t)
		}
	case nil:
		if keep {
			out = append(out, "null"...)
		}
	}
	return out, nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(out []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return append(out, b...)
}

// decodeStrict decodes trimmed, a body that is one JSON object in valid
// UTF-8, into v with encoding/json.
func decodeStrict(trimmed []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			path := unknownPath(trimmed, reflect.TypeOf(v), strings.Trim(name, `"`))
			return resource.Invalid(path, "Property %s is not known here.", path)
		}
		return jsonError(err, trimmed)
	}
	// Decoder.More reports false before a stray ']' or '}', so look at
	// what is left instead.
	if len(bytes.TrimSpace(trimmed[dec.InputOffset():])) > 0 {
		return resource.Invalid("", "The body holds data after its JSON object.")
	}
	return nil
}

// jsonError turns encoding/json's errors into the contract's 400s, naming
// the property where it can.
func jsonError(err error, body []byte) error {
	var re *resource.Error
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &re):
		return re
	case errors.As(err, &syn):
		return resource.Invalid("", "The body is not valid JSON (at byte %d).", syn.Offset)
	case errors.As(err, &typ) && typ.Type == reflect.TypeFor[resource.Time]():
		field := typ.Field
		if field == "" {
			field = propertyHolding(body, typ.Value)
		}
		return resource.Invalid(field, "Property %s must be an RFC 3339 time such as 2026-11-27T09:30:00.000Z, not %s.", field, typ.Value)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = propertyHolding(body, typ.Value)
		}
		return resource.Invalid(field, "Property %s has the wrong type: %s is expected.", field, describeType(typ.Type.Kind().String()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return resource.Invalid("", "The JSON body ends too early.")
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return resource.Invalid(name, "Property %s is not known here.", name)
	}
	return resource.Invalid("", "The body could not be decoded: %s.", strings.TrimPrefix(msg, "json: "))
}

// propertyHolding is the dotted path of the first property of body whose
// value, written as encoding/json's UnmarshalTypeError writes it (a string
// Go-quoted, anything else as in the JSON), is value. encoding/json names
// the property of a type error itself, except (in newer Go releases) for an
// error from a type's own UnmarshalJSON, such as resource.Time's.
func propertyHolding(body []byte, value string) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object  bool
		key     string
		wantKey bool
	}
	var stack []frame
	path := func() string {
		var parts []string
		for _, f := range stack {
			if f.object && f.key != "" {
				parts = append(parts, f.key)
			}
		}
		return strings.Join(parts, ".")
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				stack = append(stack, frame{object: d == '{', wantKey: d == '{'})
			default:
				stack = stack[:top]
				if top > 0 && stack[top-1].object {
					stack[top-1].wantKey = true
				}
			}
			continue
		}
		if top >= 0 && stack[top].object && stack[top].wantKey {
			stack[top].key, stack[top].wantKey = tok.(string), false
			continue
		}
		var text string
		switch v := tok.(type) {
		case string:
			text = fmt.Sprintf("%q", v)
		case json.Number:
			text = v.String()
		case bool:
			text = strconv.FormatBool(v)
		case nil:
			text = "null"
		}
		if text == value {
			return path()
		}
		if top >= 0 && stack[top].object {
			stack[top].wantKey = true
		}
	}
}

func describeType(kind string) string {
	switch kind {
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "int", "int64", "float64", "uint64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	}
	return fmt.Sprintf("a %s", kind)
}

// unknownPath finds where the property name, which encoding/json reported as
// unknown, sits in body, and returns it as a dotted path such as
// "channel.keys.extra", the shape of the other errors' targets; it falls back
// to the bare name.
func unknownPath(body []byte, t reflect.Type, name string) string {
	var doc any
	if json.Unmarshal(body, &doc) != nil {
		return name
	}
	if p, ok := findUnknown(doc, t, name, ""); ok {
		return p
	}
	return name
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

func findUnknown(doc any, t reflect.Type, name, prefix string) (string, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return "", false
	}
	switch d := doc.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct {
			return "", false
		}
		keys := make([]string, 0, len(d))
		for k := range d {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, fname, ok := jsonField(t, k)
			if !ok {
				if k == name {
					return joinPath(prefix, k), true
				}
				continue
			}
			if p, ok := findUnknown(d[k], f.Type, name, joinPath(prefix, fname)); ok {
				return p, true
			}
		}
	case []any:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return "", false
		}
		for _, v := range d {
			if p, ok := findUnknown(v, t.Elem(), name, prefix); ok {
				return p, true
			}
		}
	}
	return "", false
}

// jsonField is the field of struct t that encoding/json fills from key: an
// exact match of its JSON name first, else one without regard to case.
func jsonField(t reflect.Type, key string) (reflect.StructField, string, bool) {
	var fold reflect.StructField
	var foldName string
	found := false
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if tag == key {
			return f, tag, true
		}
		if !found && strings.EqualFold(tag, key) {
			fold, foldName, found = f, tag, true
		}
	}
	return fold, foldName, found
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// invalidUTF8At is the offset of the first byte of b that is not part of
// valid UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(b)
}

// loneSurrogateAt returns the offset of the first \u escape in b's strings
// that is a UTF-16 surrogate not paired as the JSON grammar pairs them (a
// high one, D800-DBFF, right before a low one, DC00-DFFF), or -1. Bodies
// without a backslash, nearly all, cost one byte search.
func loneSurrogateAt(b []byte) int {
	if bytes.IndexByte(b, '\\') < 0 {
		return -1
	}
	escape := func(i int) (rune, bool) { // b[i] is the backslash of \uXXXX?
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		var r rune
		for _, c := range b[i+2 : i+6] {
			switch {
			case '0' <= c && c <= '9':
				r = r<<4 | rune(c-'0')
			case 'a' <= c && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case 'A' <= c && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	inString := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString:
			r, ok := escape(i)
			switch {
			case !ok:
				i++ // another escape: skip the escaped byte
			case 0xD800 <= r && r <= 0xDBFF:
				if lo, ok := escape(i + 6); ok && 0xDC00 <= lo && lo <= 0xDFFF {
					i += 11
					continue
				}
				return i
			case 0xDC00 <= r && r <= 0xDFFF:
				return i
			default:
				i += 5
			}
		}
	}
	return -1
}
