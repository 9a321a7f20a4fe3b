package synth

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestReadLabelsCSV(t *testing.T) {
	in := "Id,Target\r\n" +
		"00070df0-bbc3-11e8-b2bc-ac1f6b6435d0,16 0\r\n" +
		"000a6c98-bb9b-11e8-b2b9-ac1f6b6435d0,7 1 2 0\n" +
		"x, 5 \n"
	rows, err := ReadLabelsCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []LabeledID{
		{"00070df0-bbc3-11e8-b2bc-ac1f6b6435d0", []int{16, 0}},
		{"000a6c98-bb9b-11e8-b2b9-ac1f6b6435d0", []int{7, 1, 2, 0}},
		{"x", []int{5}},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d rows", len(rows))
	}
	for i := range want {
		if rows[i].ID != want[i].ID || !slices.Equal(rows[i].Targets, want[i].Targets) {
			t.Errorf("row %d: got %+v, want %+v", i, rows[i], want[i])
		}
	}
}

func TestReadLabelsCSVErrors(t *testing.T) {
	cases := []struct {
		name, in string
		line     int
		reason   string
	}{
		{"empty", "", 1, "empty file"},
		{"bad header", "Id,Predicted\na,1\n", 1, "header"},
		{"unknown class", "Id,Target\na,1\nb,3 28\n", 3, "unknown class id 28"},
		{"negative class", "Id,Target\na,-1\n", 2, "unknown class id -1"},
		{"not a number", "Id,Target\na,1\nb,2\nc,x\n", 4, `class id "x" is not an integer`},
		{"empty target", "Id,Target\na,\n", 2, "empty Target"},
		{"empty id", "Id,Target\n,4\n", 2, "empty Id"},
		{"too many fields", "Id,Target\na,1,2\n", 2, "3 fields"},
		{"too few fields", "Id,Target\na,1\nb\n", 3, "1 fields"},
		{"duplicate id", "Id,Target\na,1\nb,2\na,3\n", 4, "duplicate Id a (first on line 2)"},
		{"repeated class", "Id,Target\na,1 1\n", 2, "class id 1 repeated"},
		{"bad quote", "Id,Target\na,\"1\n", 2, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadLabelsCSV(strings.NewReader(tc.in))
			var ce *CSVError
			if !errors.As(err, &ce) {
				t.Fatalf("want *CSVError, got %T %v", err, err)
			}
			if ce.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", ce.Line, tc.line, err)
			}
			if !strings.Contains(ce.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", ce.Reason, tc.reason)
			}
			if want := "line " + strconv.Itoa(tc.line); !strings.Contains(err.Error(), want) {
				t.Errorf("message %q lacks %q", err, want)
			}
		})
	}
}

func TestReadLabelsFileNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "labels.csv")
	if err := os.WriteFile(p, []byte("Id,Target\na,99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadLabelsFile(p)
	if err == nil || !strings.Contains(err.Error(), p+" line 2: Id a: unknown class id 99") {
		t.Errorf("got %v", err)
	}
	_, err = ReadLabelsFile(filepath.Join(t.TempDir(), "missing.csv"))
	var ce *CSVError
	if !errors.As(err, &ce) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("missing file: %v", err)
	}
}

func TestLabelsCSVRoundTrip(t *testing.T) {
	rows := []LabeledID{{"a-1", []int{16, 0}}, {"b-2", []int{27}}, {"c-3", []int{7, 1, 2, 0}}}
	var buf bytes.Buffer
	if err := WriteLabelsCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	if want := "Id,Target\na-1,16 0\nb-2,27\nc-3,7 1 2 0\n"; buf.String() != want {
		t.Errorf("wrote %q, want %q", buf.String(), want)
	}
	back, err := ReadLabelsCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(rows) {
		t.Fatalf("read back %d rows", len(back))
	}
	for i := range rows {
		if back[i].ID != rows[i].ID || !slices.Equal(back[i].Targets, rows[i].Targets) {
			t.Errorf("row %d: %+v != %+v", i, back[i], rows[i])
		}
	}
	for _, bad := range [][]LabeledID{
		{{"", []int{1}}}, {{"a,b", []int{1}}}, {{"a", nil}}, {{"a", []int{28}}}, {{"a", []int{1, 1}}}, {{"a", []int{1}}, {"a", []int{2}}},
	} {
		var ce *CSVError
		if err := WriteLabelsCSV(&bytes.Buffer{}, bad); !errors.As(err, &ce) {
			t.Errorf("WriteLabelsCSV(%v) = %v, want *CSVError", bad, err)
		}
	}
}

func TestClassFrequencies(t *testing.T) {
	rows := []LabeledID{{"a", []int{0, 25}}, {"b", []int{0}}, {"c", []int{27}}, {"d", []int{25, 0}}}
	n := ClassCounts(rows)
	f := ClassFrequencies(rows)
	if n[0] != 3 || n[25] != 2 || n[27] != 1 || n[1] != 0 {
		t.Errorf("counts %v", n)
	}
	if f[0] != 0.75 || f[25] != 0.5 || f[27] != 0.25 || f[3] != 0 {
		t.Errorf("frequencies %v", f)
	}
	if z := ClassFrequencies(nil); z[0] != 0 {
		t.Errorf("empty rows: %v", z)
	}
}

func TestRealTrainCSVParses(t *testing.T) {
	rows := realRows(t)
	f := ClassFrequencies(rows)
	// Nucleoplasm is the most frequent class of the real data, Rods & rings the rarest.
	for c := 1; c < len(f); c++ {
		if f[c] >= f[0] {
			t.Errorf("class %d more frequent than Nucleoplasm", c)
		}
		if c != 27 && f[c] <= f[27] {
			t.Errorf("class %d rarer than Rods & rings", c)
		}
	}
}
