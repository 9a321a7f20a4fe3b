package train

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/hpa-plates/hpa/internal/model"
)

func syntheticLabels(n int) [][]int {
	r := rand.New(rand.NewPCG(1, 2))
	labels := make([][]int, n)
	for i := range labels {
		switch x := r.Float64(); {
		case x < 0.005:
			labels[i] = []int{27, 0} // minor (rate ~0.5%)
		case x < 0.035:
			labels[i] = []int{5} // middle (~3%)
		default:
			labels[i] = []int{0} // major
		}
	}
	return labels
}

// uncapped is the recipe's 50/30/20 split without the repeat cap.
func uncapped() BalanceConfig {
	b := DefaultBalance()
	b.MaxRepeat = 0
	return b
}

func TestClassGroups(t *testing.T) {
	labels := syntheticLabels(4000)
	g := ClassGroups(labels, 28, uncapped())
	if g[27] != GroupMinor || g[5] != GroupMiddle || g[0] != GroupMajor {
		t.Fatalf("groups 27,5,0 = %d,%d,%d", g[27], g[5], g[0])
	}
}

func TestBalancedSamplerShares(t *testing.T) {
	labels := syntheticLabels(4000)
	s, err := NewBalancedSampler(labels, 28, 20, 50, uncapped(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if s.PerBatch() != [3]int{10, 6, 4} {
		t.Fatalf("per batch %v", s.PerBatch())
	}
	ep := s.Epoch(0)
	if len(ep) != 50 {
		t.Fatal(len(ep))
	}
	seen := map[int]int{}
	for _, b := range ep {
		var n [3]int
		for _, i := range b {
			n[s.ExGroups[i]]++
			seen[i]++
		}
		if n != [3]int{10, 6, 4} {
			t.Fatalf("batch group counts %v", n)
		}
	}
	// The rare class (rate 0.5%) makes up ~50% of batches, far above its frequency.
	rare := 0
	for _, b := range ep {
		for _, i := range b {
			for _, c := range labels[i] {
				if c == 27 {
					rare++
				}
			}
		}
	}
	if rare != 500 {
		t.Errorf("rare examples in epoch = %d, want 500", rare)
	}
	// Reproducible from (seed, epoch) alone, and epochs differ.
	s2, _ := NewBalancedSampler(labels, 28, 20, 50, uncapped(), 7)
	if !reflect.DeepEqual(s2.Epoch(3), s.Epoch(3)) {
		t.Error("not reproducible")
	}
	if reflect.DeepEqual(s.Epoch(1), s.Epoch(2)) {
		t.Error("epochs identical")
	}
}

func TestBalancedSamplerCoversGroup(t *testing.T) {
	// Within a group, consecutive draws walk shuffled passes: the first n draws cover all n examples.
	labels := syntheticLabels(4000)
	s, _ := NewBalancedSampler(labels, 28, 20, 50, uncapped(), 3)
	major := len(s.groups[GroupMajor])
	seen := map[int]bool{}
	for e := 0; len(seen) < major && e < 100; e++ {
		for _, b := range s.Epoch(e) {
			for _, i := range b {
				if s.ExGroups[i] == GroupMajor {
					seen[i] = true
				}
			}
		}
	}
	if len(seen) != major {
		t.Fatalf("saw %d of %d major examples", len(seen), major)
	}
}

func TestRandomSampler(t *testing.T) {
	s := RandomSampler{N: 103, BatchSize: 10, Seed: 1}
	ep := s.Epoch(0)
	if len(ep) != 10 {
		t.Fatal(len(ep))
	}
	seen := map[int]bool{}
	for _, b := range ep {
		for _, i := range b {
			if seen[i] {
				t.Fatal("duplicate within epoch")
			}
			seen[i] = true
		}
	}
}

// Per-batch group counts are the 50/30/20 shares split by largest remainder (hand-computed), not
// floors plus the whole remainder to the largest share (17/9/6 at 32).
func TestBalancedSamplerLargestRemainder(t *testing.T) {
	labels := syntheticLabels(4000)
	for bs, want := range map[int][3]int{
		7: {4, 2, 1}, 8: {4, 2, 2}, 16: {8, 5, 3}, 20: {10, 6, 4}, 32: {16, 10, 6}, 50: {25, 15, 10}, 64: {32, 19, 13},
	} {
		s, err := NewBalancedSampler(labels, 28, bs, 10, uncapped(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if s.PerBatch() != want {
			t.Errorf("batch %d: per batch %v, want %v", bs, s.PerBatch(), want)
		}
		for _, b := range s.Epoch(3) {
			var n [3]int
			for _, i := range b {
				n[s.ExGroups[i]]++
			}
			if n != want {
				t.Fatalf("batch %d: a batch holds %v", bs, n)
			}
		}
	}
	// An empty group's share goes to the others in proportion: 30/20 of 32 -> 19.2/12.8 -> 19/13.
	noMinor := syntheticLabels(4000)
	for i, ls := range noMinor {
		if slices.Contains(ls, 27) {
			noMinor[i] = []int{0}
		}
	}
	s, err := NewBalancedSampler(noMinor, 28, 32, 10, uncapped(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if s.PerBatch() != [3]int{0, 19, 13} {
		t.Errorf("without minor examples: %v", s.PerBatch())
	}
}

// MaxRepeat caps the draws of a small group per epoch at MaxRepeat times its size; the freed slots go
// to the other groups and batches stay full.
func TestBalancedSamplerMaxRepeat(t *testing.T) {
	labels := syntheticLabels(2000) // ~10 minor examples
	cfg := uncapped()
	cfg.MaxRepeat = 4
	s, err := NewBalancedSampler(labels, 28, 32, 60, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	pb := s.PerBatch()
	if pb[0]+pb[1]+pb[2] != 32 {
		t.Fatalf("per batch %v does not fill 32", pb)
	}
	var size, drawn [3]int
	for _, g := range s.ExGroups {
		size[g]++
	}
	for _, b := range s.Epoch(0) {
		for _, i := range b {
			drawn[s.ExGroups[i]]++
		}
	}
	for g := range 2 { // minor (~10 examples) and middle (~60) are both capped here
		if want := max(60, 4*size[g]); drawn[g] > want {
			t.Errorf("group %d (%d examples) drawn %d times per epoch, cap %d; per batch %v", g, size[g], drawn[g], want, pb)
		}
	}
	if pb[0] >= 16 || pb[1] >= 10 || pb[2] <= 6 {
		t.Errorf("capped split %v, want the major group to take the freed slots", pb)
	}
	// Uncapped (the group is large enough): the plain split.
	cfg.MaxRepeat = 1000
	s2, _ := NewBalancedSampler(labels, 28, 32, 60, cfg, 1)
	if s2.PerBatch() != [3]int{16, 10, 6} {
		t.Errorf("with a loose cap: %v", s2.PerBatch())
	}
}

// The auto sampler (the default) is class-group-balanced for short schedules and random from
// RandomSamplerFromEpochs epochs per fold, as measured; an explicit choice is kept.
func TestSamplerAutoByBudget(t *testing.T) {
	for _, c := range []struct {
		sampler        string
		cycles, epochs int
		want           string
	}{{"auto", 1, 15, "balanced"}, {"auto", 2, 14, "balanced"}, {"auto", 2, 15, "random"}, {"auto", 3, 10, "random"},
		{"auto", 4, 20, "random"}, {"balanced", 4, 20, "balanced"}, {"random", 1, 2, "random"}} {
		cfg := Config{Sampler: c.sampler, Cycles: c.cycles, EpochsPerCycle: c.epochs}
		if got := cfg.SamplerFor(); got != c.want {
			t.Errorf("sampler %q at %d x %d epochs: %s, want %s", c.sampler, c.cycles, c.epochs, got, c.want)
		}
	}
	if d := DefaultConfig(model.Spec{}); d.Sampler != "auto" {
		t.Errorf("default sampler %q, want auto", d.Sampler)
	}
}
