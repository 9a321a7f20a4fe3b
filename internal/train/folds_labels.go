package train

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/hpa-plates/hpa/internal/labels"
)

// Example is one labeled sample of a label file (labels.Target).
type Example = labels.Target

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
// rows, negative folds and repeated Ids are *labels.CSVError with the line number.
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
				return nil, &labels.CSVError{Line: pe.Line, Reason: pe.Err.Error()}
			}
			return nil, &labels.CSVError{Line: line, Reason: err.Error()}
		}
		if header {
			header = false
			if len(rec) != 2 || strings.TrimPrefix(strings.TrimSpace(rec[0]), "\ufeff") != "Id" || strings.TrimSpace(rec[1]) != "fold" {
				return nil, &labels.CSVError{Line: line, Reason: fmt.Sprintf("header must be Id,fold, got %q", strings.Join(rec, ","))}
			}
			continue
		}
		if len(rec) != 2 {
			return nil, &labels.CSVError{Line: line, Reason: fmt.Sprintf("want 2 fields (Id,fold), got %d", len(rec))}
		}
		id := strings.TrimSpace(rec[0])
		if id == "" {
			return nil, &labels.CSVError{Line: line, Reason: "empty Id"}
		}
		f, err := strconv.Atoi(strings.TrimSpace(rec[1]))
		if err != nil || f < 0 {
			return nil, &labels.CSVError{Line: line, Reason: fmt.Sprintf("Id %s: fold %q is not a non-negative integer", id, rec[1])}
		}
		if _, dup := out[id]; dup {
			return nil, &labels.CSVError{Line: line, Reason: fmt.Sprintf("Id %s repeated", id)}
		}
		out[id] = f
	}
	if header {
		return nil, &labels.CSVError{Reason: "empty file: no Id,fold header"}
	}
	return out, nil
}

// ReadFoldsFile reads a fold file by path; errors name the file.
func ReadFoldsFile(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &labels.CSVError{File: path, Reason: err.Error()}
	}
	defer f.Close()
	m, err := ReadFolds(f)
	if err != nil {
		var le *labels.CSVError
		if errors.As(err, &le) {
			le.File = path
		}
		return nil, err
	}
	return m, nil
}
