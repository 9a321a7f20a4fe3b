package train

import (
	"math/rand/v2"
	"reflect"
	"testing"
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

func TestClassGroups(t *testing.T) {
	labels := syntheticLabels(4000)
	g := ClassGroups(labels, 28, DefaultBalance())
	if g[27] != GroupMinor || g[5] != GroupMiddle || g[0] != GroupMajor {
		t.Fatalf("groups 27,5,0 = %d,%d,%d", g[27], g[5], g[0])
	}
}

func TestBalancedSamplerShares(t *testing.T) {
	labels := syntheticLabels(4000)
	s, err := NewBalancedSampler(labels, 28, 20, 50, DefaultBalance(), 7)
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
	s2, _ := NewBalancedSampler(labels, 28, 20, 50, DefaultBalance(), 7)
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
	s, _ := NewBalancedSampler(labels, 28, 20, 50, DefaultBalance(), 3)
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
