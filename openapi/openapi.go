// Package openapi holds Herald's OpenAPI 3.1 description of its HTTP API
// (openapi.yaml) and serves it as JSON at /openapi.json.
//
// The description is written by hand in YAML, which is easier to review
// than JSON, and converted once with its key order kept, so that readers
// and the reference page see the paths in the order they were written. The
// httpapi tests hold it true: they check every request and response of a
// test that calls every route against it.
package openapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed openapi.yaml
var source []byte

var (
	once    sync.Once
	doc     []byte
	docErr  error
	docETag string
)

// JSON returns the description as JSON.
func JSON() ([]byte, error) {
	once.Do(func() {
		doc, docErr = toJSON(source)
		if docErr == nil {
			sum := sha256.Sum256(doc)
			docETag = `"` + hex.EncodeToString(sum[:12]) + `"`
		}
	})
	return doc, docErr
}

// Handler serves GET /openapi.json.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := JSON()
		if err != nil {
			// Only a broken build gets here; the package's test loads
			// the document.
			http.Error(w, "The API description is broken.", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", docETag)
		// Tools and other sites' API explorers may fetch it.
		h.Set("Access-Control-Allow-Origin", "*")
		http.ServeContent(w, r, "openapi.json", time.Time{}, bytes.NewReader(b))
	})
}

// toJSON converts YAML to JSON, keeping the order of mapping keys.
func toJSON(y []byte) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(y, &root); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	var buf bytes.Buffer
	if err := writeNode(&buf, &root); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return out.Bytes(), nil
}

func writeNode(b *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return fmt.Errorf("line %d: want one document", n.Line)
		}
		return writeNode(b, n.Content[0])
	case yaml.AliasNode:
		return writeNode(b, n.Alias)
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				return fmt.Errorf("line %d: keys must be plain scalars", k.Line)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, k.Value)
			b.WriteByte(':')
			if err := writeNode(b, n.Content[i+1]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeNode(b, c); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str", "!!binary", "!!timestamp":
			writeString(b, n.Value)
		case "!!null":
			b.WriteString("null")
		case "!!bool", "!!int", "!!float":
			var v any
			if err := n.Decode(&v); err != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
			j, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
			b.Write(j)
		default:
			return fmt.Errorf("line %d: unknown tag %s", n.Line, n.ShortTag())
		}
	default:
		return fmt.Errorf("line %d: unexpected YAML node", n.Line)
	}
	return nil
}

func writeString(b *bytes.Buffer, s string) {
	j, _ := json.Marshal(s) // a string always marshals
	b.Write(j)
}
