package train

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestRunTrainOnly: with TrainOnly a fold is trained and checkpointed but no manifest, report or
// curves are written; a later Run over the same directory with every fold done finishes the set.
func TestRunTrainOnly(t *testing.T) {
	data := synthData(t, 48, 32, 5)
	out := t.TempDir()
	newModel, export := backends(t)
	cfg := tinyConfig(t, data, out)
	cfg.TrainOnly = true
	for f := 0; f < cfg.Folds; f++ {
		cfg.TrainFolds = []int{f}
		res, err := Run(context.Background(), cfg, newModel, export, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Manifest != nil || res.Report != nil {
			t.Fatalf("fold %d: TrainOnly returned a manifest or report", f)
		}
		if ck := readCkpt(t, out, f); ck == nil || len(ck.Members) != cfg.Cycles {
			t.Fatalf("fold %d: checkpoint %+v", f, ck)
		}
		for _, name := range []string{"manifest.json", "report.json", "curves.png"} {
			if _, err := os.Stat(filepath.Join(out, name)); err == nil {
				t.Fatalf("fold %d: TrainOnly wrote %s", f, name)
			}
		}
	}
	cfg.TrainOnly, cfg.TrainFolds = false, nil
	res, err := Run(context.Background(), cfg, newModel, export, func(p Progress) {
		if p.Phase == "train" {
			t.Errorf("the finishing run trained again: %+v", p)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest == nil || len(res.Manifest.Members) != cfg.Folds*cfg.Cycles {
		t.Fatalf("finished set: %+v", res.Manifest)
	}
}
