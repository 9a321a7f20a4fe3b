package labels

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/testenv"
)

func TestReadLabels(t *testing.T) {
	in := "Id,Target\na,16 0\nb,7 1 2 0\nc,\n\"d\",27\n"
	ex, err := ReadTargets(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{"a", []int{16, 0}}, {"b", []int{7, 1, 2, 0}}, {"c", []int{}}, {"d", []int{27}}}
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
		_, err := ReadTargets(strings.NewReader(tc.in))
		var le *CSVError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want CSVError containing %q", tc.in, err, tc.want)
		}
	}
}

func TestReadLabelsFileNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(p, []byte("Id,Target\nx,99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadTargetsFile(p)
	if err == nil || !strings.Contains(err.Error(), p+":2: Id x: unknown class id 99") {
		t.Errorf("got %v", err)
	}
	_, err = ReadTargetsFile(filepath.Join(t.TempDir(), "missing.csv"))
	var le *CSVError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("missing file: %v", err)
	}
}

func TestWriteLabelsRoundTrip(t *testing.T) {
	rows := []Target{{ID: "a", Labels: []int{7, 1, 0}}, {ID: "b", Labels: []int{27}}}
	var buf bytes.Buffer
	if err := WriteTargets(&buf, rows); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "Id,Target\na,7 1 0\nb,27\n" {
		t.Errorf("wrote %q", buf.String())
	}
	back, err := ReadTargets(&buf)
	if err != nil || !reflect.DeepEqual(back, rows) {
		t.Errorf("read back %+v %v", back, err)
	}
	for _, bad := range [][]Target{
		{{ID: "a,b", Labels: []int{1}}}, {{ID: "a", Labels: []int{1}}, {ID: "a", Labels: []int{2}}},
		{{ID: "a"}}, {{ID: "a", Labels: []int{28}}}, {{ID: "a", Labels: []int{3, 3}}},
	} {
		var le *CSVError
		if err := WriteTargets(&bytes.Buffer{}, bad); !errors.As(err, &le) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func TestRealTrainCSVReads(t *testing.T) {
	rows, err := ReadTargetsFile(filepath.Join(testenv.HPAFixture(t), "train.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 31072 || rows[1].ID != "000a6c98-bb9b-11e8-b2b9-ac1f6b6435d0" || !reflect.DeepEqual(rows[1].Labels, []int{7, 1, 2, 0}) {
		t.Errorf("%d rows, row 1 %+v", len(rows), rows[1])
	}
}
