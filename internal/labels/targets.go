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
	var out []Target
	seen := make(map[string]int)
	err := ReadIDColumn(r, "Target", func(line int, id, value string) error {
		if prev, dup := seen[id]; dup {
			return fmt.Errorf("Id %s repeated (first on line %d)", id, prev)
		}
		seen[id] = line
		fields := strings.Fields(value)
		labels := make([]int, 0, len(fields))
		var have [NumClasses]bool
		for _, f := range fields {
			c, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("Id %s: class id %q is not an integer", id, f)
			}
			if c < 0 || c >= NumClasses {
				return fmt.Errorf("Id %s: unknown class id %d (want 0..%d)", id, c, NumClasses-1)
			}
			if have[c] {
				return fmt.Errorf("Id %s: class id %d repeated", id, c)
			}
			have[c] = true
			labels = append(labels, c)
		}
		out = append(out, Target{ID: id, Labels: labels})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ReadTargetsFile reads a label file by path; errors name the file.
func ReadTargetsFile(path string) ([]Target, error) {
	var out []Target
	err := ReadIDColumnFile(path, func(r io.Reader) (err error) {
		out, err = ReadTargets(r)
		return err
	})
	return out, err
}

// ReadIDColumn reads a two-column CSV file with the header "Id,<column>" (a UTF-8 byte order mark
// and spaces around the names are allowed), calling row with the 1-based line, the trimmed,
// non-empty Id and the raw second field of each data row. Malformed CSV, a wrong header, rows of
// another width, empty Ids and row's errors are *CSVError with the line number. It reads the
// label file (Id,Target) and the fold file (Id,fold) of internal/train.
func ReadIDColumn(r io.Reader, column string, row func(line int, id, value string) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header := true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// No FieldPos here: it panics when the failed read returned no field.
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return &CSVError{Line: pe.Line, Reason: pe.Err.Error()}
			}
			return &CSVError{Reason: err.Error()}
		}
		line, _ := cr.FieldPos(0)
		if header {
			header = false
			if len(rec) != 2 || strings.TrimPrefix(strings.TrimSpace(rec[0]), "\ufeff") != "Id" || strings.TrimSpace(rec[1]) != column {
				return &CSVError{Line: line, Reason: fmt.Sprintf("header must be Id,%s, got %q", column, strings.Join(rec, ","))}
			}
			continue
		}
		if len(rec) != 2 {
			return &CSVError{Line: line, Reason: fmt.Sprintf("want 2 fields (Id,%s), got %d", column, len(rec))}
		}
		id := strings.TrimSpace(rec[0])
		if id == "" {
			return &CSVError{Line: line, Reason: "empty Id"}
		}
		if err := row(line, id, rec[1]); err != nil {
			return &CSVError{Line: line, Reason: err.Error()}
		}
	}
	if header {
		return &CSVError{Reason: "empty file: no Id," + column + " header"}
	}
	return nil
}

// ReadIDColumnFile opens path and hands it to read; a *CSVError names the file.
func ReadIDColumnFile(path string, read func(io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return &CSVError{File: path, Reason: err.Error()}
	}
	defer f.Close()
	if err := read(f); err != nil {
		var le *CSVError
		if errors.As(err, &le) {
			le.File = path
		}
		return err
	}
	return nil
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
