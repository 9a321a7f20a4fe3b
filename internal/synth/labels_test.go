package synth

import (
	"testing"
)

func TestClassFrequencies(t *testing.T) {
	rows := []LabeledID{{ID: "a", Labels: []int{0, 25}}, {ID: "b", Labels: []int{0}}, {ID: "c", Labels: []int{27}}, {ID: "d", Labels: []int{25, 0}}}
	n := ClassCounts(rows)
	f := ClassFrequencies(rows)
	if n[0] != 3 || n[25] != 2 || n[27] != 1 || n[1] != 0 {
		t.Errorf("counts %v", n)
	}
	if f[0] != 0.75 || f[25] != 0.5 || f[27] != 0.25 || f[3] != 0 {
		t.Errorf("frequencies %v", f)
	}
	if z := ClassFrequencies(nil); z[0] != 0 {
		t.Errorf("empty rows: %v", z)
	}
}

func TestRealTrainCSVParses(t *testing.T) {
	rows := realRows(t)
	f := ClassFrequencies(rows)
	// Nucleoplasm is the most frequent class of the real data, Rods & rings the rarest.
	for c := 1; c < len(f); c++ {
		if f[c] >= f[0] {
			t.Errorf("class %d more frequent than Nucleoplasm", c)
		}
		if c != 27 && f[c] <= f[27] {
			t.Errorf("class %d rarer than Rods & rings", c)
		}
	}
}
