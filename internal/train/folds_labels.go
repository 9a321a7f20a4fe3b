package train

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// hpaClasses is the number of HPA classes (hpaClasses; not imported so this package stays
// free of the image code's cgo).
const hpaClasses = 28

// Example is one labeled sample of a label file: its Id and its class ids (0..27), in file order.
type Example struct {
	ID     string
	Labels []int
}

// LabelsError reports a malformed label file: the file (when known), the 1-based line and the reason.
type LabelsError struct {
	File   string // empty when reading from an io.Reader without a name
	Line   int    // 1-based; 0 when the error is not tied to a line
	Reason string
}

func (e *LabelsError) Error() string {
	name := e.File
	if name == "" {
		name = "labels"
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", name, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s: %s", name, e.Reason)
}

// ReadLabels reads a label file in the HPA train.csv format: a header `Id,Target`, then one row per
// sample, `Id,Target` where Target is space-separated class ids (any order, e.g. "7 1 2 0").
// An empty Target is a sample without labels. Malformed rows, class ids outside 0..27, repeated
// class ids within a row and repeated Ids are *LabelsError with the line number.
func ReadLabels(r io.Reader) ([]Example, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	var out []Example
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
				return nil, &LabelsError{Line: pe.Line, Reason: pe.Err.Error()}
			}
			return nil, &LabelsError{Line: line, Reason: err.Error()}
		}
		if header {
			header = false
			if len(rec) != 2 || strings.TrimPrefix(strings.TrimSpace(rec[0]), "\ufeff") != "Id" || strings.TrimSpace(rec[1]) != "Target" {
				return nil, &LabelsError{Line: line, Reason: fmt.Sprintf("header must be Id,Target, got %q", strings.Join(rec, ","))}
			}
			continue
		}
		if len(rec) != 2 {
			return nil, &LabelsError{Line: line, Reason: fmt.Sprintf("want 2 fields (Id,Target), got %d", len(rec))}
		}
		id := strings.TrimSpace(rec[0])
		if id == "" {
			return nil, &LabelsError{Line: line, Reason: "empty Id"}
		}
		if prev, dup := seen[id]; dup {
			return nil, &LabelsError{Line: line, Reason: fmt.Sprintf("Id %s repeated (first on line %d)", id, prev)}
		}
		seen[id] = line
		fields := strings.Fields(rec[1])
		labels := make([]int, 0, len(fields))
		var have [hpaClasses]bool
		for _, f := range fields {
			c, err := strconv.Atoi(f)
			if err != nil {
				return nil, &LabelsError{Line: line, Reason: fmt.Sprintf("Id %s: class id %q is not an integer", id, f)}
			}
			if c < 0 || c >= hpaClasses {
				return nil, &LabelsError{Line: line, Reason: fmt.Sprintf("Id %s: unknown class id %d (want 0..%d)", id, c, hpaClasses-1)}
			}
			if have[c] {
				return nil, &LabelsError{Line: line, Reason: fmt.Sprintf("Id %s: class id %d repeated", id, c)}
			}
			have[c] = true
			labels = append(labels, c)
		}
		out = append(out, Example{ID: id, Labels: labels})
	}
	if header {
		return nil, &LabelsError{Reason: "empty file: no Id,Target header"}
	}
	return out, nil
}

// ReadLabelsFile reads a label file by path; errors name the file.
func ReadLabelsFile(path string) ([]Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &LabelsError{File: path, Reason: err.Error()}
	}
	defer f.Close()
	ex, err := ReadLabels(f)
	if err != nil {
		var le *LabelsError
		if errors.As(err, &le) {
			le.File = path
		}
		return nil, err
	}
	return ex, nil
}

// LabelMatrix returns the label lists of the examples, the form the fold and sampler code take.
func LabelMatrix(ex []Example) [][]int {
	out := make([][]int, len(ex))
	for i, e := range ex {
		out[i] = e.Labels
	}
	return out
}

// WriteFolds writes the fold file: a header `Id,fold`, then one row per example.
func WriteFolds(w io.Writer, ex []Example, folds []int) error {
	if len(ex) != len(folds) {
		return &FoldError{Example: -1, Reason: fmt.Sprintf("%d folds for %d examples", len(folds), len(ex))}
	}
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"Id", "fold"}); err != nil {
		return err
	}
	for i, e := range ex {
		if err := cw.Write([]string{e.ID, strconv.Itoa(folds[i])}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ReadFolds reads a fold file written by WriteFolds (`Id,fold`) into a map Id -> fold. Malformed
// rows, negative folds and repeated Ids are *LabelsError with the line number.
func ReadFolds(r io.Reader) (map[string]int, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	out := make(map[string]int)
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
				return nil, &LabelsError{Line: pe.Line, Reason: pe.Err.Error()}
			}
			return nil, &LabelsError{Line: line, Reason: err.Error()}
		}
		if header {
			header = false
			if len(rec) != 2 || strings.TrimPrefix(strings.TrimSpace(rec[0]), "\ufeff") != "Id" || strings.TrimSpace(rec[1]) != "fold" {
				return nil, &LabelsError{Line: line, Reason: fmt.Sprintf("header must be Id,fold, got %q", strings.Join(rec, ","))}
			}
			continue
		}
		if len(rec) != 2 {
			return nil, &LabelsError{Line: line, Reason: fmt.Sprintf("want 2 fields (Id,fold), got %d", len(rec))}
		}
		id := strings.TrimSpace(rec[0])
		if id == "" {
			return nil, &LabelsError{Line: line, Reason: "empty Id"}
		}
		f, err := strconv.Atoi(strings.TrimSpace(rec[1]))
		if err != nil || f < 0 {
			return nil, &LabelsError{Line: line, Reason: fmt.Sprintf("Id %s: fold %q is not a non-negative integer", id, rec[1])}
		}
		if _, dup := out[id]; dup {
			return nil, &LabelsError{Line: line, Reason: fmt.Sprintf("Id %s repeated", id)}
		}
		out[id] = f
	}
	if header {
		return nil, &LabelsError{Reason: "empty file: no Id,fold header"}
	}
	return out, nil
}

// ReadFoldsFile reads a fold file by path; errors name the file.
func ReadFoldsFile(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &LabelsError{File: path, Reason: err.Error()}
	}
	defer f.Close()
	m, err := ReadFolds(f)
	if err != nil {
		var le *LabelsError
		if errors.As(err, &le) {
			le.File = path
		}
		return nil, err
	}
	return m, nil
}
