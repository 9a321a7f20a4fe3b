package labels

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// SubmissionRow is one line of a Kaggle submission: a sample id and its predicted class ids.
type SubmissionRow struct {
	ID        string
	Predicted []int
}

// SubmissionError reports a bad submission row or file.
type SubmissionError struct {
	Line   int // 1-based; 0 when not tied to a line
	Reason string
}

func (e *SubmissionError) Error() string {
	if e.Line == 0 {
		return "submission: " + e.Reason
	}
	return fmt.Sprintf("submission line %d: %s", e.Line, e.Reason)
}

// SubmissionHeader is the header line of a Kaggle HPA submission.
var SubmissionHeader = []string{"Id", "Predicted"}

// WriteSubmission writes the Kaggle CSV "Id,Predicted" with space-separated ascending class ids, rows
// sorted by Id. Duplicate or empty ids and class ids outside [0, NumClasses) are errors.
func WriteSubmission(w io.Writer, rows []SubmissionRow) error {
	sorted := slices.Clone(rows)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	bw := bufio.NewWriter(w)
	cw := csv.NewWriter(bw)
	if err := cw.Write(SubmissionHeader); err != nil {
		return err
	}
	for i, r := range sorted {
		if r.ID == "" || strings.ContainsAny(r.ID, ",\"\r\n") {
			return &SubmissionError{0, fmt.Sprintf("bad sample id %q", r.ID)}
		}
		if i > 0 && sorted[i-1].ID == r.ID {
			return &SubmissionError{0, fmt.Sprintf("duplicate sample id %q", r.ID)}
		}
		ids := slices.Clone(r.Predicted)
		slices.Sort(ids)
		ids = slices.Compact(ids)
		parts := make([]string, len(ids))
		for j, k := range ids {
			if k < 0 || k >= NumClasses {
				return &SubmissionError{0, fmt.Sprintf("sample %s: class id %d outside [0, %d)", r.ID, k, NumClasses)}
			}
			parts[j] = strconv.Itoa(k)
		}
		if err := cw.Write([]string{r.ID, strings.Join(parts, " ")}); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// ReadSubmission parses a Kaggle CSV written by WriteSubmission (or Kaggle's sample_submission.csv).
// Rows come back in file order with their class ids as written.
func ReadSubmission(r io.Reader) ([]SubmissionRow, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 2
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err == io.EOF {
		return nil, &SubmissionError{1, "empty file, want header Id,Predicted"}
	}
	if err != nil {
		return nil, &SubmissionError{1, err.Error()}
	}
	if strings.TrimPrefix(head[0], "\ufeff") != SubmissionHeader[0] || head[1] != SubmissionHeader[1] {
		return nil, &SubmissionError{1, fmt.Sprintf("header %q,%q, want Id,Predicted", head[0], head[1])}
	}
	var rows []SubmissionRow
	seen := map[string]bool{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			// No FieldPos here: it panics when the failed read returned no field.
			line := 0
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			return nil, &SubmissionError{line, err.Error()}
		}
		line, _ := cr.FieldPos(0)
		id := rec[0]
		if id == "" {
			return nil, &SubmissionError{line, "empty Id"}
		}
		if seen[id] {
			return nil, &SubmissionError{line, fmt.Sprintf("duplicate Id %s", id)}
		}
		seen[id] = true
		row := SubmissionRow{ID: id, Predicted: []int{}}
		for _, f := range strings.Fields(rec[1]) {
			k, err := strconv.Atoi(f)
			if err != nil || k < 0 || k >= NumClasses {
				return nil, &SubmissionError{line, fmt.Sprintf("sample %s: class id %q is not an integer in [0, %d)", id, f, NumClasses)}
			}
			row.Predicted = append(row.Predicted, k)
		}
		rows = append(rows, row)
	}
}
