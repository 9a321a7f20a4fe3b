package labels

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/testenv"
)

// headLines returns the first n lines of a file of the committed real fixture, as a seed.
func headLines(f *testing.F, path string, n int) []byte {
	f.Helper()
	fh, err := os.Open(path)
	if err != nil {
		f.Fatal(err)
	}
	defer fh.Close()
	var b bytes.Buffer
	sc := bufio.NewScanner(fh)
	for i := 0; i < n && sc.Scan(); i++ {
		b.Write(sc.Bytes())
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// FuzzReadTargets: the train.csv reader never panics, refuses with a *CSVError naming a line, and
// what it accepts is valid and survives WriteTargets -> ReadTargets unchanged.
func FuzzReadTargets(f *testing.F) {
	f.Add(headLines(f, filepath.Join(testenv.HPAFixture(f), "train.csv"), 12))
	f.Add([]byte("\ufeffId , Target\r\na,0 27\r\nb,\n"))
	f.Add([]byte("Id,Target\n\"x,y\",1\n"))
	f.Add([]byte("Id,Target\na,28\n"))
	f.Add([]byte("Id,Target\na,1 1\n"))
	f.Add([]byte("Id,Target\na,1\na,2\n"))
	f.Add([]byte("Id,Target\na,1,2\n"))
	f.Add([]byte("Id,Target\n\"a\nb\",3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := ReadTargets(bytes.NewReader(data))
		if err != nil {
			var ce *CSVError
			if !errors.As(err, &ce) || ce.Reason == "" || ce.Line < 0 {
				t.Fatalf("error %T %v is not a *CSVError with a reason", err, err)
			}
			return
		}
		seen := map[string]bool{}
		var writable []Target
		for _, r := range rows {
			if r.ID == "" || strings.TrimSpace(r.ID) != r.ID || seen[r.ID] {
				t.Fatalf("accepted Id %q (empty, untrimmed or repeated)", r.ID)
			}
			seen[r.ID] = true
			for j, c := range r.Labels {
				if c < 0 || c >= NumClasses || slices.Contains(r.Labels[:j], c) {
					t.Fatalf("accepted labels %v of %s", r.Labels, r.ID)
				}
			}
			// WriteTargets writes plain (unquoted) Ids and rows with labels only.
			if len(r.Labels) > 0 && !strings.ContainsAny(r.ID, ",\"\r\n") {
				writable = append(writable, r)
			}
		}
		var b bytes.Buffer
		if err := WriteTargets(&b, writable); err != nil {
			t.Fatalf("WriteTargets of accepted rows: %v", err)
		}
		back, err := ReadTargets(&b)
		if err != nil || (len(writable) > 0 && !reflect.DeepEqual(back, writable)) || len(back) != len(writable) {
			t.Fatalf("round trip: %v\nwrote %+v\nread  %+v", err, writable, back)
		}
	})
}

// FuzzReadSubmission: the label CSV reader (Kaggle "Id,Predicted", what `hpa label --submission`
// writes) never panics, refuses with a *SubmissionError, and what it accepts survives
// WriteSubmission -> ReadSubmission (sorted by Id, class ids ascending and deduplicated).
func FuzzReadSubmission(f *testing.F) {
	f.Add([]byte("Id,Predicted\n00008af0-bad0-11e8-b2b8-ac1f6b6435d0,0\n0000a892-bacf-11e8-b2b8-ac1f6b6435d0,25 0 2\nb,\n"))
	f.Add([]byte("\ufeffId,Predicted\r\n\" a\",1 1\r\n"))
	f.Add([]byte("Id,Predicted\na,28\n"))
	f.Add([]byte("Id,Predicted\na,1\na,2\n"))
	f.Add([]byte("Id,Predicted\n,1\n"))
	f.Add([]byte("Id,Predicted\na,-1\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := ReadSubmission(bytes.NewReader(data))
		if err != nil {
			var se *SubmissionError
			if !errors.As(err, &se) || se.Reason == "" {
				t.Fatalf("error %T %v is not a *SubmissionError with a reason", err, err)
			}
			return
		}
		want := map[string][]int{}
		var writable []SubmissionRow
		for _, r := range rows {
			if r.ID == "" {
				t.Fatalf("accepted an empty Id")
			}
			if _, dup := want[r.ID]; dup {
				t.Fatalf("accepted Id %q twice", r.ID)
			}
			for _, c := range r.Predicted {
				if c < 0 || c >= NumClasses {
					t.Fatalf("accepted class id %d of %s", c, r.ID)
				}
			}
			set := slices.Clone(r.Predicted)
			slices.Sort(set)
			want[r.ID] = slices.Compact(set)
			if !strings.ContainsAny(r.ID, ",\"\r\n") {
				writable = append(writable, r)
			}
		}
		var b bytes.Buffer
		if err := WriteSubmission(&b, writable); err != nil {
			t.Fatalf("WriteSubmission of accepted rows: %v", err)
		}
		back, err := ReadSubmission(&b)
		if err != nil || len(back) != len(writable) {
			t.Fatalf("round trip: %v (%d rows back of %d)\n%q", err, len(back), len(writable), b.String())
		}
		for i, r := range back {
			if i > 0 && back[i-1].ID >= r.ID {
				t.Fatalf("rows not sorted by Id: %q then %q", back[i-1].ID, r.ID)
			}
			if !slices.Equal(r.Predicted, want[r.ID]) {
				t.Fatalf("%s: read back %v, want %v", r.ID, r.Predicted, want[r.ID])
			}
		}
	})
}

// FuzzParseLabel: the label JSON reader never panics, refuses with a *DocumentError, and a label it
// accepts marshals and parses back to the same bytes.
func FuzzParseLabel(f *testing.F) {
	golden, err := filepath.Glob(filepath.Join(testenv.RepoRoot(f), "cmd", "hpa", "testdata", "label-golden", "*.json"))
	if err != nil || len(golden) == 0 {
		f.Fatalf("no golden labels: %v", err)
	}
	for _, g := range golden {
		if b, err := os.ReadFile(g); err == nil && !strings.HasSuffix(g, ".error.json") {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"schema":"hpa.label/v1"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseLabel(data)
		if err != nil {
			var de *DocumentError
			if !errors.As(err, &de) {
				t.Fatalf("error %T %v is not a *DocumentError", err, err)
			}
			return
		}
		b, err := MarshalLabel(l)
		if err != nil {
			t.Fatalf("an accepted label does not marshal: %v", err)
		}
		l2, err := ParseLabel(b)
		if err != nil {
			t.Fatalf("marshalled label does not parse: %v\n%s", err, b)
		}
		b2, err := MarshalLabel(l2)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("label not stable through marshal/parse: %v\n%s\n%s", err, b, b2)
		}
	})
}
