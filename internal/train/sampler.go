package train

import (
	"fmt"
	"math"
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
	// Per-batch counts are split by largest remainder (16/10/6 at batch 32 for 50/30/20).
	Shares [3]float64
	// MaxRepeat caps how often a group's examples are drawn per epoch, as a multiple of the group's
	// size (0 = no cap); the share a capped group cannot take goes to the other groups.
	MaxRepeat float64
}

// DefaultBalance is the reference recipe's split with a repeat cap of 4 draws per example and epoch.
func DefaultBalance() BalanceConfig {
	return BalanceConfig{MinorBelow: 0.01, MajorFrom: 0.05, Shares: [3]float64{0.5, 0.3, 0.2}, MaxRepeat: 4}
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
	s.counts = splitShares(batchSize, cfg.Shares, func(g int) bool { return len(s.groups[g]) > 0 })
	// Repeat cap: a group's examples may be drawn at most MaxRepeat times per epoch on average (at
	// least one per batch); the slots a capped group cannot take go to the others by their shares. A
	// tiny rare group otherwise repeats each example dozens of times per epoch.
	if cfg.MaxRepeat > 0 {
		var limit [3]int
		for g := range 3 {
			limit[g] = max(1, int(cfg.MaxRepeat*float64(len(s.groups[g]))/float64(batchesPerEpoch)))
		}
		var capped [3]bool
		for {
			over := false
			fixed := 0
			for g := range 3 {
				if len(s.groups[g]) > 0 && (capped[g] || s.counts[g] > limit[g]) {
					over = over || (!capped[g] && s.counts[g] > limit[g])
					capped[g] = true
					s.counts[g] = min(s.counts[g], limit[g])
					fixed += s.counts[g]
				}
			}
			if !over {
				break
			}
			free := func(g int) bool { return len(s.groups[g]) > 0 && !capped[g] }
			if !free(0) && !free(1) && !free(2) {
				// every group capped: the rest to the largest group
				big := 0
				for g := range 3 {
					if len(s.groups[g]) > len(s.groups[big]) {
						big = g
					}
				}
				s.counts[big] += batchSize - fixed
				break
			}
			rest := splitShares(batchSize-fixed, cfg.Shares, free)
			for g := range 3 {
				if free(g) {
					s.counts[g] = rest[g]
				}
			}
		}
	}
	return s, nil
}

// splitShares splits batchSize among the non-empty groups in proportion to shares by largest
// remainder: floors first, then one each to the groups with the largest fractional parts (ties to the
// larger share, then the lower group).
func splitShares(batchSize int, shares [3]float64, nonEmpty func(int) bool) [3]int {
	var avail float64
	for g := range 3 {
		if nonEmpty(g) {
			avail += shares[g]
		}
	}
	var counts [3]int
	var frac [3]float64
	assigned := 0
	for g := range 3 {
		if nonEmpty(g) && avail > 0 {
			q := float64(batchSize) * shares[g] / avail
			counts[g] = int(math.Floor(q + 1e-9))
			frac[g] = q - float64(counts[g])
			assigned += counts[g]
		}
	}
	order := []int{0, 1, 2}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if math.Abs(frac[a]-frac[b]) > 1e-9 {
			return frac[a] > frac[b]
		}
		return shares[a] > shares[b]
	})
	for i := 0; assigned < batchSize; i++ {
		g := order[i%3]
		if nonEmpty(g) && (shares[g] > 0 || i >= 3) {
			counts[g]++
			assigned++
		}
	}
	return counts
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
