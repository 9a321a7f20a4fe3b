package synth

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/hpa-plates/hpa/internal/pipeline"
)

// LabelsHeader is the exact header line of the HPA label file (train.csv).
var LabelsHeader = []string{"Id", "Target"}

// LabeledID is one row of an HPA label file: a sample Id and its class ids (0..27), in file order.
type LabeledID struct {
	ID      string
	Targets []int
}

// CSVError reports a malformed label file. Line is 1-based (the header is line 1); File is set
// when the file name is known (ReadLabelsFile).
type CSVError struct {
	File   string
	Line   int
	Reason string
	Err    error // underlying error, if any
}

func (e *CSVError) Error() string {
	name := e.File
	if name == "" {
		name = "labels csv"
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s line %d: %s", name, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s: %s", name, e.Reason)
}

func (e *CSVError) Unwrap() error { return e.Err }

// ReadLabelsCSV parses an HPA label file: header exactly "Id,Target", then one row per sample with a
// non-empty Id and one or more space-separated class ids in [0, 28). Duplicate Ids, duplicate class
// ids within a row, unknown class ids and malformed rows are *CSVError values naming the line.
// Class ids keep their file order (the real train.csv does not sort them).
func ReadLabelsCSV(r io.Reader) ([]LabeledID, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // checked below with our own message
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err == io.EOF {
		return nil, &CSVError{Line: 1, Reason: "empty file, want header Id,Target"}
	}
	if err != nil {
		return nil, csvParseError(err)
	}
	if len(head) > 0 {
		head[0] = strings.TrimPrefix(head[0], "\ufeff")
	}
	if !slices.Equal(head, LabelsHeader) {
		return nil, &CSVError{Line: 1, Reason: fmt.Sprintf("header %q, want Id,Target", strings.Join(head, ","))}
	}
	var rows []LabeledID
	seen := make(map[string]int)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvParseError(err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != 2 {
			return nil, &CSVError{Line: line, Reason: fmt.Sprintf("%d fields, want 2 (Id,Target)", len(rec))}
		}
		id := strings.TrimSpace(rec[0])
		if id == "" {
			return nil, &CSVError{Line: line, Reason: "empty Id"}
		}
		if prev, dup := seen[id]; dup {
			return nil, &CSVError{Line: line, Reason: fmt.Sprintf("duplicate Id %s (first on line %d)", id, prev)}
		}
		seen[id] = line
		targets, reason := parseTargets(rec[1])
		if reason != "" {
			return nil, &CSVError{Line: line, Reason: fmt.Sprintf("Id %s: %s", id, reason)}
		}
		rows = append(rows, LabeledID{ID: id, Targets: targets})
	}
	return rows, nil
}

func parseTargets(s string) ([]int, string) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, "empty Target"
	}
	out := make([]int, 0, len(fields))
	for _, f := range fields {
		c, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Sprintf("class id %q is not an integer", f)
		}
		if c < 0 || c >= pipeline.NumClasses {
			return nil, fmt.Sprintf("unknown class id %d (want 0..%d)", c, pipeline.NumClasses-1)
		}
		if slices.Contains(out, c) {
			return nil, fmt.Sprintf("class id %d repeated", c)
		}
		out = append(out, c)
	}
	return out, ""
}

func csvParseError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &CSVError{Line: pe.Line, Reason: pe.Err.Error(), Err: err}
	}
	return &CSVError{Reason: err.Error(), Err: err}
}

// ReadLabelsFile reads an HPA label file from disk; errors name the file.
func ReadLabelsFile(path string) ([]LabeledID, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &CSVError{File: path, Reason: err.Error(), Err: err}
	}
	defer f.Close()
	rows, err := ReadLabelsCSV(f)
	if err != nil {
		var ce *CSVError
		if errors.As(err, &ce) {
			ce.File = path
		}
		return nil, err
	}
	return rows, nil
}

// WriteLabelsCSV writes rows in the HPA label format (header "Id,Target", class ids space-separated,
// "\n" line ends). It refuses rows ReadLabelsCSV would reject, so its output always reads back.
func WriteLabelsCSV(w io.Writer, rows []LabeledID) error {
	var b strings.Builder
	b.WriteString("Id,Target\n")
	seen := make(map[string]bool, len(rows))
	for i, r := range rows {
		if r.ID == "" || strings.ContainsAny(r.ID, ",\"\r\n") || strings.TrimSpace(r.ID) != r.ID {
			return &CSVError{Line: i + 2, Reason: fmt.Sprintf("invalid Id %q", r.ID)}
		}
		if seen[r.ID] {
			return &CSVError{Line: i + 2, Reason: fmt.Sprintf("duplicate Id %s", r.ID)}
		}
		seen[r.ID] = true
		if len(r.Targets) == 0 {
			return &CSVError{Line: i + 2, Reason: fmt.Sprintf("Id %s: empty Target", r.ID)}
		}
		b.WriteString(r.ID)
		b.WriteByte(',')
		for j, c := range r.Targets {
			if c < 0 || c >= pipeline.NumClasses {
				return &CSVError{Line: i + 2, Reason: fmt.Sprintf("Id %s: unknown class id %d", r.ID, c)}
			}
			if slices.Contains(r.Targets[:j], c) {
				return &CSVError{Line: i + 2, Reason: fmt.Sprintf("Id %s: class id %d repeated", r.ID, c)}
			}
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.Itoa(c))
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ClassCounts returns, for each class, the number of rows whose Targets contain it.
func ClassCounts(rows []LabeledID) [pipeline.NumClasses]int {
	var n [pipeline.NumClasses]int
	for _, r := range rows {
		for _, c := range r.Targets {
			if c >= 0 && c < pipeline.NumClasses {
				n[c]++
			}
		}
	}
	return n
}

// ClassFrequencies returns, for each class, the fraction of rows whose Targets contain it
// (all zero for no rows). The fractions sum to the mean number of labels per row, not to 1.
func ClassFrequencies(rows []LabeledID) [pipeline.NumClasses]float64 {
	var f [pipeline.NumClasses]float64
	if len(rows) == 0 {
		return f
	}
	n := ClassCounts(rows)
	for c := range f {
		f[c] = float64(n[c]) / float64(len(rows))
	}
	return f
}
