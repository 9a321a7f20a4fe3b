package folds

import (
	"encoding/csv"
	"fmt"
	"io"
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

// Write writes the fold file: a header `Id,fold`, then one row per example.
func Write(w io.Writer, ex []Example, folds []int) error {
	if len(ex) != len(folds) {
		return &Error{Example: -1, Reason: fmt.Sprintf("%d folds for %d examples", len(folds), len(ex))}
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

// Read reads a fold file written by Write (`Id,fold`) into a map Id -> fold. Malformed
// rows, negative folds and repeated Ids are *labels.CSVError with the line number.
func Read(r io.Reader) (map[string]int, error) {
	out := make(map[string]int)
	err := labels.ReadIDColumn(r, "fold", func(_ int, id, value string) error {
		f, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil || f < 0 {
			return fmt.Errorf("Id %s: fold %q is not a non-negative integer", id, value)
		}
		if _, dup := out[id]; dup {
			return fmt.Errorf("Id %s repeated", id)
		}
		out[id] = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ReadFile reads a fold file by path; errors name the file.
func ReadFile(path string) (map[string]int, error) {
	var m map[string]int
	err := labels.ReadIDColumnFile(path, func(r io.Reader) (err error) {
		m, err = Read(r)
		return err
	})
	return m, err
}
