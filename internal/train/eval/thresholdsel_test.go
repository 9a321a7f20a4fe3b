package eval

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// handProbs is the hand-worked example: 4 samples, 2 classes, grid {0.2, 0.5, 0.75}.
//
//	class 0: p 0.9 0.6 0.3 0.1, truth 1 1 0 0: F1 at 0.2 = 4/5, 0.5 = 1, 0.75 = 2/3
//	class 1: p 0.8 0.7 0.4 0.3, truth 0 1 1 1: F1 at 0.2 = 6/7, 0.5 = 2/5, 0.75 = 0
//	macro:   0.2 -> 0.828571, 0.5 -> 0.7, 0.75 -> 0.333: uniform 0.2
//	per-class optimum: 0.5 and 0.2; with k=2: w0 = 2/4, w1 = 3/5:
//	  t0 = .5*.5 + .5*.2 = 0.35, t1 = .6*.2 + .4*.2 = 0.2 -> F1 1 and 6/7, macro 0.928571
//	rate: class 0 rate 1/2 -> m=2 -> (0.6+0.3)/2 = 0.45 (F1 1); class 1 rate 3/4 -> m=3 ->
//	  (0.4+0.3)/2 = 0.35: predicts 0.8 0.7 0.4 -> TP2 FP1 FN1 -> 2/3; macro 0.833333
func handProbs() ([][]float64, [][]bool) {
	probs := [][]float64{{0.9, 0.8}, {0.6, 0.7}, {0.3, 0.4}, {0.1, 0.3}}
	truth := [][]bool{{true, false}, {true, true}, {false, true}, {false, true}}
	return probs, truth
}

func TestSelectThresholdsHand(t *testing.T) {
	probs, truth := handProbs()
	sel, err := SelectThresholds(probs, truth, ThresholdOptions{Grid: []float64{0.2, 0.5, 0.75}, ShrinkK: 2, MinGain: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	if sel.Uniform != 0.2 || !feq(sel.UniformResult.Scores.MacroF1, (0.8+6.0/7)/2) {
		t.Errorf("uniform %v macro %v", sel.Uniform, sel.UniformResult.Scores.MacroF1)
	}
	if sel.BestPerClass[0] != 0.5 || sel.BestPerClass[1] != 0.2 || !feq(sel.Weights[0], 0.5) || !feq(sel.Weights[1], 0.6) {
		t.Errorf("best %v weights %v", sel.BestPerClass, sel.Weights)
	}
	pc := sel.PerClassResult
	if !feq(pc.Thresholds[0], 0.35) || !feq(pc.Thresholds[1], 0.2) || !feq(pc.Scores.MacroF1, (1+6.0/7)/2) {
		t.Errorf("per_class %v macro %v", pc.Thresholds, pc.Scores.MacroF1)
	}
	if !feq(pc.Scores.PerClass[0].F1, 1) || !feq(pc.Scores.PerClass[1].F1, 6.0/7) {
		t.Errorf("per_class per-class F1 %+v", pc.Scores.PerClass)
	}
	rr := sel.RateResult
	if !feq(rr.Thresholds[0], 0.45) || !feq(rr.Thresholds[1], 0.35) || !feq(rr.Scores.MacroF1, (1+2.0/3)/2) {
		t.Errorf("rate %v macro %v", rr.Thresholds, rr.Scores.MacroF1)
	}
	if !feq(sel.Rates[0], 0.5) || !feq(sel.Rates[1], 0.75) {
		t.Errorf("rates %v", sel.Rates)
	}
	if sel.Mode != PolicyPerClass || len(sel.PerClass) != 2 || !feq(sel.PerClass[0], 0.35) {
		t.Errorf("chosen %s %v (%s)", sel.Mode, sel.PerClass, sel.Rule)
	}
	if !strings.Contains(sel.Rule, "-> per_class") {
		t.Errorf("rule %q", sel.Rule)
	}
	if ps := sel.Policies(); len(ps) != 3 || ps[0].Mode != PolicyUniform || ps[1].Mode != PolicyPerClass || ps[2].Mode != PolicyRate {
		t.Errorf("policies %+v", ps)
	}
}

func TestSelectThresholdsShrinkageAndRule(t *testing.T) {
	probs, truth := handProbs()
	grid := []float64{0.2, 0.5, 0.75}
	// Huge k: per-class thresholds collapse onto the uniform one, no gain -> uniform is chosen.
	sel, err := SelectThresholds(probs, truth, ThresholdOptions{Grid: grid, ShrinkK: 1e12, MinGain: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	if !feq(sel.PerClassResult.Thresholds[0], 0.2) || sel.Mode != PolicyUniform || sel.PerClass != nil {
		t.Errorf("k=1e12: %v mode %s", sel.PerClassResult.Thresholds, sel.Mode)
	}
	// k=0: no shrinkage.
	sel, _ = SelectThresholds(probs, truth, ThresholdOptions{Grid: grid, ShrinkK: 0})
	if sel.PerClassResult.Thresholds[0] != 0.5 || sel.PerClassResult.Thresholds[1] != 0.2 {
		t.Errorf("k=0: %v", sel.PerClassResult.Thresholds)
	}
	// A gain below MinGain does not count: per_class gains 0.1 here.
	sel, _ = SelectThresholds(probs, truth, ThresholdOptions{Grid: grid, ShrinkK: 2, MinGain: 0.2})
	if sel.Mode != PolicyUniform {
		t.Errorf("MinGain 0.2: chose %s", sel.Mode)
	}
	// Rate wins when given rates that match the truth better than the grid can.
	sel, _ = SelectThresholds(probs, truth, ThresholdOptions{Grid: []float64{0.75}, ShrinkK: 2, Rates: []float64{0.5, 0.75}})
	if sel.Mode != PolicyRate || !feq(sel.PerClass[1], 0.35) {
		t.Errorf("grid {0.75}: chose %s %v (%s)", sel.Mode, sel.PerClass, sel.Rule)
	}
	// Explicit rates: class 1 at rate 0 -> threshold between 1 and the max (0.8) = 0.9.
	sel, _ = SelectThresholds(probs, truth, ThresholdOptions{Grid: grid, Rates: []float64{1, 0}})
	if !feq(sel.RateResult.Thresholds[0], 0.05) || !feq(sel.RateResult.Thresholds[1], 0.9) {
		t.Errorf("rates {1,0}: %v", sel.RateResult.Thresholds)
	}
}

func TestSelectThresholdsTiesAndEmptyClass(t *testing.T) {
	// Class 1 has no positives: its F1 is 0 everywhere; the tie goes to 0.5, and w=0 keeps uniform.
	probs := [][]float64{{0.9, 0.1}, {0.2, 0.3}, {0.7, 0.2}}
	truth := [][]bool{{true, false}, {false, false}, {true, false}}
	sel, err := SelectThresholds(probs, truth, ThresholdOptions{Grid: []float64{0.1, 0.3, 0.5, 0.6, 0.95}, ShrinkK: 10})
	if err != nil {
		t.Fatal(err)
	}
	// class 0 F1 = 1 for t in {0.3, 0.5, 0.6}: closest to 0.5 -> 0.5; uniform likewise.
	if sel.BestPerClass[0] != 0.5 || sel.BestPerClass[1] != 0.5 || sel.Uniform != 0.5 {
		t.Errorf("best %v uniform %v", sel.BestPerClass, sel.Uniform)
	}
	if sel.Weights[1] != 0 || sel.PerClassResult.Thresholds[1] != 0.5 {
		t.Errorf("empty class: w %v t %v", sel.Weights[1], sel.PerClassResult.Thresholds[1])
	}
	// equal distance from 0.5: the lower wins
	if !betterGrid(1, 1, 0.4, []float64{0.6}, 0) || betterGrid(1, 1, 0.6, []float64{0.4}, 0) {
		t.Error("tie between 0.4 and 0.6 must go to 0.4")
	}
}

// TestSelectThresholdsSweepMatchesDirect: the sorted-sweep uniform optimum agrees with scoring every
// grid value directly.
func TestSelectThresholdsSweepMatchesDirect(t *testing.T) {
	probs, truth := randomOOF(800, 6, 3)
	sel, err := SelectThresholds(probs, truth, DefaultThresholdOptions())
	if err != nil {
		t.Fatal(err)
	}
	best, bestT := -1.0, 0.0
	for _, g := range DefaultGrid() {
		th := []float64{g, g, g, g, g, g}
		s, _ := ScoreThresholds(probs, truth, th)
		if s.MacroF1 > best+1e-12 || (feq(s.MacroF1, best) && math.Abs(g-0.5) < math.Abs(bestT-0.5)) {
			best, bestT = s.MacroF1, g
		}
	}
	if sel.Uniform != bestT || !feq(sel.UniformResult.Scores.MacroF1, best) {
		t.Errorf("sweep: %v (%v), direct: %v (%v)", sel.Uniform, sel.UniformResult.Scores.MacroF1, bestT, best)
	}
	// Rate matching reproduces the truth's positive counts (continuous probabilities: no ties).
	for k := range 6 {
		want, got := 0, 0
		for i := range probs {
			if truth[i][k] {
				want++
			}
			if probs[i][k] > sel.RateResult.Thresholds[k] {
				got++
			}
		}
		if got != want {
			t.Errorf("class %d: rate threshold predicts %d, truth has %d", k, got, want)
		}
	}
}

// randomOOF makes noisy probabilities: positives centered higher than negatives, class rates 2..40%.
func randomOOF(n, c int, seed uint64) ([][]float64, [][]bool) {
	rng := rand.New(rand.NewPCG(seed, 5))
	probs := make([][]float64, n)
	truth := make([][]bool, n)
	for i := range probs {
		probs[i] = make([]float64, c)
		truth[i] = make([]bool, c)
		for k := range c {
			rate := 0.02 + 0.38*float64(k)/float64(max(1, c-1))
			truth[i][k] = rng.Float64() < rate
			m := 0.25
			if truth[i][k] {
				m = 0.6
			}
			probs[i][k] = min(1, max(0, m+0.2*rng.NormFloat64()))
		}
	}
	return probs, truth
}

func TestSelectThresholdsErrors(t *testing.T) {
	probs, truth := handProbs()
	cases := []struct {
		opt  ThresholdOptions
		want string
	}{
		{ThresholdOptions{Grid: []float64{}}, "grid: empty"},
		{ThresholdOptions{Grid: []float64{0.5, 1.5}}, "grid: value 1 (1.5) outside [0, 1]"},
		{ThresholdOptions{ShrinkK: -1}, "ShrinkK -1 must be >= 0"},
		{ThresholdOptions{Rates: []float64{0.5}}, "rates: 1 rates for 2 classes"},
		{ThresholdOptions{Rates: []float64{0.5, 2}}, "class 1 rate 2 outside [0, 1]"},
	}
	for _, tc := range cases {
		_, err := SelectThresholds(probs, truth, tc.opt)
		var me *MetricsError
		if !errors.As(err, &me) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	if _, err := SelectThresholds(probs[:3], truth, DefaultThresholdOptions()); err == nil {
		t.Error("row mismatch must be an error")
	}
}

// BenchmarkSelectThresholds: 31,072 x 28 OOF probabilities, all three policies; reports the speed-up
// of the sorted sweep over scoring each of the 99 grid values directly (uniform sweep only).
func BenchmarkSelectThresholds(b *testing.B) {
	probs, truth := randomOOF(31072, 28, 1)
	opt := DefaultThresholdOptions()
	for b.Loop() {
		if _, err := SelectThresholds(probs, truth, opt); err != nil {
			b.Fatal(err)
		}
	}
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	start := time.Now()
	th := make([]float64, 28)
	for _, g := range opt.Grid {
		for k := range th {
			th[k] = g
		}
		if _, err := ScoreThresholds(probs, truth, th); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/perOp, "speedup_vs_direct_uniform")
}
