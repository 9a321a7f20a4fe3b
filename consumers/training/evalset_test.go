package training

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/runs"
)

// constSet predicts one class for every sample.
type constSet struct{ class int }

func (c constSet) Predict(_ context.Context, batch []pipeline.Image4) ([][]float64, error) {
	out := make([][]float64, len(batch))
	for i := range batch {
		out[i] = make([]float64, labels.NumClasses)
		out[i][c.class] = 0.9
	}
	return out, nil
}
func (constSet) Info() labels.ModelInfo        { return labels.ModelInfo{ManifestDigest: "sha256:c"} }
func (constSet) Thresholds() labels.Thresholds { return (&fakeSet{}).Thresholds() }

// With training.eval_prefix the guard scores candidate and production on the fixed evaluation
// set (both predicted by the scorer's runtime), not on their reports: a set whose report looks
// worse but which labels the evaluation set better is promoted, the other way round refused; a
// bad evaluation file stops the decision and the production model stays.
func TestFixedEvaluationSet(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	data := synthData(t, 6, 21)
	e.uploadImages(t, data, "training/images/")
	ix, err := (&registry{store: e.store, imagesPrefix: "training/images/"}).images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := sortedIDs(ix)
	var a strings.Builder
	a.WriteString("Id,Target\n")
	for _, id := range ids {
		a.WriteString(id + ",5\n")
	}
	e.put(t, "training/eval/a.csv", []byte(a.String()))
	// A later file overrides: every sample is class 0 except the last.
	var b strings.Builder
	b.WriteString("Id,Target\n")
	for _, id := range ids[:5] {
		b.WriteString(id + ",0\n")
	}
	e.put(t, "training/eval/b.csv", []byte(b.String()))
	snap, err := EvalSet(ctx, e.store, "training/eval/", "training/images/")
	if err != nil || len(snap.Samples) != 6 || snap.Samples[5].Targets[0] != 5 || snap.Samples[0].Targets[0] != 0 {
		t.Fatalf("evaluation set %+v %v", snap, err)
	}

	e.putSet(t, "good", 0.10, 0.10) // its report says bad; it labels class 0 (right on 5 of 6)
	e.putSet(t, "bad", 0.90, 0.90)  // its report says good; it labels class 3 (always wrong)
	var loaded []string
	m, err := NewModels(ctx, ModelsConfig{EvalPrefix: "training/eval/", EvalImagesPrefix: "training/images/"}, e.js, e.nc, e.store)
	if err != nil {
		t.Fatal(err)
	}
	m.Scorer = LoaderScorer{Store: e.store, Load: func(_ context.Context, loc string) (model.Predictor, io.Closer, error) {
		loaded = append(loaded, loc)
		if strings.Contains(loc, "/good/") {
			return constSet{0}, nil, nil
		}
		return constSet{3}, nil, nil
	}}
	if d, err := m.Decide(ctx, Request{Version: "bad", By: "test"}); err != nil || d.Action != runs.ActionPromote {
		t.Fatalf("first promotion: %+v %v", d, err)
	}
	d, err := m.Decide(ctx, Request{Version: "good", By: "test"})
	if err != nil || d.Action != runs.ActionPromote || d.EvalSamples != 6 || d.CandidateMacroF1 == nil || *d.CandidateMacroF1 <= *d.ProductionMacroF1 {
		t.Fatalf("better on the evaluation set: %+v %v", d, err)
	}
	if strings.Join(loaded, " ") != "s3://hpa/models/bad/ s3://hpa/models/good/ s3://hpa/models/bad/" {
		t.Errorf("sets scored: %v", loaded)
	}
	if d, err := m.Decide(ctx, Request{Version: "bad", By: "test"}); err != nil || d.Action != runs.ActionReject {
		t.Fatalf("worse on the evaluation set: %+v %v", d, err)
	}
	e.put(t, "training/eval/c.csv", []byte("Id,Target\n"+ids[0]+",99\n"))
	if _, err := m.Decide(ctx, Request{Version: "bad", By: "test"}); err == nil || !strings.Contains(err.Error(), "training/eval/c.csv") {
		t.Fatalf("bad evaluation file: %v", err)
	}
	if cur, _, _ := m.Current(ctx); cur.Version != "good" {
		t.Errorf("current %s", cur.Version)
	}
}

// An evaluation prefix inside the labels prefix (or containing it) is refused at start: its label
// files would be trained on, and the guard would score the candidate on its own training data.
func TestEvalPrefixOverlappingLabelsRefused(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		eval string
		ok   bool
	}{{"training/labels/eval/", false}, {"training/", false}, {"training/eval/", true}, {"", true}} {
		cfg := testConfig(e, t)
		cfg.LabelsPrefix = "training/labels/"
		cfg.Models.EvalPrefix = c.eval
		_, err := NewCoordinator(context.Background(), cfg, e.nc, e.js, e.store, e.log)
		if c.ok != (err == nil) {
			t.Errorf("eval_prefix %q: %v", c.eval, err)
		}
		if err != nil && !strings.Contains(err.Error(), "training.eval_prefix \""+c.eval+"\" overlaps training.labels_prefix") {
			t.Errorf("eval_prefix %q: error does not name both: %v", c.eval, err)
		}
	}
}
