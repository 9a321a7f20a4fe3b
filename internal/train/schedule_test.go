package train

import (
	"math"
	"testing"
)

func TestCyclicCosine(t *testing.T) {
	s := CyclicCosine{Max: 0.1, Min: 0, Cycles: 2, EpochsPerCycle: 2, StepsPerEpoch: 5}
	if s.TotalSteps() != 20 || s.CycleSteps() != 10 {
		t.Fatal(s.TotalSteps(), s.CycleSteps())
	}
	if s.LR(0) != 0.1 || s.LR(10) != 0.1 {
		t.Errorf("cycle start must be Max: %v %v", s.LR(0), s.LR(10))
	}
	if got := s.LR(5); math.Abs(got-0.05) > 1e-12 {
		t.Errorf("mid-cycle = %v, want 0.05", got)
	}
	// strictly decreasing inside a cycle
	for i := 1; i < 10; i++ {
		if s.LR(i) >= s.LR(i-1) {
			t.Fatalf("not decreasing at %d", i)
		}
	}
	var snaps []int
	for i := 0; i < s.TotalSteps(); i++ {
		if c, ok := s.SnapshotAfter(i); ok {
			snaps = append(snaps, c)
			if i != 9 && i != 19 {
				t.Errorf("snapshot at step %d", i)
			}
		}
	}
	if len(snaps) != 2 || snaps[0] != 0 || snaps[1] != 1 {
		t.Errorf("snapshots %v", snaps)
	}
	w := CyclicCosine{Max: 0.1, Cycles: 1, EpochsPerCycle: 1, StepsPerEpoch: 10, WarmupSteps: 4}
	if got := w.LR(1); math.Abs(got-0.05) > 1e-12 {
		t.Errorf("warmup step 1 = %v", got)
	}
}
