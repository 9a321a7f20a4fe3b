package inference

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
)

// The current-model fact (KV hpa_models/current): a promotion made while no replica ran is served
// when one starts; a later change hot-reloads while samples stream in (each labeled once, by one of
// the two sets, only the new one after the switch); a location outside inference.model_prefixes is
// refused.
func TestCurrentModelFact(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	kv, err := e.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.ModelsBucket, History: 16})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, bus.CurrentModelKey, []byte(`{"location":"s3://m/models/B/","version":"B"}`)); err != nil {
		t.Fatal(err)
	}
	a, b, c := newFakeModel("A", 0.4), newFakeModel("B", 0.9), newFakeModel("C", 0.2)
	b.delay = 20 * time.Millisecond
	models := map[string]*fakeModel{"A": a, "s3://m/models/B/": b, "s3://m/models/C/": c, "s3://evil/X/": newFakeModel("X", 0.1)}
	cfg := testConfig()
	cfg.MaxBatch = 2
	cfg.ModelPrefixes = []string{"s3://m/models/"}
	svc, err := New(e.nc, e.store, loaderOf(models), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// What Main does: the fact wins over the configured set.
	if loc := svc.CurrentModel(ctx); loc != "s3://m/models/B/" {
		t.Fatalf("current model %q", loc)
	}
	svc.Close()
	svc, _ = e.startService(cfg, loaderOf(models), "A")
	waitFor(t, 10*time.Second, "B served at start", func() bool {
		info, _ := svc.Model()
		return info.ManifestDigest == "sha256:B"
	})
	p := makePlate("pc", 16, 64, 7)
	keys := p.shuffledKeys(3)
	var switchedAt time.Time
	for i, k := range keys {
		e.put(k, p.files[k])
		if i == len(keys)/2 {
			if _, err := kv.Put(ctx, bus.CurrentModelKey, []byte(`{"location":"s3://m/models/C/","version":"C"}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 10*time.Second, "C served", func() bool {
		info, _ := svc.Model()
		if info.ManifestDigest == "sha256:C" && switchedAt.IsZero() {
			switchedAt = time.Now()
		}
		return info.ManifestDigest == "sha256:C"
	})
	waitFor(t, 30*time.Second, "all labels", func() bool { return len(e.labels.snapshot()) == len(p.ids) })
	time.Sleep(200 * time.Millisecond)
	for k, n := range e.labels.snapshot() {
		if n != 1 {
			t.Errorf("%s labeled %d times", k, n)
		}
	}
	for _, id := range p.ids {
		lb, err := e.get("labels/pc/" + id + ".json")
		if err != nil {
			t.Fatal(err)
		}
		l, _ := labels.ParseLabel(lb)
		if d := l.Model.ManifestDigest; d != "sha256:B" && d != "sha256:C" {
			t.Errorf("%s labeled by %s", id, d)
		}
	}
	// After the switch only C labels.
	q := makePlate("pd", 4, 64, 8)
	for _, k := range q.shuffledKeys(1) {
		e.put(k, q.files[k])
	}
	waitFor(t, 30*time.Second, "labels after the switch", func() bool { return len(e.labels.snapshot()) == len(p.ids)+len(q.ids) })
	for _, id := range q.ids {
		lb, _ := e.get("labels/pd/" + id + ".json")
		if l, _ := labels.ParseLabel(lb); l.Model.ManifestDigest != "sha256:C" {
			t.Errorf("%s labeled by %s after the switch", id, l.Model.ManifestDigest)
		}
	}
	// Outside the allowed prefixes: refused, C keeps serving.
	if _, err := kv.Put(ctx, bus.CurrentModelKey, []byte(`{"location":"s3://evil/X/","version":"X"}`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if info, _ := svc.Model(); info.ManifestDigest != "sha256:C" {
		t.Errorf("serving %s after a refused location", info.ManifestDigest)
	}
}
