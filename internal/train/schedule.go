package train

import "math"

// CyclicCosine is cyclic cosine annealing (SGDR without restarts growth, as in snapshot ensembles):
// the learning rate falls from Max to Min along a half cosine within each cycle and jumps back to Max
// at the start of the next one. One snapshot is taken at the end of every cycle, where the rate is lowest.
type CyclicCosine struct {
	Max, Min       float64
	Cycles         int // C
	EpochsPerCycle int // E
	StepsPerEpoch  int
	WarmupSteps    int // linear warm-up at the very beginning of training (0 = none)
}

// TotalSteps is Cycles * EpochsPerCycle * StepsPerEpoch.
func (s CyclicCosine) TotalSteps() int { return s.Cycles * s.EpochsPerCycle * s.StepsPerEpoch }

// CycleSteps is the number of optimizer steps in one cycle.
func (s CyclicCosine) CycleSteps() int { return s.EpochsPerCycle * s.StepsPerEpoch }

// LR is the learning rate of global step t (0-based).
func (s CyclicCosine) LR(t int) float64 {
	n := s.CycleSteps()
	if n <= 0 {
		return s.Max
	}
	if t < s.WarmupSteps {
		return s.Max * float64(t+1) / float64(s.WarmupSteps)
	}
	pos := float64(t%n) / float64(n)
	return s.Min + 0.5*(s.Max-s.Min)*(1+math.Cos(math.Pi*pos))
}

// SnapshotAfter reports whether global step t (0-based) is the last step of a cycle, and which cycle.
func (s CyclicCosine) SnapshotAfter(t int) (cycle int, ok bool) {
	n := s.CycleSteps()
	if n <= 0 || (t+1)%n != 0 {
		return 0, false
	}
	return (t+1)/n - 1, true
}
