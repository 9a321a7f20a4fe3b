package train

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadLabels(t *testing.T) {
	in := "Id,Target\na,16 0\nb,7 1 2 0\nc,\n\"d\",27\n"
	ex, err := ReadLabels(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Example{{"a", []int{16, 0}}, {"b", []int{7, 1, 2, 0}}, {"c", []int{}}, {"d", []int{27}}}
	if !reflect.DeepEqual(ex, want) {
		t.Errorf("got %+v", ex)
	}
}

func TestReadLabelsErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", "empty file"},
		{"Name,Labels\na,1\n", "labels:1: header must be Id,Target"},
		{"Id,Target\na,1\nb,28\n", "labels:3: Id b: unknown class id 28"},
		{"Id,Target\na,1\nb,-1\n", "labels:3: Id b: unknown class id -1"},
		{"Id,Target\na,1 x\n", "labels:2: Id a: class id \"x\" is not an integer"},
		{"Id,Target\na,1 1\n", "labels:2: Id a: class id 1 repeated"},
		{"Id,Target\na,1\nb,2,3\n", "labels:3: want 2 fields"},
		{"Id,Target\na,1\n,2\n", "labels:3: empty Id"},
		{"Id,Target\na,1\nb,2\na,3\n", "labels:4: Id a repeated (first on line 2)"},
		{"Id,Target\na,\"1\n", "labels:2:"},
	}
	for _, tc := range cases {
		_, err := ReadLabels(strings.NewReader(tc.in))
		var le *LabelsError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want LabelsError containing %q", tc.in, err, tc.want)
		}
	}
}

func TestReadLabelsFileNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(p, []byte("Id,Target\nx,99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadLabelsFile(p)
	if err == nil || !strings.Contains(err.Error(), p+":2: Id x: unknown class id 99") {
		t.Errorf("got %v", err)
	}
	_, err = ReadLabelsFile(filepath.Join(t.TempDir(), "missing.csv"))
	var le *LabelsError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("missing file: %v", err)
	}
}

func TestFoldsRoundTrip(t *testing.T) {
	ex := []Example{{ID: "a"}, {ID: "b,c"}, {ID: "d"}}
	var sb strings.Builder
	if err := WriteFolds(&sb, ex, []int{2, 0, 1}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sb.String(), "Id,fold\na,2\n\"b,c\",0\n") {
		t.Errorf("written: %q", sb.String())
	}
	m, err := ReadFolds(strings.NewReader(sb.String()))
	if err != nil || !reflect.DeepEqual(m, map[string]int{"a": 2, "b,c": 0, "d": 1}) {
		t.Errorf("read back %v %v", m, err)
	}
	if err := WriteFolds(&sb, ex, []int{1}); err == nil {
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
		_, err := ReadFolds(strings.NewReader(in))
		var le *LabelsError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
	p := filepath.Join(t.TempDir(), "f.csv")
	os.WriteFile(p, []byte("Id,fold\nq,z\n"), 0o644)
	if _, err := ReadFoldsFile(p); err == nil || !strings.Contains(err.Error(), p+":2:") {
		t.Errorf("file error: %v", err)
	}
}
