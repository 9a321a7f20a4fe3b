package eval

import (
	"fmt"
	"math"
)

// MetricsError is a malformed prediction, truth or probability matrix.
type MetricsError struct {
	What   string // "truth", "pred", "probs", "thresholds", ...
	Row    int    // -1 when not tied to a row
	Reason string
}

func (e *MetricsError) Error() string {
	if e.Row >= 0 {
		return fmt.Sprintf("metrics: %s row %d: %s", e.What, e.Row, e.Reason)
	}
	return fmt.Sprintf("metrics: %s: %s", e.What, e.Reason)
}

// ClassScore is the confusion counts and scores of one class.
type ClassScore struct {
	TP, FP, FN int
	Support    int // TP + FN: samples carrying the class
	Precision  float64
	Recall     float64
	F1         float64
}

// Scores are multi-label classification scores.
//
// Zero division follows scikit-learn's zero_division=0: a class with no predicted positives has
// precision 0, one with no true positives recall 0, and F1 = 2TP/(2TP+FP+FN) is 0 when the
// denominator is 0 (no positives and no predictions). Such a class still counts in the macro
// averages, as in sklearn's f1_score(average="macro") on an indicator matrix: macro-F1 is the plain
// mean of the per-class F1 over all classes.
type Scores struct {
	PerClass       []ClassScore
	MacroF1        float64
	MacroPrecision float64
	MacroRecall    float64
	// MicroF1 pools the counts of all classes.
	MicroF1 float64
}

// ScoreCounts computes precision, recall and F1 of a class from its counts (zero_division=0).
func ScoreCounts(tp, fp, fn int) ClassScore {
	cs := ClassScore{TP: tp, FP: fp, FN: fn, Support: tp + fn}
	if tp+fp > 0 {
		cs.Precision = float64(tp) / float64(tp+fp)
	}
	if tp+fn > 0 {
		cs.Recall = float64(tp) / float64(tp+fn)
	}
	if d := 2*tp + fp + fn; d > 0 {
		cs.F1 = float64(2*tp) / float64(d)
	}
	return cs
}

// ScoreFromClasses fills the averages from per-class scores.
func ScoreFromClasses(per []ClassScore) Scores {
	s := Scores{PerClass: per}
	var tp, fp, fn int
	for _, c := range per {
		s.MacroF1 += c.F1
		s.MacroPrecision += c.Precision
		s.MacroRecall += c.Recall
		tp, fp, fn = tp+c.TP, fp+c.FP, fn+c.FN
	}
	if n := float64(len(per)); n > 0 {
		s.MacroF1 /= n
		s.MacroPrecision /= n
		s.MacroRecall /= n
	}
	s.MicroF1 = ScoreCounts(tp, fp, fn).F1
	return s
}

// Score compares predicted and true label matrices (N x C, pred[i][c] = class c predicted for sample i).
func Score(pred, truth [][]bool) (Scores, error) {
	c, err := matrixWidth("truth", truth)
	if err != nil {
		return Scores{}, err
	}
	if len(pred) != len(truth) {
		return Scores{}, &MetricsError{What: "pred", Row: -1, Reason: fmt.Sprintf("%d rows, truth has %d", len(pred), len(truth))}
	}
	per := make([]ClassScore, c)
	counts := make([][3]int, c)
	for i, row := range pred {
		if len(row) != c {
			return Scores{}, &MetricsError{What: "pred", Row: i, Reason: fmt.Sprintf("%d columns, want %d", len(row), c)}
		}
		for k, p := range row {
			counts[k] = addConfusion(counts[k], p, truth[i][k])
		}
	}
	for k, n := range counts {
		per[k] = ScoreCounts(n[0], n[1], n[2])
	}
	return ScoreFromClasses(per), nil
}

// ScoreThresholds scores probabilities (N x C) against the truth with per-class thresholds: class c is
// predicted when probs[i][c] > thresholds[c] (strictly, as labels.Thresholds.Apply).
func ScoreThresholds(probs [][]float64, truth [][]bool, thresholds []float64) (Scores, error) {
	c, err := checkProbs(probs, truth)
	if err != nil {
		return Scores{}, err
	}
	if len(thresholds) != c {
		return Scores{}, &MetricsError{What: "thresholds", Row: -1, Reason: fmt.Sprintf("%d values for %d classes", len(thresholds), c)}
	}
	counts := make([][3]int, c)
	for i, row := range probs {
		for k, p := range row {
			counts[k] = addConfusion(counts[k], p > thresholds[k], truth[i][k])
		}
	}
	per := make([]ClassScore, c)
	for k, n := range counts {
		per[k] = ScoreCounts(n[0], n[1], n[2])
	}
	return ScoreFromClasses(per), nil
}

func addConfusion(n [3]int, pred, truth bool) [3]int {
	switch {
	case pred && truth:
		n[0]++
	case pred:
		n[1]++
	case truth:
		n[2]++
	}
	return n
}

// matrixWidth checks a non-empty rectangular matrix and returns its width.
func matrixWidth(what string, m [][]bool) (int, error) {
	if len(m) == 0 {
		return 0, &MetricsError{What: what, Row: -1, Reason: "no rows"}
	}
	c := len(m[0])
	if c == 0 {
		return 0, &MetricsError{What: what, Row: 0, Reason: "no columns"}
	}
	for i, row := range m {
		if len(row) != c {
			return 0, &MetricsError{What: what, Row: i, Reason: fmt.Sprintf("%d columns, want %d", len(row), c)}
		}
	}
	return c, nil
}

// checkProbs checks probs and truth have the same shape and probabilities are finite in [0, 1].
func checkProbs(probs [][]float64, truth [][]bool) (int, error) {
	c, err := matrixWidth("truth", truth)
	if err != nil {
		return 0, err
	}
	if len(probs) != len(truth) {
		return 0, &MetricsError{What: "probs", Row: -1, Reason: fmt.Sprintf("%d rows, truth has %d", len(probs), len(truth))}
	}
	for i, row := range probs {
		if len(row) != c {
			return 0, &MetricsError{What: "probs", Row: i, Reason: fmt.Sprintf("%d columns, want %d", len(row), c)}
		}
		for k, p := range row {
			if math.IsNaN(p) || p < 0 || p > 1 {
				return 0, &MetricsError{What: "probs", Row: i, Reason: fmt.Sprintf("class %d probability %v outside [0, 1]", k, p)}
			}
		}
	}
	return c, nil
}

// TruthFromLabels turns label lists (class ids per sample) into an N x numClasses indicator matrix.
func TruthFromLabels(labels [][]int, numClasses int) ([][]bool, error) {
	out := make([][]bool, len(labels))
	for i, ls := range labels {
		out[i] = make([]bool, numClasses)
		for _, c := range ls {
			if c < 0 || c >= numClasses {
				return nil, &MetricsError{What: "labels", Row: i, Reason: fmt.Sprintf("class id %d outside 0..%d", c, numClasses-1)}
			}
			out[i][c] = true
		}
	}
	return out, nil
}

// TruthFromIndicator turns a 0/1 integer matrix into a boolean one; other values are an error.
func TruthFromIndicator(m [][]int) ([][]bool, error) {
	out := make([][]bool, len(m))
	for i, row := range m {
		out[i] = make([]bool, len(row))
		for k, v := range row {
			switch v {
			case 0:
			case 1:
				out[i][k] = true
			default:
				return nil, &MetricsError{What: "truth", Row: i, Reason: fmt.Sprintf("class %d value %d is not 0 or 1", k, v)}
			}
		}
	}
	return out, nil
}
