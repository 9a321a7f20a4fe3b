package folds

import (
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/testenv"
)

func realHPALabels(t testing.TB) [][]int {
	t.Helper()
	ex, err := labels.ReadTargetsFile(filepath.Join(testenv.HPAFixture(t), "train.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 31072 {
		t.Fatalf("train.csv: %d rows, want 31072", len(ex))
	}
	return LabelMatrix(ex)
}

// TestStratifiedKFoldRealBalance: on the real HPA label matrix every class count in every fold is
// within 1 of its ideal share, and so is every fold size.
func TestStratifiedKFoldRealBalance(t *testing.T) {
	labels := realHPALabels(t)
	for _, tc := range []struct {
		k    int
		seed uint64
	}{{5, 1}, {5, 2}, {4, 7}} {
		folds, err := StratifiedKFold(labels, 28, Options{K: tc.k, Seed: tc.seed})
		if err != nil {
			t.Fatal(err)
		}
		b, err := ComputeBalance(labels, folds, tc.k, 28)
		if err != nil {
			t.Fatal(err)
		}
		for f := range tc.k {
			if d := math.Abs(float64(b.Sizes[f]) - b.IdealSize); d > 1 {
				t.Errorf("k=%d seed=%d: fold %d has %d examples, ideal %.1f", tc.k, tc.seed, f, b.Sizes[f], b.IdealSize)
			}
			for c := range 28 {
				ideal := float64(b.Totals[c]) / float64(tc.k)
				if d := math.Abs(float64(b.Counts[f][c]) - ideal); d > 1 {
					t.Errorf("k=%d seed=%d: fold %d class %d: %d positives, ideal %.1f", tc.k, tc.seed, f, c, b.Counts[f][c], ideal)
				}
			}
		}
		if b.MaxClassDev > 1 || b.MaxSizeDev > 1 {
			t.Errorf("k=%d seed=%d: max deviations %.2f / %.2f", tc.k, tc.seed, b.MaxClassDev, b.MaxSizeDev)
		}
	}
}

func TestStratifiedKFoldRepairHelps(t *testing.T) {
	// Without the repair pass plain iterative stratification leaves larger deviations on this
	// skewed synthetic matrix; the repair brings them within 1.
	rng := rand.New(rand.NewPCG(3, 4))
	labels := make([][]int, 3000)
	for i := range labels {
		labels[i] = []int{int(rng.ExpFloat64()*2) % 10}
		if rng.IntN(3) == 0 {
			c := 10 + rng.IntN(5)
			labels[i] = append(labels[i], c)
		}
	}
	folds, err := StratifiedKFold(labels, 15, Options{K: 5, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ComputeBalance(labels, folds, 5, 15)
	if b.MaxClassDev > 1 || b.MaxSizeDev > 1 {
		t.Errorf("after repair: max deviations %.2f / %.2f", b.MaxClassDev, b.MaxSizeDev)
	}
}

func TestStratifiedKFoldDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	labels := make([][]int, 500)
	for i := range labels {
		n := 1 + rng.IntN(3)
		perm := rng.Perm(8)
		labels[i] = perm[:n]
	}
	a, err := StratifiedKFold(labels, 8, Options{K: 5, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := StratifiedKFold(labels, 8, Options{K: 5, Seed: 11})
	c, _ := StratifiedKFold(labels, 8, Options{K: 5, Seed: 12})
	same, diff := true, false
	for i := range a {
		same = same && a[i] == b[i]
		diff = diff || a[i] != c[i]
	}
	if !same {
		t.Error("same seed gave different folds")
	}
	if !diff {
		t.Error("different seeds gave identical folds")
	}
}

func TestStratifiedKFoldGroupsStayTogether(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	n := 2000
	labels := make([][]int, n)
	groups := make([]int, n)
	for i := range labels {
		labels[i] = []int{rng.IntN(6)}
		if rng.IntN(4) == 0 {
			labels[i] = append(labels[i], 6+rng.IntN(2))
		}
		groups[i] = i
		if i > 0 && rng.IntN(5) == 0 { // a near-duplicate of an earlier example
			j := rng.IntN(i)
			groups[i] = groups[j]
			labels[i] = append([]int(nil), labels[j]...)
		}
	}
	folds, err := StratifiedKFold(labels, 8, Options{K: 5, Seed: 1, Groups: groups})
	if err != nil {
		t.Fatal(err)
	}
	foldOf := map[int]int{}
	for i, g := range groups {
		if f, ok := foldOf[g]; ok && f != folds[i] {
			t.Fatalf("group %d split across folds %d and %d", g, f, folds[i])
		}
		foldOf[g] = folds[i]
	}
	b, _ := ComputeBalance(labels, folds, 5, 8)
	// Groups are small here, so the split stays close to the ideal.
	if b.MaxClassDev > 2 || b.MaxSizeDev > 2 {
		t.Errorf("grouped split too uneven: %.2f / %.2f", b.MaxClassDev, b.MaxSizeDev)
	}
}

func TestStratifiedKFoldErrors(t *testing.T) {
	labels := [][]int{{0}, {1}, {0, 1}, {1}, {0}}
	cases := []struct {
		name   string
		labels [][]int
		opt    Options
		want   string
	}{
		{"k=1", labels, Options{K: 1}, "at least 2 folds"},
		{"too few", labels, Options{K: 6}, "cannot fill 6 folds"},
		{"bad class", [][]int{{0}, {2}, {1}}, Options{K: 2}, "example 1: class id 2 outside 0..1"},
		{"repeated class", [][]int{{0}, {1, 1}, {1}}, Options{K: 2}, "example 1: class id 1 repeated"},
		{"groups length", labels, Options{K: 2, Groups: []int{1, 2}}, "2 group ids for 5 examples"},
		{"groups too few", labels, Options{K: 3, Groups: []int{1, 1, 1, 2, 2}}, "cannot fill 3 folds"},
	}
	for _, tc := range cases {
		_, err := StratifiedKFold(tc.labels, 2, tc.opt)
		var fe *Error
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want Error containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := ComputeBalance(labels, []int{0, 1, 2, 0, 1}, 2, 2); err == nil {
		t.Error("fold id outside 0..k-1 must be an error")
	}
	if _, err := ComputeBalance(labels, []int{0, 0, 0, 0, 0}, -1, 2); err == nil {
		t.Error("negative k must be an error")
	}
}

func TestFoldBalanceWrite(t *testing.T) {
	labels := [][]int{{0}, {1}, {0, 1}, {1}}
	b, err := ComputeBalance(labels, []int{0, 1, 0, 1}, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if b.Counts[0][0] != 2 || b.Counts[1][1] != 2 || b.Counts[0][1] != 1 || b.MaxClassDev != 1 {
		t.Fatalf("counts %v maxdev %v", b.Counts, b.MaxClassDev)
	}
	var sb strings.Builder
	if err := b.Write(&sb, []string{"Nucleoplasm", "Nuclear membrane"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "fold sizes (ideal 2.0): 2 2") || !strings.Contains(sb.String(), "Nuclear membrane") {
		t.Errorf("unexpected table:\n%s", sb.String())
	}
}

// BenchmarkStratifiedKFoldReal times the whole split (stratification + repair) of the 31,072 x 28
// HPA label matrix and reports the largest remaining deviation from the ideal share.
func BenchmarkStratifiedKFoldReal(b *testing.B) {
	labels := realHPALabels(b)
	var folds []int
	for i := 0; b.Loop(); i++ {
		var err error
		folds, err = StratifiedKFold(labels, 28, Options{K: 5, Seed: uint64(i)})
		if err != nil {
			b.Fatal(err)
		}
	}
	bal, _ := ComputeBalance(labels, folds, 5, 28)
	b.ReportMetric(bal.MaxClassDev, "max_class_dev")
	b.ReportMetric(bal.MaxSizeDev, "max_size_dev")
}
