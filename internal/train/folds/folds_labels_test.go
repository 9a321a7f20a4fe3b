package folds

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
)

func TestFoldsRoundTrip(t *testing.T) {
	ex := []Example{{ID: "a"}, {ID: "b,c"}, {ID: "d"}}
	var sb strings.Builder
	if err := Write(&sb, ex, []int{2, 0, 1}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sb.String(), "Id,fold\na,2\n\"b,c\",0\n") {
		t.Errorf("written: %q", sb.String())
	}
	m, err := Read(strings.NewReader(sb.String()))
	if err != nil || !reflect.DeepEqual(m, map[string]int{"a": 2, "b,c": 0, "d": 1}) {
		t.Errorf("read back %v %v", m, err)
	}
	if err := Write(&sb, ex, []int{1}); err == nil {
		t.Error("length mismatch must be an error")
	}
	for in, want := range map[string]string{
		"":                      "empty file",
		"Id,Target\na,1\n":      "labels:1: header must be Id,fold",
		"Id,fold\na,1\na,2\n":   "labels:3: Id a repeated",
		"Id,fold\na,x\n":        "labels:2: Id a: fold \"x\"",
		"Id,fold\na,-1\n":       "labels:2: Id a: fold \"-1\"",
		"Id,fold\na,1\nb,1,2\n": "labels:3: want 2 fields",
	} {
		_, err := Read(strings.NewReader(in))
		var le *labels.CSVError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
	p := filepath.Join(t.TempDir(), "f.csv")
	os.WriteFile(p, []byte("Id,fold\nq,z\n"), 0o644)
	if _, err := ReadFile(p); err == nil || !strings.Contains(err.Error(), p+":2:") {
		t.Errorf("file error: %v", err)
	}
}
