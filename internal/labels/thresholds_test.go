package labels

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestApplyUniform(t *testing.T) {
	th := UniformThresholds(DefaultThreshold, 5)
	cases := []struct {
		p    []float64
		want []int
	}{
		{[]float64{0.1, 0.9, 0.2, 0.21, 0.0}, []int{1, 3}}, // 0.2 is not > 0.2
		{[]float64{0.1, 0.1, 0.1, 0.1, 0.1}, []int{}},
		{[]float64{1, 1, 1, 1, 1}, []int{0, 1, 2, 3, 4}},
	}
	for _, c := range cases {
		if got := th.Apply(c.p); !slices.Equal(got, c.want) {
			t.Errorf("Apply(%v) = %v, want %v", c.p, got, c.want)
		}
	}
}

func TestApplyPerClassAndAtLeastTop(t *testing.T) {
	th, err := NewThresholds(ThresholdPerClass, 0, []float64{0.5, 0.1, 0.9}, false, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := th.Apply([]float64{0.6, 0.05, 0.8}); !slices.Equal(got, []int{0}) {
		t.Errorf("got %v, want [0]", got)
	}
	if got := th.Apply([]float64{0.4, 0.05, 0.8}); len(got) != 0 {
		t.Errorf("got %v, want none", got)
	}
	th.AtLeastTop = true
	if got := th.Apply([]float64{0.4, 0.05, 0.8}); !slices.Equal(got, []int{2}) {
		t.Errorf("at least top: got %v, want [2]", got)
	}
	// equal maxima: lowest id
	if got := th.Apply([]float64{0.3, 0.05, 0.3}); !slices.Equal(got, []int{0}) {
		t.Errorf("tie: got %v, want [0]", got)
	}
	// when something passes, the top rule adds nothing
	if got := th.Apply([]float64{0.1, 0.2, 0.8}); !slices.Equal(got, []int{1}) {
		t.Errorf("got %v, want [1]", got)
	}
}

func TestNewThresholdsErrors(t *testing.T) {
	var te *ThresholdError
	if _, err := NewThresholds("median", 0.2, nil, false, 28); !errors.As(err, &te) {
		t.Errorf("unknown mode: %v", err)
	}
	if _, err := NewThresholds(ThresholdRate, 0.2, []float64{0.1}, false, 28); !errors.As(err, &te) {
		t.Errorf("short per-class: %v", err)
	}
	if _, err := NewThresholds(ThresholdUniform, 1.5, nil, false, 28); !errors.As(err, &te) {
		t.Errorf("uniform 1.5: %v", err)
	}
	if _, err := NewThresholds(ThresholdPerClass, 0, []float64{0.1, math.NaN()}, false, 2); !errors.As(err, &te) {
		t.Errorf("NaN: %v", err)
	}
	th, err := NewThresholds(ThresholdUniform, 0.3, nil, true, 28)
	if err != nil || len(th.Values) != 28 || th.Values[27] != 0.3 || !th.AtLeastTop {
		t.Errorf("uniform: %+v %v", th, err)
	}
}

func TestRateMatchedThresholdsHandComputed(t *testing.T) {
	probs := [][]float64{
		{0.9, 0.2, 0.2, 0.7},
		{0.1, 0.4, 0.2, 0.7},
		{0.5, 0.6, 0.6, 0.1},
		{0.3, 0.8, 0.1, 0.1},
	}
	rates := []float64{0.5, 0, 1, 0.25}
	// class 0: sorted 0.9 0.5 | 0.3 0.1, m=2 -> (0.5+0.3)/2 = 0.4
	// class 1: m=0 -> (1 + 0.8)/2 = 0.9
	// class 2: m=4 -> (0.1 + 0)/2 = 0.05
	// class 3: sorted 0.7 | 0.7 0.1 0.1, m=1 -> (0.7+0.7)/2 = 0.7 (tie: fewer predictions)
	want := []float64{0.4, 0.9, 0.05, 0.7}
	got := RateMatchedThresholds(probs, rates)
	for k := range want {
		if math.Abs(got[k]-want[k]) > 1e-12 {
			t.Errorf("class %d: threshold %v, want %v", k, got[k], want[k])
		}
	}
	th := Thresholds{Mode: ThresholdRate, Values: got}
	count := make([]int, 4)
	for _, row := range probs {
		for _, k := range th.Apply(row) {
			count[k]++
		}
	}
	if !slices.Equal(count, []int{2, 0, 4, 0}) {
		t.Errorf("predicted counts %v", count)
	}
}

func TestRateMatchedThresholdsMatchesRates(t *testing.T) {
	// 100 samples with distinct probabilities: predicted rate equals the target exactly.
	probs := make([][]float64, 100)
	for i := range probs {
		probs[i] = []float64{float64(i) / 100, float64((i*37)%100) / 100}
	}
	rates := []float64{0.13, 0.41}
	th := Thresholds{Values: RateMatchedThresholds(probs, rates)}
	count := []int{0, 0}
	for _, row := range probs {
		for _, k := range th.Apply(row) {
			count[k]++
		}
	}
	if count[0] != 13 || count[1] != 41 {
		t.Errorf("counts %v, want [13 41]", count)
	}
	// empty input and out-of-range rates
	got := RateMatchedThresholds(nil, []float64{0.3, -1, 2})
	if !slices.Equal(got, []float64{0.5, 0.5, 0.5}) {
		t.Errorf("no samples: %v", got)
	}
	got = RateMatchedThresholds([][]float64{{0.2}, {0.6}}, []float64{5, -5})
	if !slices.Equal(got, []float64{0.1, 0.5}) {
		t.Errorf("clamped rates / short rows: %v", got)
	}
}

func TestClassRates(t *testing.T) {
	r, err := ClassRates([][]int{{0, 2}, {2}, {2, 2}, {}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r, []float64{0.25, 0, 0.75}) {
		t.Errorf("rates %v", r)
	}
	if _, err := ClassRates([][]int{{3}}, 3); err == nil {
		t.Error("class id 3 of 3 accepted")
	}
}
