package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
	"github.com/hpa-plates/hpa/internal/synth"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/label-golden from this build's `hpa label` output")

const goldenDir = "testdata/label-golden"

// goldenFixture writes the fixed model set and input of TestLabelGolden under dir and returns the
// manifest path and the input directory. The model set is one seresnext_tiny member at 32 px
// (timm init, seed 11) with 8-view TTA and a uniform threshold of 0.5 (at_least_top); the input is
// four `hpa synth` samples at 40 px (seed 7), a copy of one with a truncated green channel, and a
// sample without its yellow channel. Nothing here depends on models/bundled.
func goldenFixture(t *testing.T, dir string) (manifest, in string) {
	t.Helper()
	spec, err := model.Preset("seresnext_tiny")
	if err != nil {
		t.Fatal(err)
	}
	set := filepath.Join(dir, "model")
	if err := os.MkdirAll(set, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := onnx.Export(&buf, spec, model.InitWeights(spec, 11), onnx.ExportOptions{InputSize: 32, InputName: "input", OutputName: "logits", Opset: 17}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(set, "member-00.onnx"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	manifest, err = model.WriteManifest(set, &model.Manifest{
		Schema: model.ManifestSchema, Name: "golden", Version: "g1", Arch: spec, InputSize: 32,
		ChannelOrder: []string{"red", "green", "blue", "yellow"}, Normalization: model.DefaultNormalization(4),
		ClassNames: labels.ClassNames[:], InputName: "input", OutputName: "logits", TTAViews: 8,
		Thresholds: model.Thresholds{Mode: "uniform", Uniform: 0.5, AtLeastTop: true},
		Members:    []model.Member{{File: "member-00.onnx", SHA256: hex.EncodeToString(sum[:])}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synth.Generate(context.Background(), synth.Options{Out: filepath.Join(dir, "synth"), Samples: 4, Size: 40, Seed: 7, Workers: 1}); err != nil {
		t.Fatal(err)
	}
	in = filepath.Join(dir, "synth", "train")
	ents, err := os.ReadDir(in)
	if err != nil || len(ents) != 16 {
		t.Fatalf("synth wrote %d files: %v", len(ents), err)
	}
	first := strings.TrimSuffix(ents[0].Name(), "_blue.png") // sorted: <id>_blue.png comes first
	for _, ch := range []string{"red", "green", "blue", "yellow"} {
		b, err := os.ReadFile(filepath.Join(in, first+"_"+ch+".png"))
		if err != nil {
			t.Fatal(err)
		}
		if ch == "green" {
			b = b[:len(b)/2]
		}
		if err := os.WriteFile(filepath.Join(in, "zz-truncated_"+ch+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if ch != "yellow" {
			if err := os.WriteFile(filepath.Join(in, "zz-incomplete_"+ch+".png"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return manifest, in
}

// `hpa label` writes exactly the bytes of testdata/label-golden for the fixed fixture: label JSON,
// error JSON and the submission CSV. The golden files were written by `hpa label` before the
// sample path was shared with the service (HPA_GOLDEN_FIXTURE=DIR writes the fixture for an
// outside binary); -update rewrites them from this build.
func TestLabelGolden(t *testing.T) {
	if dir := os.Getenv("HPA_GOLDEN_FIXTURE"); dir != "" {
		m, in := goldenFixture(t, dir)
		t.Skipf("fixture written: hpa label %s --model %s --out OUT --batch 3 --workers 2 --threads 1", in, m)
	}
	manifest, in := goldenFixture(t, t.TempDir())
	// The fixture first: when the exporter or the init changes, the model (and so every label's
	// manifest digest) changes although the labeling path did not.
	mm, err := model.ReadManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := os.ReadFile(filepath.Join(goldenDir, "member.sha256"))
	if err != nil && !*updateGolden {
		t.Fatal(err)
	}
	if got := mm.Members[0].SHA256; !*updateGolden && got != strings.TrimSpace(string(pin)) {
		t.Fatalf("the fixture model changed (sha256 %s, pinned %s): onnx.Export or model.InitWeights changed, not the labeling path; check, then rerun with -update", got, strings.TrimSpace(string(pin)))
	}
	out := filepath.Join(t.TempDir(), "out")
	code, stderr := labelRun(t, "label", in, "--model", manifest, "--out", out, "--batch", "3", "--workers", "2", "--threads", "1")
	if code != 1 || !strings.Contains(stderr, "labeled 4 of 6 samples (1 failed, 1 incomplete)") {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	got := labelReadDir(t, out)
	if *updateGolden {
		if err := os.RemoveAll(goldenDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range got {
			if err := os.WriteFile(filepath.Join(goldenDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(goldenDir, "member.sha256"), []byte(mm.Members[0].SHA256+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want := labelReadDir(t, goldenDir)
	delete(want, "member.sha256")
	var gotNames, wantNames []string
	for n := range got {
		gotNames = append(gotNames, n)
	}
	for n := range want {
		wantNames = append(wantNames, n)
	}
	slices.Sort(gotNames)
	slices.Sort(wantNames)
	if !slices.Equal(gotNames, wantNames) {
		t.Fatalf("files %v, golden %v", gotNames, wantNames)
	}
	for _, n := range wantNames {
		if !bytes.Equal(got[n], want[n]) {
			t.Errorf("%s differs from the golden file:\n%s\nwant\n%s", n, got[n], want[n])
		}
	}
}
