package train

import (
	"fmt"
	"math/rand/v2"
	"sort"
)

// Class groups for balanced minibatches.
const (
	GroupMinor = iota
	GroupMiddle
	GroupMajor
)

// GroupNames name the class groups in reports.
var GroupNames = [3]string{"minor", "middle", "major"}

// BalanceConfig splits classes by their frequency in the label matrix and says how much of each
// batch every group gets. Defaults are the reference recipe's 50% / 30% / 20%.
type BalanceConfig struct {
	// A class with rate < MinorBelow is minor; rate >= MajorFrom is major; else middle.
	MinorBelow float64
	MajorFrom  float64
	// Share of each batch drawn from examples of each group (minor, middle, major); sums to 1.
	Shares [3]float64
}

// DefaultBalance is the reference recipe's split.
func DefaultBalance() BalanceConfig {
	return BalanceConfig{MinorBelow: 0.01, MajorFrom: 0.05, Shares: [3]float64{0.5, 0.3, 0.2}}
}

// Sampler yields minibatches of example indices for one epoch.
type Sampler interface {
	// Epoch returns the batches of the given epoch; the result depends only on the seed and epoch.
	Epoch(epoch int) [][]int
}

// ClassGroups assigns each class to a group by its rate among n examples.
func ClassGroups(labels [][]int, numClasses int, cfg BalanceConfig) []int {
	counts := make([]int, numClasses)
	for _, ls := range labels {
		for _, c := range ls {
			counts[c]++
		}
	}
	g := make([]int, numClasses)
	for c, k := range counts {
		rate := float64(k) / float64(max(1, len(labels)))
		switch {
		case rate < cfg.MinorBelow:
			g[c] = GroupMinor
		case rate >= cfg.MajorFrom:
			g[c] = GroupMajor
		default:
			g[c] = GroupMiddle
		}
	}
	return g
}

// BalancedSampler draws each batch's examples from the three class groups in fixed shares, an example
// belonging to the group of its rarest class (so rare classes are seen far more often than their
// frequency). Within a group it cycles through shuffled passes, so every example is seen.
type BalancedSampler struct {
	groups    [3][]int // example indices per group
	counts    [3]int   // per batch
	batches   int
	seed      uint64
	ExGroups  []int // group of each example (for reports)
	ClassGrps []int
}

// NewBalancedSampler builds a sampler over the given examples (labels per example). batchSize and the
// number of batches per epoch (usually len(labels)/batchSize) are fixed.
func NewBalancedSampler(labels [][]int, numClasses, batchSize, batchesPerEpoch int, cfg BalanceConfig, seed uint64) (*BalancedSampler, error) {
	if batchSize <= 0 || batchesPerEpoch <= 0 {
		return nil, fmt.Errorf("balanced sampler: batch size and batches per epoch must be positive")
	}
	sum := cfg.Shares[0] + cfg.Shares[1] + cfg.Shares[2]
	if sum <= 0 {
		return nil, fmt.Errorf("balanced sampler: group shares must be positive")
	}
	classGroup := ClassGroups(labels, numClasses, cfg)
	s := &BalancedSampler{batches: batchesPerEpoch, seed: seed, ClassGrps: classGroup, ExGroups: make([]int, len(labels))}
	for i, ls := range labels {
		g := GroupMajor
		for _, c := range ls {
			g = min(g, classGroup[c])
		}
		s.ExGroups[i] = g
		s.groups[g] = append(s.groups[g], i)
	}
	// Shares of empty groups go to the others, in proportion.
	var avail float64
	for g := range 3 {
		if len(s.groups[g]) > 0 {
			avail += cfg.Shares[g]
		}
	}
	if avail == 0 {
		return nil, fmt.Errorf("balanced sampler: no examples")
	}
	assigned := 0
	for g := range 3 {
		if len(s.groups[g]) > 0 {
			s.counts[g] = int(float64(batchSize) * cfg.Shares[g] / avail)
			assigned += s.counts[g]
		}
	}
	// Rounding remainder to the largest non-empty group share.
	for assigned < batchSize {
		best := -1
		for g := range 3 {
			if len(s.groups[g]) > 0 && (best < 0 || cfg.Shares[g] > cfg.Shares[best]) {
				best = g
			}
		}
		s.counts[best]++
		assigned++
	}
	return s, nil
}

// PerBatch is how many examples each group contributes to a batch.
func (s *BalancedSampler) PerBatch() [3]int { return s.counts }

// Epoch implements Sampler. Group g's stream is an endless sequence of seeded shuffled passes; epoch e
// continues where epoch e-1 stopped, so an epoch is reproducible from (seed, epoch) alone.
func (s *BalancedSampler) Epoch(epoch int) [][]int {
	out := make([][]int, s.batches)
	for b := range out {
		out[b] = make([]int, 0, s.counts[0]+s.counts[1]+s.counts[2])
	}
	for g := range 3 {
		n, k := len(s.groups[g]), s.counts[g]
		if n == 0 || k == 0 {
			continue
		}
		start := epoch * s.batches * k // position in the endless stream
		pass := start / n
		perm := s.pass(g, pass)
		pos := start % n
		for b := range out {
			for range k {
				if pos == n {
					pass++
					perm = s.pass(g, pass)
					pos = 0
				}
				out[b] = append(out[b], s.groups[g][perm[pos]])
				pos++
			}
		}
	}
	// Shuffle within each batch so group order carries no signal.
	r := rand.New(rand.NewPCG(s.seed, uint64(epoch)<<32|0xba7c4))
	for _, b := range out {
		r.Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
	}
	return out
}

func (s *BalancedSampler) pass(g, pass int) []int {
	r := rand.New(rand.NewPCG(s.seed^uint64(g+1)*0x9e3779b97f4a7c15, uint64(pass)))
	return r.Perm(len(s.groups[g]))
}

// RandomSampler is plain shuffled sampling without replacement (the option to balanced batches).
type RandomSampler struct {
	N, BatchSize int
	Seed         uint64
}

// Epoch implements Sampler; the last incomplete batch is dropped (BatchNorm dislikes tiny batches).
func (s RandomSampler) Epoch(epoch int) [][]int {
	perm := rand.New(rand.NewPCG(s.Seed, uint64(epoch))).Perm(s.N)
	var out [][]int
	for i := 0; i+s.BatchSize <= len(perm); i += s.BatchSize {
		b := append([]int(nil), perm[i:i+s.BatchSize]...)
		sort.Ints(b)
		out = append(out, b)
	}
	return out
}
