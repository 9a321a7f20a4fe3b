package training

import (
	"context"
	"fmt"

	"github.com/hpa-plates/hpa/internal/labeling"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/train/eval"
)

// LoaderScorer scores the production set on the candidate's own data: it loads the set with Load
// (cmd/hpa hands it the ONNX Runtime loader), predicts every sample of the snapshot (the images at
// the keys the snapshot froze) and applies the set's thresholds, so candidate (out-of-fold) and
// production are compared on the same Ids. Without a snapshot (a manual promotion) it falls back to
// the set's report.
type LoaderScorer struct {
	Load   model.Loader
	Store  objstore.Store
	Batch  int
	Decode pipeline.DecodeOptions
}

// ScoreProduction implements Scorer.
func (s LoaderScorer) ScoreProduction(ctx context.Context, location string, snap *Snapshot) (Scores, error) {
	if snap == nil || len(snap.Samples) == 0 || s.Load == nil {
		return readReportScores(ctx, s.Store, location)
	}
	p, closer, err := s.Load(ctx, location)
	if err != nil {
		return Scores{}, fmt.Errorf("load %s: %w", location, err)
	}
	if closer != nil {
		defer closer.Close()
	}
	th := p.Thresholds()
	batch := max(1, s.Batch)
	if s.Batch == 0 {
		batch = 8
	}
	f := labeling.ObjectFetcher{Store: s.Store}
	preds := make([][]int, 0, len(snap.Samples))
	truth := make([][]int, 0, len(snap.Samples))
	for start := 0; start < len(snap.Samples); start += batch {
		var imgs []pipeline.Image4
		for _, x := range snap.Samples[start:min(len(snap.Samples), start+batch)] {
			a, err := labeling.Assemble(ctx, f, labeling.Sample{ID: x.ID, Keys: x.Keys}, s.Decode)
			if err != nil {
				return Scores{}, fmt.Errorf("production scoring: %w", err)
			}
			imgs = append(imgs, a.Image)
			truth = append(truth, x.Targets)
		}
		probs, err := p.Predict(ctx, imgs)
		if err != nil {
			return Scores{}, fmt.Errorf("production scoring: %w", err)
		}
		for _, pr := range probs {
			preds = append(preds, th.Apply(pr))
		}
	}
	return scoreSets(preds, truth), nil
}

// scoreSets scores predicted label sets against the truth with internal/train/eval's metrics (per-class
// F1, macro-F1 over all classes, zero_division=0).
func scoreSets(preds, truth [][]int) Scores {
	k := labels.NumClasses
	tp, fp, fn := make([]int, k), make([]int, k), make([]int, k)
	for i := range preds {
		var p, t [labels.NumClasses]bool
		for _, c := range preds[i] {
			if c >= 0 && c < k {
				p[c] = true
			}
		}
		for _, c := range truth[i] {
			if c >= 0 && c < k {
				t[c] = true
			}
		}
		for c := range k {
			switch {
			case p[c] && t[c]:
				tp[c]++
			case p[c]:
				fp[c]++
			case t[c]:
				fn[c]++
			}
		}
	}
	per := make([]eval.ClassScore, k)
	for c := range k {
		per[c] = eval.ScoreCounts(tp[c], fp[c], fn[c])
	}
	ts := eval.ScoreFromClasses(per)
	s := Scores{MacroF1: ts.MacroF1, PerClass: make([]ClassScore, k), Samples: len(preds)}
	for c, cs := range per {
		s.PerClass[c] = ClassScore{F1: cs.F1, Positives: cs.Support}
	}
	return s
}
