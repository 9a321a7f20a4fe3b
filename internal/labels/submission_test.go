package labels

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/testenv"
)

func TestSubmissionRoundTrip(t *testing.T) {
	rows := []SubmissionRow{
		{ID: "c", Predicted: []int{25, 0}},
		{ID: "a", Predicted: nil},
		{ID: "b", Predicted: []int{27, 3, 3}},
	}
	var buf bytes.Buffer
	if err := WriteSubmission(&buf, rows); err != nil {
		t.Fatal(err)
	}
	want := "Id,Predicted\na,\nb,3 27\nc,0 25\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
	back, err := ReadSubmission(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	wantRows := []SubmissionRow{{"a", []int{}}, {"b", []int{3, 27}}, {"c", []int{0, 25}}}
	if len(back) != 3 {
		t.Fatalf("rows %v", back)
	}
	for i := range back {
		if back[i].ID != wantRows[i].ID || !slices.Equal(back[i].Predicted, wantRows[i].Predicted) {
			t.Errorf("row %d: %+v, want %+v", i, back[i], wantRows[i])
		}
	}
	var again bytes.Buffer
	if err := WriteSubmission(&again, back); err != nil || again.String() != want {
		t.Errorf("second write %q %v", again.String(), err)
	}
}

func TestSubmissionErrors(t *testing.T) {
	var se *SubmissionError
	for name, rows := range map[string][]SubmissionRow{
		"class 28":  {{ID: "a", Predicted: []int{28}}},
		"class -1":  {{ID: "a", Predicted: []int{-1}}},
		"duplicate": {{ID: "a"}, {ID: "a"}},
		"empty id":  {{ID: ""}},
		"comma id":  {{ID: "a,b"}},
	} {
		if err := WriteSubmission(&bytes.Buffer{}, rows); !errors.As(err, &se) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, c := range map[string]struct {
		in   string
		line int
	}{
		"empty":      {"", 1},
		"header":     {"Id,Target\na,1\n", 1},
		"class":      {"Id,Predicted\na,1\nb,1 x\n", 3},
		"range":      {"Id,Predicted\na,28\n", 2},
		"fields":     {"Id,Predicted\na,1\nb,1,2\n", 3},
		"duplicate":  {"Id,Predicted\na,1\na,2\n", 3},
		"empty id":   {"Id,Predicted\n,1\n", 2},
		"bare quote": {"Id,Predicted\na,\"1\n", 2},
	} {
		_, err := ReadSubmission(strings.NewReader(c.in))
		if !errors.As(err, &se) || se.Line != c.line {
			t.Errorf("%s: %v (want line %d)", name, err, c.line)
		}
	}
}

func TestReadRealSampleSubmission(t *testing.T) {
	f, err := os.Open(filepath.Join(testenv.HPAReal(t), "sample_submission.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := ReadSubmission(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 11702 || rows[0].ID != "00008af0-bad0-11e8-b2b8-ac1f6b6435d0" || !slices.Equal(rows[0].Predicted, []int{0}) {
		t.Errorf("%d rows, first %+v", len(rows), rows[0])
	}
}
