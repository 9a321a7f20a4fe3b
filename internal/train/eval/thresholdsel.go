package eval

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
)

// Threshold policies, named as in the model manifest (model.Thresholds.Mode).
const (
	PolicyUniform  = "uniform"
	PolicyPerClass = "per_class"
	PolicyRate     = "rate"
)

// DefaultShrinkK is the default shrinkage strength of per-class thresholds: a class with k positives
// gets half its own optimum and half the uniform threshold.
const DefaultShrinkK = 10

// DefaultMinGain is how much OOF macro-F1 a policy with per-class parameters must add over the
// uniform threshold to be chosen.
const DefaultMinGain = 0.002

// ThresholdOptions configure SelectThresholds. Zero values mean what they say (ShrinkK 0: no
// shrinkage; MinGain 0: any gain counts), except a nil Grid, which means DefaultGrid.
type ThresholdOptions struct {
	// Grid is the candidate thresholds of the sweeps, in (0, 1).
	Grid []float64
	// ShrinkK pulls per-class thresholds toward the uniform one: t_c = w_c*best_c + (1-w_c)*uniform
	// with w_c = npos_c / (npos_c + ShrinkK). A class with few positives has a noisy F1 curve on
	// out-of-fold predictions: its own optimum is fitted to a handful of samples and does not
	// transfer to new data (rare HPA classes have 11 to 50 examples), so it should lean on the
	// uniform threshold that all classes' data support; common classes keep their own optimum.
	ShrinkK float64
	// MinGain: per_class or rate must beat uniform's OOF macro-F1 by more than this to be chosen.
	MinGain float64
	// Rates, when set, are the per-class positive rates that rate matching reproduces (e.g. from the
	// full training label file); nil uses the rates of the truth given to SelectThresholds.
	Rates []float64
}

// DefaultThresholdOptions returns the default grid, ShrinkK and MinGain.
func DefaultThresholdOptions() ThresholdOptions {
	return ThresholdOptions{Grid: DefaultGrid(), ShrinkK: DefaultShrinkK, MinGain: DefaultMinGain}
}

// DefaultGrid is 0.01, 0.02, ..., 0.99.
func DefaultGrid() []float64 {
	g := make([]float64, 99)
	for i := range g {
		g[i] = float64(i+1) / 100
	}
	return g
}

// PolicyResult is one threshold policy with its out-of-fold scores.
type PolicyResult struct {
	Mode       string
	Thresholds []float64 // one per class (all equal for uniform)
	Scores     Scores    // OOF scores with these thresholds; Scores.MacroF1 decides
}

// ThresholdSelection is the outcome of SelectThresholds: the chosen policy in the manifest's terms
// (Mode, Uniform, PerClass) and every policy with its OOF scores, so all can be recorded.
type ThresholdSelection struct {
	Mode     string    // the chosen policy
	Uniform  float64   // the best uniform threshold (always set)
	PerClass []float64 // the chosen policy's per-class thresholds; nil when Mode is uniform
	Rule     string    // the selection rule, with the numbers that decided it

	ShrinkK      float64
	BestPerClass []float64 // each class's own F1 optimum on the grid, before shrinkage
	Weights      []float64 // shrinkage weights w_c
	Rates        []float64 // the rates that rate matching reproduced

	UniformResult  PolicyResult
	PerClassResult PolicyResult
	RateResult     PolicyResult
}

// Policies returns the three policies in the order uniform, per_class, rate.
func (s *ThresholdSelection) Policies() []PolicyResult {
	return []PolicyResult{s.UniformResult, s.PerClassResult, s.RateResult}
}

// SelectThresholds chooses thresholds from out-of-fold probabilities (N x C) and the truth (N x C).
// A class is predicted when p > t (strictly, as labels.Thresholds.Apply). Three policies:
//
//   - uniform: the grid value with the best macro-F1 over all classes;
//   - per_class: each class's own F1-best grid value, shrunk toward the uniform value (ShrinkK);
//   - rate: per class, the threshold at which the predicted positive rate equals the class's rate
//     (opt.Rates, or the truth's): with the class's probabilities sorted descending p[0] >= p[1] >= ...
//     and m = round(rate*N), t = (p[m-1] + p[m]) / 2 with the sentinels p[-1] = 1 and p[N] = 0, as
//     labels.RateMatchedThresholds.
//
// Ties on the grid go to the value closest to 0.5, then the lower one. The rule: uniform is the
// baseline; per_class and rate are candidates only when their OOF macro-F1 exceeds uniform's by more
// than MinGain (they fit C parameters to the same data), and the best candidate wins (per_class
// before rate on a tie); with no candidate, uniform wins.
func SelectThresholds(probs [][]float64, truth [][]bool, opt ThresholdOptions) (*ThresholdSelection, error) {
	c, err := checkProbs(probs, truth)
	if err != nil {
		return nil, err
	}
	grid := opt.Grid
	if grid == nil {
		grid = DefaultGrid()
	}
	if len(grid) == 0 {
		return nil, &MetricsError{What: "grid", Row: -1, Reason: "empty"}
	}
	for i, t := range grid {
		if math.IsNaN(t) || t < 0 || t > 1 {
			return nil, &MetricsError{What: "grid", Row: -1, Reason: fmt.Sprintf("value %d (%v) outside [0, 1]", i, t)}
		}
	}
	if math.IsNaN(opt.ShrinkK) || opt.ShrinkK < 0 {
		return nil, &MetricsError{What: "options", Row: -1, Reason: fmt.Sprintf("ShrinkK %v must be >= 0", opt.ShrinkK)}
	}
	if math.IsNaN(opt.MinGain) {
		return nil, &MetricsError{What: "options", Row: -1, Reason: "MinGain is NaN"}
	}
	n := len(probs)
	rates := opt.Rates
	if rates != nil {
		if len(rates) != c {
			return nil, &MetricsError{What: "rates", Row: -1, Reason: fmt.Sprintf("%d rates for %d classes", len(rates), c)}
		}
		for k, r := range rates {
			if math.IsNaN(r) || r < 0 || r > 1 {
				return nil, &MetricsError{What: "rates", Row: -1, Reason: fmt.Sprintf("class %d rate %v outside [0, 1]", k, r)}
			}
		}
	}

	// Per class: probabilities sorted ascending with the running count of positives, so the counts
	// at any threshold are one binary search away.
	curves := make([][]ClassScore, c) // [class][grid index]
	npos := make([]int, c)
	desc := make([][]float64, c)
	type pv struct {
		p   float64
		pos bool
	}
	col := make([]pv, n)
	for k := range c {
		for i := range col {
			col[i] = pv{probs[i][k], truth[i][k]}
		}
		slices.SortFunc(col, func(a, b pv) int { return cmp.Compare(a.p, b.p) })
		sortedP := make([]float64, n)
		cum := make([]int, n+1) // cum[j] = positives among the j smallest
		for j, e := range col {
			sortedP[j] = e.p
			cum[j+1] = cum[j]
			if e.pos {
				cum[j+1]++
			}
		}
		npos[k] = cum[n]
		curves[k] = make([]ClassScore, len(grid))
		for g, t := range grid {
			below := sort.Search(n, func(j int) bool { return sortedP[j] > t }) // samples with p <= t
			tp := npos[k] - cum[below]
			fp := (n - below) - tp
			curves[k][g] = ScoreCounts(tp, fp, npos[k]-tp)
		}
		d := make([]float64, n)
		for j := range sortedP {
			d[j] = sortedP[n-1-j]
		}
		desc[k] = d
	}

	sel := &ThresholdSelection{ShrinkK: opt.ShrinkK}
	// Uniform: best mean of the per-class F1 curves.
	bestG, bestF := -1, math.Inf(-1)
	for g := range grid {
		m := 0.0
		for k := range c {
			m += curves[k][g].F1
		}
		m /= float64(c)
		if betterGrid(m, bestF, grid[g], grid, bestG) {
			bestG, bestF = g, m
		}
	}
	sel.Uniform = grid[bestG]
	uni := make([]float64, c)
	for k := range uni {
		uni[k] = sel.Uniform
	}
	sel.UniformResult = policyResult(PolicyUniform, uni, probs, truth)

	// Per class with shrinkage.
	sel.BestPerClass = make([]float64, c)
	sel.Weights = make([]float64, c)
	per := make([]float64, c)
	for k := range c {
		bg, bf := -1, math.Inf(-1)
		for g := range grid {
			if betterGrid(curves[k][g].F1, bf, grid[g], grid, bg) {
				bg, bf = g, curves[k][g].F1
			}
		}
		sel.BestPerClass[k] = grid[bg]
		w := 1.0
		if d := float64(npos[k]) + opt.ShrinkK; d > 0 {
			w = float64(npos[k]) / d
		}
		sel.Weights[k] = w
		per[k] = w*sel.BestPerClass[k] + (1-w)*sel.Uniform
	}
	sel.PerClassResult = policyResult(PolicyPerClass, per, probs, truth)

	// Rate matching.
	if rates == nil {
		rates = make([]float64, c)
		for k := range c {
			rates[k] = float64(npos[k]) / float64(n)
		}
	}
	sel.Rates = append([]float64(nil), rates...)
	rt := make([]float64, c)
	for k := range c {
		m := int(math.Round(rates[k] * float64(n)))
		hi, lo := 1.0, 0.0
		if m > 0 {
			hi = desc[k][m-1]
		}
		if m < n {
			lo = desc[k][m]
		}
		rt[k] = (hi + lo) / 2
	}
	sel.RateResult = policyResult(PolicyRate, rt, probs, truth)

	// The rule.
	base := sel.UniformResult.Scores.MacroF1
	sel.Mode = PolicyUniform
	best := base
	for _, p := range []PolicyResult{sel.PerClassResult, sel.RateResult} {
		if f := p.Scores.MacroF1; f > base+opt.MinGain && f > best {
			sel.Mode, best = p.Mode, f
			sel.PerClass = append([]float64(nil), p.Thresholds...)
		}
	}
	sel.Rule = fmt.Sprintf("highest OOF macro-F1; per_class/rate must beat uniform by more than %.4g: uniform %.4f (t=%.2f), per_class %.4f (shrink k=%g), rate %.4f -> %s",
		opt.MinGain, base, sel.Uniform, sel.PerClassResult.Scores.MacroF1, opt.ShrinkK, sel.RateResult.Scores.MacroF1, sel.Mode)
	return sel, nil
}

// betterGrid reports whether score f at threshold t beats the best so far (score bestF at grid index
// bestG): higher score, then closer to 0.5, then lower threshold.
func betterGrid(f, bestF, t float64, grid []float64, bestG int) bool {
	const tol = 1e-12
	if bestG < 0 || f > bestF+tol {
		return true
	}
	if f < bestF-tol {
		return false
	}
	bt := grid[bestG]
	dt, db := math.Abs(t-0.5), math.Abs(bt-0.5)
	if dt != db {
		return dt < db
	}
	return t < bt
}

func policyResult(mode string, th []float64, probs [][]float64, truth [][]bool) PolicyResult {
	// Shapes were checked by the caller, so ScoreThresholds cannot fail here.
	s, _ := ScoreThresholds(probs, truth, th)
	return PolicyResult{Mode: mode, Thresholds: th, Scores: s}
}
