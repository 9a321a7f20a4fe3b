package bus

import (
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/pipeline"
)

func TestKeyMapper(t *testing.T) {
	m, err := NewKeyMapper("incoming/", "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		key   string
		ok    bool
		bad   bool
		plate string
		id    string
		ch    pipeline.Channel
	}{
		{"incoming/plate 1/abc_def_green.png", true, false, "plate 1", "abc_def", pipeline.Green},
		{"incoming/p/x_yellow.TIF", true, false, "p", "x", pipeline.Yellow},
		{"incoming/p/x_purple.png", false, false, "", "", 0},
		{"other/p/x_red.png", false, false, "", "", 0},
		{"incoming/x_red.png", false, false, "", "", 0},
		{"incoming/p/q/x_red.png", false, false, "", "", 0},
		{"incoming/../x_red.png", false, true, "", "", 0},
		{"incoming/p/a\\b_red.png", false, true, "", "", 0},
		{"incoming/p/a\x01_red.png", false, true, "", "", 0},
	}
	for _, c := range cases {
		sk, ok, err := m.Map(c.key)
		if (err != nil) != c.bad {
			t.Errorf("%q: err %v, want bad=%v", c.key, err, c.bad)
			continue
		}
		if ok != c.ok || (ok && (sk.Plate != c.plate || sk.ID != c.id || sk.Channel != c.ch)) {
			t.Errorf("%q: got %+v ok=%v", c.key, sk, ok)
		}
	}
	if _, err := NewKeyMapper("", `^(?P<plate>[^/]+)/(?P<id>.+)$`); err == nil {
		t.Error("pattern without a channel group must be refused")
	}
	// Nested plates through a custom pattern.
	m2, err := NewKeyMapper("up/", `^(?P<plate>.+)/(?P<id>[^/]+)_(?P<channel>red|green|blue|yellow)\.png$`)
	if err != nil {
		t.Fatal(err)
	}
	if sk, ok, err := m2.Map("up/exp1/plate7/s1_blue.png"); err != nil || !ok || sk.Plate != "exp1/plate7" {
		t.Errorf("nested plate: %+v %v %v", sk, ok, err)
	}
	if _, _, err := m2.Map("up/exp1/../s1_blue.png"); err == nil {
		t.Error("'..' in a nested plate must be refused")
	}
	if a, b := SubjectToken("plate 1"), SubjectToken("plate_1"); a == b || strings.ContainsAny(a, " .*>") {
		t.Errorf("subject tokens %q %q", a, b)
	}
}
