package viewer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/runs"
	"github.com/hpa-plates/hpa/internal/testenv"
)

func TestModelsPageEmptyStates(t *testing.T) {
	_, srv := newTestViewer(t, newMemStore(), nil)
	code, _, body := get(t, srv, "/models")
	if code != 200 {
		t.Fatal(code, body)
	}
	for _, want := range []string{`id="runs-empty"`, `id="decisions-empty"`, "No model sets under", "was not told which model set serves"} {
		if !strings.Contains(body, want) {
			t.Errorf("empty models page lacks %s", want)
		}
	}
}

func TestModelsPage(t *testing.T) {
	bundled := filepath.Join(testenv.RepoRoot(t), "models", "bundled")
	m := newMemStore()
	// The bundled set, copied to models/v1/ in S3; the same files serve from disk.
	for _, f := range []string{"manifest.json", "report.json", "curves.png"} {
		b, err := os.ReadFile(filepath.Join(bundled, f))
		if err != nil {
			t.Fatal(err)
		}
		m.put("models/v1/"+f, b)
		m.put("models/other/"+f, b)
	}
	m.put("models/broken/manifest.json", []byte("{"))
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	loss, eta, f1 := 0.25, 120.0, 0.5
	run := runs.Run{Schema: runs.RunSchema, ID: "r1", State: runs.RunRunning, Trigger: "manual", Samples: 100, NewSamples: 60,
		Candidate: "v1", Created: ts, Updated: ts, Report: "models/v1/report.json", Curves: "models/v1/curves.png", MacroF1: &f1,
		Folds: []runs.Fold{{Fold: 0, State: runs.FoldDone, Epoch: 4, Epochs: 4}, {Fold: 1, State: runs.FoldRunning, Epoch: 2, Epochs: 4,
			Loss: &loss, ETASeconds: &eta, Worker: "worker-a"}}}
	b, _ := runs.Marshal(run)
	m.put(runs.RunKey("", "r1"), b)
	m.put(runs.RunKey("", "bad"), []byte(`{"schema":"hpa.training.run/v1","id":"bad","state":"sleeping"}`))
	bad := run
	bad.ID, bad.Curves = "evil", "labels/p/s1.json"
	b, _ = runs.Marshal(bad)
	m.put(runs.RunKey("", "evil"), b)
	c, p := 0.61, 0.60
	dec := runs.Decision{Schema: runs.DecisionSchema, Time: ts, Action: runs.ActionPromote, Version: "v1", ProductionVersion: "v0",
		RunID: "r1", By: "coordinator", Reason: "macro-F1 0.6100 >= 0.6000 - 0.005", CandidateMacroF1: &c, ProductionMacroF1: &p}
	b, _ = runs.Marshal(dec)
	m.put(runs.DecisionKey("", dec), b)
	_, srv := newTestViewer(t, m, func(c *Config) {
		c.Model = func(context.Context) (string, error) { return filepath.Join(bundled, "manifest.json"), nil }
	})
	code, _, body := get(t, srv, "/models")
	if code != 200 {
		t.Fatal(code, body)
	}
	for _, want := range []string{
		`id="current-version">tiny128-synth-v2<`, "hpa-bundled", "seresnext_tiny", "Per-class F1", "Nucleoplasm",
		`src="/models/current/curves.png"`, `<tr class="current"><th scope="row">v1</th>`, `<th scope="row">broken</th>`,
		`id="run-r1"`, `<progress max="2" value="1">`, "epoch 2/4", "worker-a", "2m0s", "0.2500",
		`src="/runs/r1/curves.png"`, "training/runs/bad.json", "macro-F1 0.6100 &gt;= 0.6000 - 0.005", "0.6100",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("models page lacks %q", want)
		}
	}
	if strings.Contains(body, "/runs/evil/curves.png") {
		t.Error("a run's curves key outside models/ and training/runs/ became a link")
	}
	for path, ct := range map[string]string{"/models/current/curves.png": "image/png", "/models/current/manifest.json": "application/json",
		"/models/v/v1/report.json": "application/json", "/runs/r1/curves.png": "image/png"} {
		if code, h, _ := get(t, srv, path); code != 200 || h.Get("Content-Type") != ct {
			t.Errorf("%s: %d %s", path, code, h.Get("Content-Type"))
		}
	}
	for _, path := range []string{"/models/current/folds.csv", "/models/v/..%2Flabels/manifest.json", "/runs/evil/curves.png", "/runs/r1/report.json"} {
		if code, _, _ := get(t, srv, path); code != 404 && code != 400 {
			t.Errorf("%s: %d, want 400 or 404", path, code)
		}
	}
}
