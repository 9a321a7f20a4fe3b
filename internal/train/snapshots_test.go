package train

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/train/eval"
)

// snapshotTrainer builds a trainer over n samples in 2 folds with random multi-labels and returns
// it with each fold's checkpoint holding the given snapshots' OOF predictions: snapshot s of a
// row is the truth blurred by noise[s] (0 = exact, 1 = no signal).
func snapshotTrainer(t *testing.T, n int, noise []float64, seed uint64) (*trainer, []*checkpoint) {
	t.Helper()
	spec, err := model.Preset("seresnext_tiny")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	k := spec.NumClasses
	ids := make([]string, n)
	labs := make([][]int, n)
	fold := make([]int, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%03d", i)
		labs[i] = []int{r.IntN(4)} // classes 0-3 frequent
		if r.Float64() < 0.5 {
			labs[i] = append(labs[i], 4+r.IntN(8))
		}
		fold[i] = i % 2
	}
	cfg := DefaultConfig(spec)
	tr := &trainer{cfg: cfg, data: &dataset{ids: ids, labels: labs}, folds: fold}
	cks := make([]*checkpoint, 2)
	for f := range cks {
		_, val := tr.split(f)
		ck := &checkpoint{}
		for s, z := range noise {
			oof := make([][]float64, len(val))
			for row, ex := range val {
				p := make([]float64, k)
				for c := range p {
					p[c] = (1 - z) * 0.02
				}
				for _, c := range labs[ex] {
					p[c] = (1 - z) * 0.9
				}
				for c := range p {
					p[c] += z * r.Float64()
				}
				oof[row] = p
			}
			ck.SnapshotOOF = append(ck.SnapshotOOF, oof)
			ck.Members = append(ck.Members, model.Member{File: fmt.Sprintf("members/fold%d_cycle%d.onnx", f, s), Fold: f, Snapshot: s})
		}
		cks[f] = ck
	}
	return tr, cks
}

func thresholdOptions(t *testing.T, tr *trainer) eval.ThresholdOptions {
	opt := eval.DefaultThresholdOptions()
	rates, err := labels.ClassRates(tr.data.labels, tr.cfg.Arch.NumClasses)
	if err != nil {
		t.Fatal(err)
	}
	opt.Rates = rates
	return opt
}

// Snapshot selection keeps the last k snapshots whose OOF ensemble scores best: weak early
// snapshots (a short schedule that is still improving) are dropped; snapshots that each add
// independent information are all kept; "all" keeps every one without a choice.
func TestSelectSnapshots(t *testing.T) {
	// Early snapshots carry almost no signal, the last is good: keep only the last.
	tr, cks := snapshotTrainer(t, 400, []float64{0.97, 0.95, 0.55}, 1)
	keep, scores, err := tr.selectSnapshots(cks, []int{0, 1}, thresholdOptions(t, tr))
	if err != nil {
		t.Fatal(err)
	}
	if keep != 1 || len(scores) != 3 || scores[1] <= scores[3] {
		t.Errorf("weak early snapshots: kept %d, scores %v; want the last only", keep, scores)
	}
	// Equally noisy snapshots with independent noise: their mean is better than any one.
	tr, cks = snapshotTrainer(t, 400, []float64{0.8, 0.8, 0.8}, 2)
	keep, scores, err = tr.selectSnapshots(cks, []int{0, 1}, thresholdOptions(t, tr))
	if err != nil {
		t.Fatal(err)
	}
	if keep != 3 || scores[3] <= scores[1]+SnapshotMargin {
		t.Errorf("equal snapshots: kept %d, scores %v; want all 3", keep, scores)
	}
	tr.cfg.Snapshots = "all"
	if keep, scores, err = tr.selectSnapshots(cks, []int{0, 1}, thresholdOptions(t, tr)); err != nil || keep != 3 || scores != nil {
		t.Errorf("snapshots all: kept %d, scores %v, %v", keep, scores, err)
	}
	// The fold's OOF rows are the mean of its last k snapshots.
	p, l := tr.foldOOF(cks[1], 1, 2)
	_, val := tr.split(1)
	if len(p) != len(val) || len(l) != len(val) {
		t.Fatalf("foldOOF: %d rows, %d labels, want %d", len(p), len(l), len(val))
	}
	if want := (cks[1].SnapshotOOF[1][7][5] + cks[1].SnapshotOOF[2][7][5]) / 2; p[7][5] != want {
		t.Errorf("foldOOF row 7 class 5 = %v, want %v", p[7][5], want)
	}
	cfg := tr.cfg
	cfg.Snapshots = "best"
	cfg.DataDir, cfg.OutDir = "d", "o"
	if err := cfg.Validate(); err == nil {
		t.Error("snapshots best: want an error")
	}
}
