package labels

import (
	"fmt"
	"math"
	"sort"
)

// Threshold modes, as in the model manifest and the label JSON.
const (
	ThresholdUniform  = "uniform"   // one value for every class
	ThresholdPerClass = "per_class" // a value per class, e.g. tuned on validation folds
	ThresholdRate     = "rate"      // per-class values from RateMatchedThresholds
)

// DefaultThreshold is the uniform threshold used when nothing else is configured.
const DefaultThreshold = 0.2

// Thresholds turns averaged probabilities into labels: class k is predicted when p[k] > Values[k]
// (strictly greater). With AtLeastTop, a sample where no class passes gets its most probable class
// (the lowest class id among equal maxima).
type Thresholds struct {
	Mode       string
	Values     []float64 // one per class
	AtLeastTop bool
}

// ThresholdError reports unusable thresholds.
type ThresholdError struct {
	Mode   string
	Reason string
}

func (e *ThresholdError) Error() string {
	return fmt.Sprintf("thresholds (%s): %s", e.Mode, e.Reason)
}

// UniformThresholds returns Thresholds with the same value t for n classes.
func UniformThresholds(t float64, n int) Thresholds {
	v := make([]float64, n)
	for i := range v {
		v[i] = t
	}
	return Thresholds{Mode: ThresholdUniform, Values: v}
}

// NewThresholds builds Thresholds for numClasses classes from a mode, the uniform value (used by
// "uniform") and per-class values (used by "per_class" and "rate").
func NewThresholds(mode string, uniform float64, perClass []float64, atLeastTop bool, numClasses int) (Thresholds, error) {
	var t Thresholds
	switch mode {
	case ThresholdUniform:
		t = UniformThresholds(uniform, numClasses)
	case ThresholdPerClass, ThresholdRate:
		if len(perClass) != numClasses {
			return Thresholds{}, &ThresholdError{mode, fmt.Sprintf("%d values for %d classes", len(perClass), numClasses)}
		}
		t = Thresholds{Mode: mode, Values: append([]float64(nil), perClass...)}
	default:
		return Thresholds{}, &ThresholdError{mode, "unknown mode (want uniform, per_class or rate)"}
	}
	t.AtLeastTop = atLeastTop
	return t, t.Validate(numClasses)
}

// Validate checks there is one finite value in [0, 1] per class.
func (t Thresholds) Validate(numClasses int) error {
	if len(t.Values) != numClasses {
		return &ThresholdError{t.Mode, fmt.Sprintf("%d values for %d classes", len(t.Values), numClasses)}
	}
	for k, v := range t.Values {
		if math.IsNaN(v) || v < 0 || v > 1 {
			return &ThresholdError{t.Mode, fmt.Sprintf("class %d threshold %v is outside [0, 1]", k, v)}
		}
	}
	return nil
}

// Apply returns the predicted class ids of one sample, sorted ascending. probs and t.Values must have
// the same length (Validate); extra probabilities beyond the thresholds are ignored.
func (t Thresholds) Apply(probs []float64) []int {
	n := min(len(probs), len(t.Values))
	pred := []int{}
	for k := 0; k < n; k++ {
		if probs[k] > t.Values[k] {
			pred = append(pred, k)
		}
	}
	if len(pred) == 0 && t.AtLeastTop && n > 0 {
		top := 0
		for k := 1; k < n; k++ {
			if probs[k] > probs[top] {
				top = k
			}
		}
		pred = append(pred, top)
	}
	return pred
}

// RateMatchedThresholds chooses per-class thresholds so that, on the given probabilities (one row per
// sample), each class k is predicted for a fraction rates[k] of the samples (e.g. its frequency in the
// training labels). For class k with its n probabilities sorted descending p[0] >= ... >= p[n-1] and
// m = round(rates[k]*n) (rates are clamped to [0, 1]), the threshold is the midpoint
// (p[m-1] + p[m]) / 2 with the sentinels p[-1] = 1 and p[n] = 0; so exactly m samples pass "p > t"
// unless p[m-1] == p[m], where the tie goes to fewer predictions. Rows shorter than rates simply
// contribute nothing to the classes they lack; with no probabilities for a class its threshold is 0.5.
// NaN probabilities are ignored.
func RateMatchedThresholds(probs [][]float64, rates []float64) []float64 {
	out := make([]float64, len(rates))
	col := make([]float64, 0, len(probs))
	for k, r := range rates {
		col = col[:0]
		for _, row := range probs {
			if k < len(row) && !math.IsNaN(row[k]) {
				col = append(col, row[k])
			}
		}
		sort.Sort(sort.Reverse(sort.Float64Slice(col)))
		n := len(col)
		if math.IsNaN(r) || r < 0 {
			r = 0
		} else if r > 1 {
			r = 1
		}
		m := int(math.Round(r * float64(n)))
		hi, lo := 1.0, 0.0
		if m > 0 {
			hi = col[m-1]
		}
		if m < n {
			lo = col[m]
		}
		out[k] = (hi + lo) / 2
	}
	return out
}

// ClassRates is the fraction of samples carrying each of numClasses classes, e.g. the rates of the
// training labels to feed RateMatchedThresholds. Class ids outside [0, numClasses) are an error.
func ClassRates(targets [][]int, numClasses int) ([]float64, error) {
	rates := make([]float64, numClasses)
	if len(targets) == 0 {
		return rates, nil
	}
	for i, tg := range targets {
		seen := make(map[int]bool, len(tg))
		for _, k := range tg {
			if k < 0 || k >= numClasses {
				return nil, fmt.Errorf("class rates: sample %d has class id %d outside [0, %d)", i, k, numClasses)
			}
			if !seen[k] {
				seen[k] = true
				rates[k]++
			}
		}
	}
	for k := range rates {
		rates[k] /= float64(len(targets))
	}
	return rates, nil
}
