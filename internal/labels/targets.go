package labels

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Target is one row of a label file (the HPA train.csv): the sample Id and its class ids
// (0..27), in file order.
type Target struct {
	ID     string
	Labels []int
}

// CSVError reports a malformed label file: the file (when known), the 1-based line and the reason.
type CSVError struct {
	File   string // empty when reading from an io.Reader without a name
	Line   int    // 1-based; 0 when the error is not tied to a line
	Reason string
}

func (e *CSVError) Error() string {
	name := e.File
	if name == "" {
		name = "labels"
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", name, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s: %s", name, e.Reason)
}

// ReadTargets reads a label file in the HPA train.csv format: a header `Id,Target`, then one row per
// sample, `Id,Target` where Target is space-separated class ids (any order, e.g. "7 1 2 0").
// An empty Target is a sample without labels. Malformed rows, class ids outside 0..27, repeated
// class ids within a row and repeated Ids are *CSVError with the line number.
func ReadTargets(r io.Reader) ([]Target, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	var out []Target
	seen := make(map[string]int)
	header := true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, &CSVError{Line: pe.Line, Reason: pe.Err.Error()}
			}
			return nil, &CSVError{Line: line, Reason: err.Error()}
		}
		if header {
			header = false
			if len(rec) != 2 || strings.TrimPrefix(strings.TrimSpace(rec[0]), "\ufeff") != "Id" || strings.TrimSpace(rec[1]) != "Target" {
				return nil, &CSVError{Line: line, Reason: fmt.Sprintf("header must be Id,Target, got %q", strings.Join(rec, ","))}
			}
			continue
		}
		if len(rec) != 2 {
			return nil, &CSVError{Line: line, Reason: fmt.Sprintf("want 2 fields (Id,Target), got %d", len(rec))}
		}
		id := strings.TrimSpace(rec[0])
		if id == "" {
			return nil, &CSVError{Line: line, Reason: "empty Id"}
		}
		if prev, dup := seen[id]; dup {
			return nil, &CSVError{Line: line, Reason: fmt.Sprintf("Id %s repeated (first on line %d)", id, prev)}
		}
		seen[id] = line
		fields := strings.Fields(rec[1])
		labels := make([]int, 0, len(fields))
		var have [NumClasses]bool
		for _, f := range fields {
			c, err := strconv.Atoi(f)
			if err != nil {
				return nil, &CSVError{Line: line, Reason: fmt.Sprintf("Id %s: class id %q is not an integer", id, f)}
			}
			if c < 0 || c >= NumClasses {
				return nil, &CSVError{Line: line, Reason: fmt.Sprintf("Id %s: unknown class id %d (want 0..%d)", id, c, NumClasses-1)}
			}
			if have[c] {
				return nil, &CSVError{Line: line, Reason: fmt.Sprintf("Id %s: class id %d repeated", id, c)}
			}
			have[c] = true
			labels = append(labels, c)
		}
		out = append(out, Target{ID: id, Labels: labels})
	}
	if header {
		return nil, &CSVError{Reason: "empty file: no Id,Target header"}
	}
	return out, nil
}

// ReadTargetsFile reads a label file by path; errors name the file.
func ReadTargetsFile(path string) ([]Target, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &CSVError{File: path, Reason: err.Error()}
	}
	defer f.Close()
	ex, err := ReadTargets(f)
	if err != nil {
		var le *CSVError
		if errors.As(err, &le) {
			le.File = path
		}
		return nil, err
	}
	return ex, nil
}

// WriteTargets writes rows in the HPA label format (header "Id,Target", class ids space-separated in
// the rows' order, "\n" line ends). It refuses rows ReadTargets would reject, and rows without labels.
func WriteTargets(w io.Writer, rows []Target) error {
	var b strings.Builder
	b.WriteString("Id,Target\n")
	seen := make(map[string]bool, len(rows))
	for i, r := range rows {
		bad := func(format string, args ...any) error {
			return &CSVError{Line: i + 2, Reason: fmt.Sprintf(format, args...)}
		}
		if r.ID == "" || strings.ContainsAny(r.ID, ",\"\r\n") || strings.TrimSpace(r.ID) != r.ID {
			return bad("invalid Id %q", r.ID)
		}
		if seen[r.ID] {
			return bad("duplicate Id %s", r.ID)
		}
		seen[r.ID] = true
		if len(r.Labels) == 0 {
			return bad("Id %s: no labels", r.ID)
		}
		b.WriteString(r.ID)
		b.WriteByte(',')
		for j, c := range r.Labels {
			if c < 0 || c >= NumClasses {
				return bad("Id %s: unknown class id %d", r.ID, c)
			}
			if slices.Contains(r.Labels[:j], c) {
				return bad("Id %s: class id %d repeated", r.ID, c)
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
