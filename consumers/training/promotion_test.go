package training

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/runs"
)

// putSet writes a minimal model set (manifest and report) with the given macro-F1 and per-class F1.
func (e *testEnv) putSet(t testing.TB, version string, macro float64, classF1 float64) {
	t.Helper()
	mf := map[string]any{"schema": 1, "name": "hpa", "version": version, "members": []any{map[string]any{"file": "m.onnx"}},
		"metrics": map[string]float64{"oof_macro_f1": macro}}
	b, _ := json.Marshal(mf)
	e.put(t, "models/"+version+"/manifest.json", b)
	type row struct {
		ID        int     `json:"class_id"`
		Positives int     `json:"positives"`
		F1        float64 `json:"f1"`
	}
	rep := struct {
		Samples  int     `json:"samples"`
		MacroF1  float64 `json:"macro_f1"`
		PerClass []row   `json:"per_class"`
	}{Samples: 100, MacroF1: macro}
	for c := range 28 {
		rep.PerClass = append(rep.PerClass, row{ID: c, Positives: 30, F1: classF1})
	}
	b, _ = json.Marshal(rep)
	e.put(t, "models/"+version+"/report.json", b)
}

func (e *testEnv) models(t testing.TB) *Models {
	t.Helper()
	m, err := NewModels(context.Background(), ModelsConfig{}, e.js, e.nc, e.store)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A worse candidate is refused (decision says why, production stays), a better one is promoted,
// a forced rollback restores the previous version; manual promotions write the same records.
func TestGuardedPromotionAndRollback(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putSet(t, "v1", 0.60, 0.60)
	e.putSet(t, "v2-shuffled", 0.20, 0.20)
	e.putSet(t, "v3", 0.62, 0.62)
	m := e.models(t)
	d, err := m.Decide(ctx, Request{Version: "v1", By: "hpa model promote"})
	if err != nil || d.Action != runs.ActionPromote || d.Reason != "no production model yet" {
		t.Fatalf("first promotion: %+v %v", d, err)
	}
	d, err = m.Decide(ctx, Request{Version: "v2-shuffled", By: "hpa model promote"})
	if err != nil || d.Action != runs.ActionReject || d.ProductionVersion != "v1" || d.ProductionMacroF1 == nil || *d.ProductionMacroF1 != 0.6 {
		t.Fatalf("worse candidate: %+v %v", d, err)
	}
	if cur, _, _ := m.Current(ctx); cur.Version != "v1" {
		t.Fatalf("current %s after a refused candidate", cur.Version)
	}
	d, err = m.Decide(ctx, Request{Version: "v3", By: "coordinator", RunID: "r3"})
	if err != nil || d.Action != runs.ActionPromote || len(d.Classes) != 28 {
		t.Fatalf("better candidate: %+v %v", d, err)
	}
	cur, _, _ := m.Current(ctx)
	if cur.Version != "v3" || cur.Previous != "v1" || cur.Location != "s3://hpa/models/v3/" {
		t.Fatalf("current %+v", cur)
	}
	// Rolling back to the worse v1 needs --force.
	d, err = m.Rollback(ctx, "hpa model rollback", false)
	if err != nil || d.Action != runs.ActionReject {
		t.Fatalf("unforced rollback to a worse set: %+v %v", d, err)
	}
	d, err = m.Rollback(ctx, "hpa model rollback", true)
	if err != nil || d.Action != runs.ActionRollback || !d.Forced || d.Version != "v1" {
		t.Fatalf("forced rollback: %+v %v", d, err)
	}
	if cur, _, _ := m.Current(ctx); cur.Version != "v1" || cur.Previous != "v3" {
		t.Fatalf("current after rollback %+v", cur)
	}
	ptr, _ := e.store.Get(ctx, "models/current.json", 0)
	if bus.ParsePromotion(ptr).Version != "v1" {
		t.Errorf("pointer %s", ptr)
	}
	ds := e.decisions(t)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Time.Before(ds[j].Time) })
	var actions []string
	for _, d := range ds {
		actions = append(actions, d.Action+" "+d.Version)
	}
	if fmt.Sprint(actions) != "[promote v1 reject v2-shuffled promote v3 reject v1 rollback v1]" {
		t.Errorf("decisions %v", actions)
	}
	if _, err := m.Decide(ctx, Request{Version: "nosuch"}); !errors.Is(err, ErrNoVersion) {
		t.Errorf("missing version: %v", err)
	}
	vs, err := m.List(ctx)
	if err != nil || len(vs) != 3 {
		t.Fatalf("list %+v %v", vs, err)
	}
	for _, v := range vs {
		if v.Current != (v.Version == "v1") {
			t.Errorf("list: %+v", v)
		}
	}
}

// Two promotions racing from the same production model: exactly one wins, the pointer and the KV
// fact agree on it.
func TestRacingPromotions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, v := range []string{"base", "a", "b"} {
		e.putSet(t, v, 0.5, 0.5)
	}
	m1, m2 := e.models(t), e.models(t)
	if _, err := m1.Decide(ctx, Request{Version: "base"}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		cur, rev, err := m1.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		va, vb := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for j, mm := range []*Models{m1, m2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				v := []string{va, vb}[j]
				errs[j] = mm.swap(ctx, bus.Promotion{Location: mm.Location(v), Version: v, Previous: cur.Version}, cur.Version, rev)
			}()
		}
		close(start)
		wg.Wait()
		won := ""
		for j, err := range errs {
			switch {
			case err == nil:
				if won != "" {
					t.Fatalf("round %d: both won", i)
				}
				won = []string{va, vb}[j]
			case !errors.Is(err, ErrConflict):
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if won == "" {
			t.Fatalf("round %d: nobody won: %v", i, errs)
		}
		now, _, _ := m1.Current(ctx)
		ptr, _ := e.store.Get(ctx, "models/current.json", 0)
		if now.Version != won || bus.ParsePromotion(ptr).Version != won {
			t.Fatalf("round %d: winner %s, KV %s, pointer %s", i, won, now.Version, ptr)
		}
	}
}

// With a baseline (the set `hpa up` serves before any promotion), the first candidate is guarded
// against it instead of being promoted unseen.
func TestBaselineGuardsFirstPromotion(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putSet(t, "bundled", 0.60, 0.60)
	e.putSet(t, "worse", 0.30, 0.30)
	e.putSet(t, "better", 0.65, 0.65)
	m, err := NewModels(ctx, ModelsConfig{Baseline: "s3://hpa/models/bundled/"}, e.js, e.nc, e.store)
	if err != nil {
		t.Fatal(err)
	}
	d, err := m.Decide(ctx, Request{Version: "worse", By: "coordinator"})
	if err != nil || d.Action != runs.ActionReject || d.ProductionVersion != "baseline" {
		t.Fatalf("worse than the baseline: %+v %v", d, err)
	}
	if cur, _, _ := m.Current(ctx); cur.Version != "" {
		t.Fatalf("promoted %s", cur.Version)
	}
	if d, err := m.Decide(ctx, Request{Version: "better", By: "coordinator"}); err != nil || d.Action != runs.ActionPromote {
		t.Fatalf("better than the baseline: %+v %v", d, err)
	}
}
