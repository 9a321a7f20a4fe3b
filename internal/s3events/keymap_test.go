package s3events

import (
	"errors"
	"sync"
	"testing"
)

func TestDefaultKeyMapper(t *testing.T) {
	m, err := NewKeyMapper("")
	if err != nil {
		t.Fatal(err)
	}
	if m.Pattern() != DefaultKeyPattern {
		t.Fatal(m.Pattern())
	}
	cases := []struct {
		key  string
		ok   bool
		want SampleKey
	}{
		{"incoming/plate 1/X_blue.png", true, SampleKey{Prefix: "incoming", Plate: "plate 1", SampleID: "X", Channel: "blue", Ext: "png"}},
		{"a/b/c/P7/00070df0-bbc3-11e8-b2bc-ac1f6b6435d0_yellow.png", true, SampleKey{Prefix: "a/b/c", Plate: "P7", SampleID: "00070df0-bbc3-11e8-b2bc-ac1f6b6435d0", Channel: "yellow", Ext: "png"}},
		{"P7/id_with_underscores_red.TIF", true, SampleKey{Plate: "P7", SampleID: "id_with_underscores", Channel: "red", Ext: "tif"}},
		{"x/plaque é/細胞+1%_GREEN.jpeg", true, SampleKey{Prefix: "x", Plate: "plaque é", SampleID: "細胞+1%", Channel: "green", Ext: "jpeg"}},
		{"incoming/plate 1/X_purple.png", false, SampleKey{}},
		{"incoming/plate 1/X_blue.txt", false, SampleKey{}},
		{"incoming/plate 1/_blue.png", false, SampleKey{}},
		{"X_blue.png", false, SampleKey{}}, // no plate directory
		{"incoming/plate 1/", false, SampleKey{}},
		{"incoming/plate 1/X_blue.png/", false, SampleKey{}},
		{"incoming/plate 1/X_blue.png.bak", false, SampleKey{}},
		{"results/plate 1/X.json", false, SampleKey{}},
		{"", false, SampleKey{}},
	}
	for _, c := range cases {
		got, ok := m.Map(c.key)
		if ok != c.ok || got != c.want {
			t.Errorf("Map(%q) = %+v, %v; want %+v, %v", c.key, got, ok, c.want, c.ok)
		}
	}
	sk, ok := m.MapEvent(ObjectEvent{Bucket: "plates", Key: "incoming/plate 1/X_blue.png"})
	if !ok || sk.SampleID != "X" {
		t.Fatal("MapEvent")
	}
}

func TestTemplateWithLiterals(t *testing.T) {
	m, err := NewKeyMapper("uploads/{plate}.d/{id}-{channel}.{ext}")
	if err != nil {
		t.Fatal(err)
	}
	if sk, ok := m.Map("uploads/p(1).d/abc-red.png"); !ok || sk.Plate != "p(1)" || sk.SampleID != "abc" || sk.Prefix != "" {
		t.Fatalf("%+v %v", sk, ok)
	}
	if _, ok := m.Map("uploadsX/p.d/abc-red.png"); ok {
		t.Fatal("literal text not enforced")
	}
	if _, ok := m.Map("other/p.d/abc-red.png"); ok {
		t.Fatal("literal prefix not enforced")
	}
	// No plate placeholder: plate is empty.
	m2, err := NewKeyMapper("{id}_{channel}.png")
	if err != nil {
		t.Fatal(err)
	}
	if sk, ok := m2.Map("S1_green.png"); !ok || sk.Plate != "" || sk.SampleID != "S1" || sk.Ext != "" {
		t.Fatalf("%+v %v", sk, ok)
	}
	if _, ok := m2.Map("dir/S1_green.png"); ok {
		t.Fatal("{id} crossed a '/'")
	}
}

func TestRegexKeyMapper(t *testing.T) {
	m, err := NewKeyMapper(`re:(?P<plate>plate-\d+)/(?P<id>[0-9a-f-]{36})_(?P<channel>red|green|blue|yellow)\.png`)
	if err != nil {
		t.Fatal(err)
	}
	sk, ok := m.Map("plate-12/00070df0-bbc3-11e8-b2bc-ac1f6b6435d0_red.png")
	if !ok || sk.Plate != "plate-12" || sk.Channel != "red" || sk.Ext != "" {
		t.Fatalf("%+v %v", sk, ok)
	}
	if _, ok := m.Map("x/plate-12/00070df0-bbc3-11e8-b2bc-ac1f6b6435d0_red.png"); ok {
		t.Fatal("regex not anchored")
	}
	// A regex whose channel group can capture an unknown channel still says "not ours".
	m2, err := NewKeyMapper(`re:(?P<id>\w+?)_(?P<channel>\w+)\.png`)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m2.Map("abc_magenta.png"); ok {
		t.Fatal("unknown channel accepted")
	}
	if sk, ok := m2.Map("abc_Yellow.png"); !ok || sk.Channel != "yellow" {
		t.Fatalf("%+v %v", sk, ok)
	}
}

func TestBadPatterns(t *testing.T) {
	for _, p := range []string{
		"{plate}/{id}.png",               // no channel
		"{plate}/{channel}.png",          // no id
		"{plate}/{id}_{channel}.{color}", // unknown placeholder
		"{plate}/{id}_{channel}.{ext",    // unclosed
		"{plate}/{id}}_{channel}",        // stray }
		"{id}/{id}_{channel}",            // twice
		"re:(?P<id>[a-z+)_(?P<channel>red)",
		"re:(?P<id>a)_(?P<colour>red)",
		"re:(?P<id>a)",
	} {
		_, err := NewKeyMapper(p)
		var pe *PatternError
		if !errors.As(err, &pe) || pe.Pattern != p {
			t.Errorf("NewKeyMapper(%q) = %v, want *PatternError", p, err)
		}
	}
}

func TestKeyMapperConcurrent(t *testing.T) {
	m, err := NewKeyMapper("")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if sk, ok := m.Map("in/p/S_red.png"); !ok || sk.SampleID != "S" {
					t.Error("concurrent Map failed")
					return
				}
			}
		}()
	}
	wg.Wait()
}
