package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/synth"
	"github.com/hpa-plates/hpa/internal/testenv"
)

// labelModelSet exports two randomly initialized seresnext_tiny members at 64 px with 8-view TTA
// and returns the manifest path.
func labelModelSet(t *testing.T) string {
	t.Helper()
	spec, err := model.Preset("seresnext_tiny")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var members []model.Member
	for i := 0; i < 2; i++ {
		var buf bytes.Buffer
		if err := onnx.Export(&buf, spec, model.InitWeights(spec, int64(i+7)), onnx.ExportOptions{InputSize: 64, InputName: "input", OutputName: "logits", Opset: 17}); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("fold%d.onnx", i)
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		sum, err := model.FileSHA256(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, model.Member{File: name, SHA256: sum, Fold: i})
	}
	m := &model.Manifest{
		Schema: model.ManifestSchema, Name: "label-test", Version: "v1", Arch: spec, InputSize: 64,
		ChannelOrder: []string{"red", "green", "blue", "yellow"}, Normalization: model.DefaultNormalization(4),
		ClassNames: labels.ClassNames[:], InputName: "input", OutputName: "logits", TTAViews: 8,
		// Low uniform threshold so that random models predict something; at_least_top as a safety net.
		Thresholds: model.Thresholds{Mode: "uniform", Uniform: 0.5, AtLeastTop: true},
		Members:    members,
	}
	path, err := model.WriteManifest(dir, m)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func labelWritePNG(t *testing.T, path string, size int, seed int64) {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	img := image.NewGray(image.Rect(0, 0, size, size))
	for i := range img.Pix {
		img.Pix[i] = uint8(r.Intn(256) * (i % size) / size)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// labelRun runs the CLI in-process and returns its exit status and stderr.
func labelRun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	root := newRoot()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(&stderr, "hpa:", err)
		return exitCode(err), stderr.String()
	}
	return 0, stderr.String()
}

func labelReadDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

func TestLabelEndToEnd(t *testing.T) {
	manifest := labelModelSet(t)
	in := t.TempDir()
	good := []string{"s1", "s2", "s3", "s4", "s5"}
	for i, id := range good {
		for c, ch := range pipeline.ChannelNames {
			labelWritePNG(t, filepath.Join(in, id+"_"+ch+".png"), 64+32*(i%2), int64(10*i+c)) // 64 and 96 px
		}
	}
	// A sample with a truncated green PNG.
	for c, ch := range pipeline.ChannelNames {
		labelWritePNG(t, filepath.Join(in, "bad_"+ch+".png"), 64, int64(100+c))
	}
	b, err := os.ReadFile(filepath.Join(in, "bad_green.png"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "bad_green.png"), b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	// A sample without its yellow channel.
	for _, ch := range []string{"red", "green", "blue"} {
		labelWritePNG(t, filepath.Join(in, "part_"+ch+".png"), 64, 200)
	}

	out := filepath.Join(t.TempDir(), "out")
	args := []string{"label", in, "--model", manifest, "--out", out, "--batch", "2", "--threads", "2", "--provider", "cpu"}
	code, stderr := labelRun(t, args...)
	if code != 1 {
		t.Fatalf("exit status %d, want 1; stderr:\n%s", code, stderr)
	}
	t.Logf("stderr:\n%s", stderr)
	for _, want := range []string{"failed bad: bad_green.png", "incomplete part: missing channels: yellow", "labeled 5 of 7 samples (1 failed, 1 incomplete)", "label: 6/6 samples"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	first := labelReadDir(t, out)
	wantFiles := []string{"bad.error.json", "part.error.json", "s1.json", "s2.json", "s3.json", "s4.json", "s5.json", "submission.csv"}
	var names []string
	for n := range first {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, wantFiles) {
		t.Fatalf("outputs %v, want %v", names, wantFiles)
	}
	subRows, err := labels.ReadSubmission(bytes.NewReader(first["submission.csv"]))
	if err != nil {
		t.Fatal(err)
	}
	if len(subRows) != len(good) {
		t.Fatalf("submission rows %+v", subRows)
	}
	for i, id := range good {
		l, err := labels.ParseLabel(first[id+".json"])
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if l.SampleID != id || l.Model.Members != 2 || l.Model.TTAViews != 8 || l.Model.Name != "label-test" || !strings.HasPrefix(l.Model.ManifestDigest, "sha256:") {
			t.Errorf("%s: label header %+v", id, l.Model)
		}
		if len(l.Sources) != 4 {
			t.Fatalf("%s: %d sources", id, len(l.Sources))
		}
		for c, s := range l.Sources {
			want, err := labels.DescribeFile(pipeline.Channel(c), filepath.Join(in, id+"_"+pipeline.ChannelNames[c]+".png"))
			if err != nil || s != want {
				t.Errorf("%s: source %d %+v, want %+v (%v)", id, c, s, want, err)
			}
		}
		if len(l.Predicted) == 0 {
			t.Errorf("%s: nothing predicted despite at_least_top", id)
		}
		if subRows[i].ID != id || !slices.Equal(subRows[i].Predicted, l.PredictedIDs()) {
			t.Errorf("submission row %+v, label predicts %v", subRows[i], l.PredictedIDs())
		}
	}
	rec, err := labels.ParseErrorRecord(first["bad.error.json"])
	if err != nil {
		t.Fatal(err)
	}
	if rec.File != "bad_green.png" || (rec.Kind != "truncated" && rec.Kind != "corrupt") || rec.Reason == "" || rec.Model == nil || rec.Model.Members != 2 {
		t.Errorf("error record %+v", rec)
	}
	rec, err = labels.ParseErrorRecord(first["part.error.json"])
	if err != nil || rec.Kind != "missing_channel" || !strings.Contains(rec.Reason, "yellow") {
		t.Errorf("incomplete record %+v %v", rec, err)
	}

	// Twice: byte-identical outputs.
	code, _ = labelRun(t, args...)
	if code != 1 {
		t.Fatalf("second run: exit status %d", code)
	}
	second := labelReadDir(t, out)
	for n, b := range first {
		if !bytes.Equal(b, second[n]) {
			t.Errorf("%s differs between runs", n)
		}
	}

	// Fix the bad sample, drop the incomplete one: exit 0, the stale error document is gone.
	for c, ch := range pipeline.ChannelNames {
		labelWritePNG(t, filepath.Join(in, "bad_"+ch+".png"), 64, int64(100+c))
	}
	for _, ch := range []string{"red", "green", "blue"} {
		if err := os.Remove(filepath.Join(in, "part_"+ch+".png")); err != nil {
			t.Fatal(err)
		}
	}
	csvPath := filepath.Join(t.TempDir(), "sub", "kaggle.csv")
	code, stderr = labelRun(t, "label", in, "--model", manifest, "--out", out, "--csv", csvPath, "--batch", "4")
	if code != 0 {
		t.Fatalf("clean run: exit status %d\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "bad.error.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale bad.error.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "bad.json")); err != nil {
		t.Errorf("bad.json: %v", err)
	}
	rows, err := os.ReadFile(csvPath)
	if err != nil || !strings.HasPrefix(string(rows), "Id,Predicted\nbad,") || strings.Count(string(rows), "\n") != 7 {
		t.Errorf("csv %q %v", rows, err)
	}
	// Batch size does not change the labels (same bytes for an unchanged sample).
	again := labelReadDir(t, out)
	if !bytes.Equal(again["s3.json"], first["s3.json"]) {
		t.Error("s3.json changed with the batch size")
	}
}

func TestLabelBadUsage(t *testing.T) {
	in := t.TempDir()
	if code, stderr := labelRun(t, "label", in, "--model", "x.json"); code != 2 || !strings.Contains(stderr, "no channel images") {
		t.Errorf("empty dir: %d %s", code, stderr)
	}
	labelWritePNG(t, filepath.Join(in, "a_red.png"), 64, 1)
	if code, stderr := labelRun(t, "label", in); code != 2 || !strings.Contains(stderr, "--model") {
		t.Errorf("no model: %d %s", code, stderr)
	}
	if code, stderr := labelRun(t, "label", in, "--model", filepath.Join(in, "missing.json")); code != 2 || !strings.Contains(stderr, "missing.json") {
		t.Errorf("missing manifest: %d %s", code, stderr)
	}
	if code, stderr := labelRun(t, "label", in, "--model", "m.json", "--batch", "0"); code != 2 || !strings.Contains(stderr, "--batch") {
		t.Errorf("batch 0: %d %s", code, stderr)
	}
	manifest := labelModelSet(t)
	t.Setenv("HPA_ORT_PROVIDER", "cuda")
	// The provider comes from the environment; a CPU build refuses it clearly, a GPU build runs (and
	// exits 1 for the incomplete sample).
	code, stderr := labelRun(t, "label", in, "--model", manifest, "--out", t.TempDir())
	if !(code == 2 && strings.Contains(stderr, `execution provider "cuda" unavailable`)) && code != 1 {
		t.Errorf("cuda from env: %d %s", code, stderr)
	}
}

func TestLabelConfigFileAndEnv(t *testing.T) {
	manifest := labelModelSet(t)
	in := t.TempDir()
	for c, ch := range pipeline.ChannelNames {
		labelWritePNG(t, filepath.Join(in, "x_"+ch+".png"), 64, int64(c))
	}
	out := filepath.Join(t.TempDir(), "from-config")
	conf := filepath.Join(t.TempDir(), "hpa.yaml")
	yaml := fmt.Sprintf("label:\n  model: %s\n  out: %s\n  batch: 0\n", manifest, out)
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// batch 0 from the file is refused ...
	if code, stderr := labelRun(t, "--config", conf, "label", in); code != 2 || !strings.Contains(stderr, "--batch must be at least 1") {
		t.Fatalf("batch 0 from config: %d %s", code, stderr)
	}
	// ... the environment beats the file ...
	t.Setenv("HPA_LABEL_BATCH", "3")
	if code, stderr := labelRun(t, "--config", conf, "label", in); code != 0 {
		t.Fatalf("config + env: %d %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "x.json")); err != nil {
		t.Errorf("label not written to the configured out dir: %v", err)
	}
	// ... and a flag beats the environment.
	t.Setenv("HPA_LABEL_BATCH", "0")
	if code, stderr := labelRun(t, "--config", conf, "label", in, "--batch", "1"); code != 0 {
		t.Errorf("flag over env: %d %s", code, stderr)
	}
}

// labelRealDir is the committed real-data fixture testdata/hpa-real.
func labelRealDir(t *testing.T) string {
	t.Helper()
	return testenv.HPAFixture(t)
}

// TestLabelRealImages labels a sample assembled from four real 512 px HPA channel images (the
// shared sample holds one channel per id), resized to the model's 64 px input.
func TestLabelRealImages(t *testing.T) {
	src := filepath.Join(labelRealDir(t), "test_sample")
	ents, err := os.ReadDir(src)
	if err != nil || len(ents) < 4 {
		t.Fatalf("%s: %v", src, err)
	}
	in := t.TempDir()
	for c, ch := range pipeline.ChannelNames {
		b, err := os.ReadFile(filepath.Join(src, ents[c].Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in, "real_"+ch+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	code, stderr := labelRun(t, "label", in, "--model", labelModelSet(t), "--out", out)
	if code != 0 {
		t.Fatalf("exit status %d\n%s", code, stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "real.json"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := labels.ParseLabel(b)
	if err != nil {
		t.Fatal(err)
	}
	for c, s := range l.Sources {
		want, err := labels.DescribeFile(pipeline.Channel(c), filepath.Join(src, ents[c].Name()))
		if err != nil || s.SHA256 != want.SHA256 || s.Size != want.Size {
			t.Errorf("source %d: %+v, want the digest of %s", c, s, ents[c].Name())
		}
	}
}

func TestLabelOutputWriteFailure(t *testing.T) {
	in := t.TempDir()
	for _, id := range []string{"a", "b", "c"} {
		for c, ch := range pipeline.ChannelNames {
			labelWritePNG(t, filepath.Join(in, id+"_"+ch+".png"), 64, int64(c))
		}
	}
	out := t.TempDir()
	// A directory where the label's temporary file must go: the write fails, the run stops with
	// status 2 naming the file, and the loader goroutine is released.
	if err := os.Mkdir(filepath.Join(out, "a.json.tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, stderr := labelRun(t, "label", in, "--model", labelModelSet(t), "--out", out, "--batch", "1")
	if code != 2 || !strings.Contains(stderr, "a.json") {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
}

// The decode.* keys reach hpa label: a pixel limit below the images' size fails every sample as
// too_large, named in its error JSON.
func TestLabelUsesDecodeConfig(t *testing.T) {
	dir := t.TempDir()
	if _, err := synth.Generate(context.Background(), synth.Options{Out: dir, Samples: 2, Size: 32, Seed: 3, Workers: 1}); err != nil {
		t.Fatal(err)
	}
	set := filepath.Join(t.TempDir(), "set")
	if out, err := runCLI(t, "model", "export", "--arch", "seresnext_tiny", "--out", set, "--size", "32"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out := t.TempDir()
	t.Setenv("HPA_DECODE_MAX_PIXELS", "100")
	code, stderr := labelRun(t, "label", filepath.Join(dir, "train"), "--model", filepath.Join(set, "manifest.json"), "--out", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, stderr)
	}
	errs, _ := filepath.Glob(filepath.Join(out, "*.error.json"))
	if len(errs) != 2 {
		t.Fatalf("%d error files", len(errs))
	}
	b, _ := os.ReadFile(errs[0])
	if !strings.Contains(string(b), `"kind": "too_large"`) {
		t.Errorf("error JSON:\n%s", b)
	}
}
