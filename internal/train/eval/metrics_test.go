package eval

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func feq(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestScoreHand: 4 samples x 3 classes, counted by hand.
//
//	class 0: truth 1 1 0 0, pred 1 0 1 0 -> TP1 FP1 FN1: P=.5 R=.5 F1=.5
//	class 1: truth 0 1 1 1, pred 0 1 1 1 -> TP3: P=R=F1=1
//	class 2: no positives, no predictions -> P=R=F1=0 (zero_division=0), still in the macro mean
func TestScoreHand(t *testing.T) {
	truth := [][]bool{{true, false, false}, {true, true, false}, {false, true, false}, {false, true, false}}
	pred := [][]bool{{true, false, false}, {false, true, false}, {true, true, false}, {false, true, false}}
	s, err := Score(pred, truth)
	if err != nil {
		t.Fatal(err)
	}
	want := []ClassScore{
		{TP: 1, FP: 1, FN: 1, Support: 2, Precision: .5, Recall: .5, F1: .5},
		{TP: 3, Support: 3, Precision: 1, Recall: 1, F1: 1},
		{},
	}
	for k, w := range want {
		if s.PerClass[k] != w {
			t.Errorf("class %d: got %+v want %+v", k, s.PerClass[k], w)
		}
	}
	if !feq(s.MacroF1, 0.5) || !feq(s.MacroPrecision, 0.5) || !feq(s.MacroRecall, 0.5) {
		t.Errorf("macro: %+v", s)
	}
	// micro: TP4 FP1 FN1 -> 8/10
	if !feq(s.MicroF1, 0.8) {
		t.Errorf("micro F1 %v", s.MicroF1)
	}
	// predictions without positives: precision 0, F1 0; positives without predictions: recall 0
	if cs := ScoreCounts(0, 3, 0); cs.Precision != 0 || cs.F1 != 0 || cs.Recall != 0 {
		t.Errorf("%+v", cs)
	}
}

func TestScoreThresholdsStrict(t *testing.T) {
	probs := [][]float64{{0.5, 0.2}, {0.51, 0.9}}
	truth := [][]bool{{true, false}, {true, true}}
	s, err := ScoreThresholds(probs, truth, []float64{0.5, 0.2})
	if err != nil {
		t.Fatal(err)
	}
	// class 0: 0.5 is not > 0.5 -> TP1 FN1 -> 2/3; class 1: 0.9 > 0.2 only -> TP1 -> 1
	if !feq(s.PerClass[0].F1, 2.0/3) || !feq(s.PerClass[1].F1, 1) {
		t.Errorf("%+v", s.PerClass)
	}
}

func TestMetricsErrors(t *testing.T) {
	truth := [][]bool{{true, false}, {false, true}}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"empty", func() error { _, e := Score(nil, nil); return e }(), "truth: no rows"},
		{"ragged truth", func() error { _, e := Score(truth, [][]bool{{true}, {true, false}}); return e }(), "truth row 1: 2 columns, want 1"},
		{"rows", func() error { _, e := Score(truth[:1], truth); return e }(), "pred: 1 rows, truth has 2"},
		{"pred cols", func() error { _, e := Score([][]bool{{true, false}, {true}}, truth); return e }(), "pred row 1: 1 columns"},
		{"nan", func() error {
			_, e := ScoreThresholds([][]float64{{0.1, 0.2}, {math.NaN(), 0}}, truth, []float64{.5, .5})
			return e
		}(), "probs row 1: class 0 probability NaN"},
		{"range", func() error {
			_, e := ScoreThresholds([][]float64{{0.1, 1.2}, {0, 0}}, truth, []float64{.5, .5})
			return e
		}(), "probs row 0: class 1 probability 1.2 outside [0, 1]"},
		{"thresholds", func() error { _, e := ScoreThresholds([][]float64{{0, 0}, {0, 0}}, truth, []float64{.5}); return e }(), "thresholds: 1 values for 2 classes"},
		{"labels", func() error { _, e := TruthFromLabels([][]int{{0}, {3}}, 2); return e }(), "labels row 1: class id 3 outside 0..1"},
		{"indicator", func() error { _, e := TruthFromIndicator([][]int{{0, 2}}); return e }(), "truth row 0: class 1 value 2 is not 0 or 1"},
	}
	for _, tc := range cases {
		var me *MetricsError
		if !errors.As(tc.err, &me) || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: got %v, want MetricsError containing %q", tc.name, tc.err, tc.want)
		}
	}
	tl, err := TruthFromLabels([][]int{{1}, {0, 1}}, 2)
	ti, err2 := TruthFromIndicator([][]int{{0, 1}, {1, 1}})
	if err != nil || err2 != nil || tl[0][0] || !tl[0][1] || !tl[1][0] || !ti[1][0] || ti[0][0] {
		t.Errorf("conversions: %v %v %v %v", tl, ti, err, err2)
	}
}
