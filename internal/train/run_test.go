package train

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
	"github.com/hpa-plates/hpa/internal/model/torch"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/synth"
	"github.com/hpa-plates/hpa/internal/testenv"
	"github.com/hpa-plates/hpa/internal/train/folds"
)

var (
	libOnce sync.Once
	lib     *torch.Lib
	libErr  error
)

// torchLib opens the training shim; missing, the test is skipped outside CI and fails in CI.
func torchLib(t testing.TB) *torch.Lib {
	t.Helper()
	p := testenv.NativeLibrary(t, "HPA_TORCH_LIBRARY", torch.DefaultLibrary)
	libOnce.Do(func() {
		lib, libErr = torch.Open(p)
		if libErr == nil {
			libErr = lib.SetNumThreads(1)
		}
	})
	if libErr != nil {
		t.Fatal(libErr)
	}
	return lib
}

func synthData(t testing.TB, n, size int, seed int64) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := synth.Generate(context.Background(), synth.Options{Out: dir, Samples: n, Size: size, Seed: seed, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func tinyConfig(t testing.TB, data, out string) Config {
	spec, err := model.Preset("seresnext_tiny")
	if err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig(spec)
	c.DataDir, c.OutDir = data, out
	c.Size, c.Folds, c.Cycles, c.EpochsPerCycle, c.BatchSize = 32, 2, 2, 2, 8
	c.TTAViews = 2
	c.Name, c.Version = "test", "v0"
	c.Snapshots = "all" // the tests count K x C members; TestRunWritesModelSet also finishes with auto
	return c
}

func backends(t testing.TB) (BackendFactory, Exporter) {
	return backendsFor(t, DefaultConfig(model.Spec{}))
}

// backendsFor builds the libtorch backend factory with the config's optimizer settings.
func backendsFor(t testing.TB, c Config) (BackendFactory, Exporter) {
	l := torchLib(t)
	newModel := func(spec model.Spec, seed int64) (Backend, error) {
		return torch.NewBackend(l, spec, "cpu", uint64(seed), torch.BackendOptions{Optimizer: c.Optimizer, LR: c.LR,
			Momentum: c.Momentum, WeightDecay: c.WeightDecay, Nesterov: c.Nesterov, Loss: c.Loss})
	}
	export := func(path string, spec model.Spec, w model.Weights, size int) error {
		return onnx.ExportFile(path, spec, w, onnx.ExportOptions{InputSize: size, InputName: "input", OutputName: "logits", Opset: 17})
	}
	return newModel, export
}

func readCkpt(t testing.TB, out string, f int) *checkpoint {
	ck := &checkpoint{}
	ok, err := loadGob(filepath.Join(out, "checkpoints", "fold"+string(rune('0'+f))+".ckpt"), ck)
	if err != nil || !ok {
		t.Fatalf("checkpoint fold %d: %v %v", f, ok, err)
	}
	return ck
}

func TestRunWritesModelSet(t *testing.T) {
	data := synthData(t, 48, 32, 5)
	out := t.TempDir()
	newModel, export := backends(t)
	var steps int
	res, err := Run(context.Background(), tinyConfig(t, data, out), newModel, export, func(p Progress) {
		if p.Phase == "train" {
			steps++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// 2 folds x 2 cycles = 4 members, each file present and matching its sha256.
	m, err := model.ReadManifest(res.ManifestPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Members) != 4 {
		t.Fatalf("%d members", len(m.Members))
	}
	for _, mem := range m.Members {
		sum, err := model.FileSHA256(filepath.Join(out, mem.File))
		if err != nil || sum != mem.SHA256 {
			t.Errorf("member %s: %v", mem.File, err)
		}
		info, err := onnx.InfoFile(filepath.Join(out, mem.File))
		if err != nil || info.ParamCount != int64(m.Arch.ParamCount()) {
			t.Errorf("member %s info: %+v %v", mem.File, info, err)
		}
		// Each member carries thresholds chosen on its own OOF predictions.
		if mem.Thresholds == nil || (mem.Thresholds.Mode != "uniform" && len(mem.Thresholds.PerClass) != m.Arch.NumClasses) {
			t.Errorf("member %s thresholds %+v", mem.File, mem.Thresholds)
		}
	}
	// 24 training samples per fold / batch 8 = 3 steps per epoch, x 4 epochs x 2 folds.
	if steps != 24 {
		t.Errorf("%d train steps, want 24", steps)
	}
	// 2 snapshots per fold: each fold's snapshot ensemble is compared with its best snapshot.
	if fe := res.Report.FoldEnsembles; len(fe) != 2 || fe[0].BestMember == "" || fe[1].Fold != 1 {
		t.Errorf("fold ensembles %+v", fe)
	}
	if md, _ := os.ReadFile(filepath.Join(out, "report.md")); !strings.Contains(string(md), "fold 1: snapshot ensemble") {
		t.Errorf("report lacks the fold ensemble lines")
	}
	if el := res.Report.EpochLoss; len(el) != 2 || len(el[0]) != 4 || len(el[1]) != 4 {
		t.Errorf("epoch losses %v, want 2 folds x 4 epochs", el)
	}
	if m.TTAViews != 2 || m.InputSize != 32 || m.Metrics["oof_samples"] != 48 {
		t.Errorf("manifest %+v", m)
	}
	for _, f := range []string{"report.md", "report.json", "curves.png", "folds.csv"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if md, _ := os.ReadFile(filepath.Join(out, "report.md")); !strings.Contains(string(md), "| 0 | Nucleoplasm |") {
		t.Errorf("report lacks the per-class table:\n%s", md)
	}
	// Loss curve: the last epoch's mean is below the first step's loss.
	ck := readCkpt(t, out, 0)
	if len(ck.Losses) != 12 || ck.Losses[len(ck.Losses)-1] >= ck.Losses[0] {
		t.Errorf("fold 0 losses %v", ck.Losses)
	}
	if res.Report.Snapshots != nil {
		t.Errorf("snapshots all: the report records a selection %+v", res.Report.Snapshots)
	}

	// Finished again with snapshot selection (nothing is retrained): the set keeps each fold's last
	// k snapshots, k chosen on the OOF macro-F1 the report records for every k.
	cfg := tinyConfig(t, data, out)
	cfg.Snapshots = "auto"
	res, err = Run(context.Background(), cfg, newModel, export, func(p Progress) {
		if p.Phase == "train" {
			t.Fatalf("finishing again trained: %+v", p)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	sel := res.Report.Snapshots
	if sel == nil || sel.Of != 2 || sel.Kept < 1 || sel.Kept > 2 || len(sel.MacroF1ByKept) != 2 {
		t.Fatalf("snapshot selection %+v", sel)
	}
	best := 1
	if sel.MacroF1ByKept[2] > sel.MacroF1ByKept[1]+SnapshotMargin {
		best = 2
	}
	if sel.Kept != best {
		t.Errorf("kept %d, scores %v", sel.Kept, sel.MacroF1ByKept)
	}
	if got := len(res.Manifest.Members); got != 2*sel.Kept {
		t.Errorf("%d members, want %d", got, 2*sel.Kept)
	}
	for _, mem := range res.Manifest.Members {
		if mem.Snapshot < 2-sel.Kept {
			t.Errorf("member %s is not among the last %d snapshots", mem.File, sel.Kept)
		}
	}
	if res.Report.MacroF1 != sel.MacroF1ByKept[sel.Kept] {
		t.Errorf("the set's OOF macro-F1 %v is not the selection's %v", res.Report.MacroF1, sel.MacroF1ByKept[sel.Kept])
	}
	if md, _ := os.ReadFile(filepath.Join(out, "report.md")); !strings.Contains(string(md), "- snapshots: the set keeps the last") {
		t.Errorf("report lacks the snapshot line")
	}
}

// Killed mid-run (context cancelled in the middle of an epoch) and started again on the same output,
// training resumes from the last epoch checkpoint and produces exactly the losses and members of an
// uninterrupted run.
func TestRunResumesExactly(t *testing.T) {
	data := synthData(t, 40, 32, 9)
	newModel, export := backends(t)
	ref := t.TempDir()
	cfg := tinyConfig(t, data, ref)
	cfg.Folds, cfg.TrainFolds = 2, []int{0}
	if _, err := Run(context.Background(), cfg, newModel, export, nil); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cfg.OutDir = out
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Run(ctx, cfg, newModel, export, func(p Progress) {
		if p.Phase == "train" && p.Step == 4 { // first step of epoch 3 of 4 (20 samples / batch 8 = 2 steps per epoch)
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	partial := readCkpt(t, out, 0)
	if partial.Done || partial.NextStep != 4 {
		t.Fatalf("partial checkpoint at step %d done=%v", partial.NextStep, partial.Done)
	}
	res, err := Run(context.Background(), cfg, newModel, export, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := readCkpt(t, ref, 0), readCkpt(t, out, 0)
	if !slices.Equal(a.Losses, b.Losses) {
		t.Fatalf("resumed losses differ:\n%v\n%v", a.Losses, b.Losses)
	}
	for i := range a.Members {
		if a.Members[i].SHA256 != b.Members[i].SHA256 {
			t.Errorf("member %s differs after resume", a.Members[i].File)
		}
	}
	if len(res.Manifest.Members) != 2 {
		t.Errorf("%d members", len(res.Manifest.Members))
	}
}

func TestRunBadData(t *testing.T) {
	data := synthData(t, 12, 32, 2)
	newModel, export := backends(t)
	// Remove one channel of one sample: fatal by default, skipped (and listed) with SkipMissing.
	imgs, _ := filepath.Glob(filepath.Join(data, "train", "*_yellow.png"))
	os.Remove(imgs[0])
	id := strings.TrimSuffix(filepath.Base(imgs[0]), "_yellow.png")
	cfg := tinyConfig(t, data, t.TempDir())
	cfg.Cycles, cfg.EpochsPerCycle, cfg.BatchSize = 1, 1, 4
	_, err := Run(context.Background(), cfg, newModel, export, nil)
	var miss *MissingImagesError
	if !errors.As(err, &miss) || len(miss.Missing) != 1 || !strings.Contains(miss.Missing[0], id) || !strings.Contains(err.Error(), "yellow") {
		t.Fatalf("want a missing-images error naming %s yellow, got %v", id, err)
	}
	cfg.SkipMissing = true
	res, err := Run(context.Background(), cfg, newModel, export, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 1 || res.Report.Samples != 11 {
		t.Errorf("skipped %v samples %d", res.Skipped, res.Report.Samples)
	}
	// An unknown class id in train.csv names the line.
	os.WriteFile(filepath.Join(data, "train.csv"), []byte("Id,Target\n"+id+",3 31\n"), 0o644)
	if _, err := Run(context.Background(), cfg, newModel, export, nil); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Errorf("unknown class id: %v", err)
	}
}

// A folds file (as `hpa folds` writes it, and as a run leaves in OutDir) replaces the stratified
// split; a sample without a fold is an error naming it.
func TestRunFoldsFile(t *testing.T) {
	data := synthData(t, 16, 32, 6)
	newModel, export := backends(t)
	first := t.TempDir()
	cfg := tinyConfig(t, data, first)
	cfg.Cycles, cfg.EpochsPerCycle, cfg.BatchSize, cfg.TrainFolds = 1, 1, 4, []int{0}
	if _, err := Run(context.Background(), cfg, newModel, export, nil); err != nil {
		t.Fatal(err)
	}
	// Move every sample of fold 1 to fold 0 except one: the split must follow the file.
	byID, err := folds.ReadFile(filepath.Join(first, "folds.csv"))
	if err != nil || len(byID) != 16 {
		t.Fatalf("folds.csv: %d rows, %v", len(byID), err)
	}
	ids := slices.Sorted(maps.Keys(byID))
	var b strings.Builder
	b.WriteString("Id,fold\n")
	for i, id := range ids {
		f := 0
		if i == 0 {
			f = 1
		}
		b.WriteString(id + "," + strconv.Itoa(f) + "\n")
	}
	ff := filepath.Join(t.TempDir(), "folds.csv")
	os.WriteFile(ff, []byte(b.String()), 0o644)
	cfg.OutDir, cfg.FoldsFile, cfg.TrainFolds = t.TempDir(), ff, []int{1}
	res, err := Run(context.Background(), cfg, newModel, export, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Metrics["oof_samples"] != 1 {
		t.Errorf("fold 1 validated %v samples, want the 1 the file put there", res.Manifest.Metrics["oof_samples"])
	}
	os.WriteFile(ff, []byte("Id,fold\n"+ids[0]+",0\n"), 0o644)
	cfg.OutDir = t.TempDir()
	if _, err := Run(context.Background(), cfg, newModel, export, nil); err == nil || !strings.Contains(err.Error(), "no fold for sample") {
		t.Errorf("incomplete folds file: %v", err)
	}
}

// A near-duplicate (the same images under another Id, one pixel changed) lands in the same fold as
// its original, and the report says so.
func TestRunKeepsNearDuplicatesTogether(t *testing.T) {
	data := synthData(t, 20, 32, 8)
	rows, err := labels.ReadTargetsFile(filepath.Join(data, "train.csv"))
	if err != nil {
		t.Fatal(err)
	}
	src, dup := rows[0].ID, "dup-"+rows[0].ID
	for _, ch := range pipeline.ChannelNames {
		b, err := os.ReadFile(filepath.Join(data, "train", src+"_"+ch+".png"))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		g := img.(*image.Gray)
		g.Pix[0] ^= 0x10
		var out bytes.Buffer
		png.Encode(&out, g)
		os.WriteFile(filepath.Join(data, "train", dup+"_"+ch+".png"), out.Bytes(), 0o644)
	}
	rows = append(rows, labels.Target{ID: dup, Labels: rows[0].Labels})
	f, _ := os.Create(filepath.Join(data, "train.csv"))
	labels.WriteTargets(f, rows)
	f.Close()
	newModel, export := backends(t)
	out := t.TempDir()
	cfg := tinyConfig(t, data, out)
	cfg.Cycles, cfg.EpochsPerCycle, cfg.BatchSize, cfg.TrainFolds = 1, 1, 4, []int{0}
	// Pick a seed whose split WITHOUT grouping separates the pair, so the assertion below can fail.
	order, _ := pipeline.ParseChannelOrder(pipeline.ChannelNames[:])
	d, _, err := loadDataset(data, 32, order, pipeline.DecodeOptions{}, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, id := range d.ids {
		pos[id] = i
	}
	for cfg.Seed = 1; ; cfg.Seed++ {
		plain, err := folds.StratifiedKFold(d.labels, 28, folds.Options{K: cfg.Folds, Seed: uint64(cfg.Seed)})
		if err != nil {
			t.Fatal(err)
		}
		if plain[pos[src]] != plain[pos[dup]] {
			break
		}
		if cfg.Seed > 50 {
			t.Fatal("no seed separates the pair without grouping")
		}
	}
	res, err := Run(context.Background(), cfg, newModel, export, nil)
	if err != nil {
		t.Fatal(err)
	}
	byID, err := folds.ReadFile(filepath.Join(out, "folds.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if byID[src] != byID[dup] {
		t.Errorf("near-duplicates split: %s in fold %d, %s in fold %d", src, byID[src], dup, byID[dup])
	}
	if !strings.Contains(strings.Join(res.Report.Warnings, "\n"), "near-duplicates (pHash within 6 bits): 1 groups holding 2 samples") {
		t.Errorf("report warnings: %v", res.Report.Warnings)
	}
}

// A corrupt image stops training with an error naming the file, from the hashing pass or from the
// loader (with near-duplicate hashing off), and nothing hangs.
func TestRunCorruptImage(t *testing.T) {
	data := synthData(t, 16, 32, 14)
	imgs, _ := filepath.Glob(filepath.Join(data, "train", "*_green.png"))
	bad := imgs[3]
	b, _ := os.ReadFile(bad)
	os.WriteFile(bad, b[:len(b)/2], 0o644)
	newModel, export := backends(t)
	for _, dedup := range []int{6, -1} {
		cfg := tinyConfig(t, data, t.TempDir())
		cfg.Cycles, cfg.EpochsPerCycle, cfg.BatchSize, cfg.DedupHamming = 1, 1, 4, dedup
		_, err := Run(context.Background(), cfg, newModel, export, nil)
		if err == nil || !strings.Contains(err.Error(), filepath.Base(bad)) || pipeline.KindOf(err) != pipeline.KindTruncated {
			t.Errorf("dedup %d: want a truncated-image error naming %s, got %v (kind %q)", dedup, filepath.Base(bad), err, pipeline.KindOf(err))
		}
	}
}
