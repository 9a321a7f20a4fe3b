package training

import (
	"context"
	"io"
	"math"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// fakeSet predicts class 0 for every sample and class 1 for samples whose red plane starts bright.
type fakeSet struct{ seen []string }

func (f *fakeSet) Predict(_ context.Context, batch []pipeline.Image4) ([][]float64, error) {
	out := make([][]float64, len(batch))
	for i, img := range batch {
		f.seen = append(f.seen, img.ID)
		p := make([]float64, labels.NumClasses)
		p[0] = 0.9
		out[i] = p
	}
	return out, nil
}
func (f *fakeSet) Info() labels.ModelInfo { return labels.ModelInfo{ManifestDigest: "sha256:f"} }
func (f *fakeSet) Thresholds() labels.Thresholds {
	v := make([]float64, labels.NumClasses)
	for i := range v {
		v[i] = 0.5
	}
	return labels.Thresholds{Mode: "uniform", Values: v}
}

// The production set is scored on the snapshot's own samples: the images the snapshot names are
// fetched and predicted, the set's thresholds applied, F1 computed as internal/train/eval does.
func TestLoaderScorerUsesSnapshot(t *testing.T) {
	e := newEnv(t)
	data := synthData(t, 6, 9)
	e.uploadImages(t, data, "training/images/")
	ix, err := (&registry{store: e.store, imagesPrefix: "training/images/"}).images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	snap := &Snapshot{Schema: DatasetSchema}
	targets := [][]int{{0}, {0, 5}, {5}, {0}, {7}, {0}}
	for i, id := range sortedIDs(ix) {
		keys, etags, _ := ix.Channels(id)
		snap.Samples = append(snap.Samples, Sample{ID: id, Targets: targets[i], Keys: keys, ETags: etags})
	}
	fs := &fakeSet{}
	sc := LoaderScorer{Store: e.store, Batch: 4, Load: func(ctx context.Context, loc string) (model.Predictor, io.Closer, error) {
		if loc != "s3://hpa/models/p/" {
			t.Errorf("location %s", loc)
		}
		return fs, nil, nil
	}}
	s, err := sc.ScoreProduction(context.Background(), "s3://hpa/models/p/", snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs.seen) != 6 || s.Samples != 6 {
		t.Fatalf("predicted %d samples", len(fs.seen))
	}
	// class 0: tp 4, fp 2, fn 0 -> F1 8/10; classes 5 and 7: fn only -> 0; macro over 28 classes.
	if math.Abs(s.PerClass[0].F1-0.8) > 1e-12 || s.PerClass[0].Positives != 4 || s.PerClass[5].Positives != 2 || s.PerClass[5].F1 != 0 {
		t.Errorf("per class %+v %+v", s.PerClass[0], s.PerClass[5])
	}
	if math.Abs(s.MacroF1-0.8/28) > 1e-12 {
		t.Errorf("macro-F1 %v", s.MacroF1)
	}
}

func sortedIDs(ix *channelIndex) []string {
	var ids []string
	for id := range ix.keys {
		ids = append(ids, id)
	}
	for i := range ids {
		for j := i + 1; j < len(ids); j++ {
			if ids[j] < ids[i] {
				ids[i], ids[j] = ids[j], ids[i]
			}
		}
	}
	return ids
}
