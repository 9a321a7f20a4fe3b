package model

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseManifest: the manifest reader never panics; a manifest it accepts is valid, and its
// canonical encoding parses back to the same encoding.
func FuzzParseManifest(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("..", "..", "models", "bundled", "manifest.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(bytes.Replace(b, []byte(`"schema": 1`), []byte(`"schema": 2`), 1))
	f.Add([]byte(`{"schema":1}`))
	f.Add([]byte(`{"schema":1,"unknown":true}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data, "fuzz.json")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.json") {
				t.Fatalf("error does not name the manifest: %v", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted an invalid manifest: %v", err)
		}
		enc, err := m.Marshal()
		if err != nil {
			t.Fatalf("an accepted manifest does not marshal: %v", err)
		}
		m2, err := ParseManifest(enc, "again.json")
		if err != nil {
			t.Fatalf("its canonical encoding does not parse: %v\n%s", err, enc)
		}
		enc2, err := m2.Marshal()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("canonical encoding not stable: %v\n%s\n%s", err, enc, enc2)
		}
	})
}
