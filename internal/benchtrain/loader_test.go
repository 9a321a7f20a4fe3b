package benchtrain

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/train"
)

func loaderOpts(t *testing.T, dir string) LoaderOptions {
	s := preset(t, "seresnext_tiny")
	return LoaderOptions{DataDir: dir, Spec: s, Size: 32, Batch: 5, Workers: 3, Seed: 7,
		Augment: train.RecipeAugment(), Norm: pipeline.Norm{Mean: []float32{0.1, 0.2, 0.3, 0.4}, Std: []float32{0.5, 0.5, 0.25, 0.25}}}
}

// Without augmentation, every prepared input is the normalized resize of the sample's channels in
// input order, and the targets are its labels: checked against the pipeline directly.
func TestLoaderPreparesTheTrainerInputs(t *testing.T) {
	dir := synthData(t)
	o := loaderOpts(t, dir)
	o.Augment = train.Augment{}
	labels, err := labels.ReadTargetsFile(filepath.Join(dir, "train.csv"))
	if err != nil {
		t.Fatal(err)
	}
	complete, _, err := pipeline.ScanDir(train.ImageDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][4]string{}
	for _, s := range complete {
		files[s.ID] = s.Files
	}
	per := 4 * 32 * 32
	seen := map[[2]int]bool{}
	r, err := measureLoader(context.Background(), o, func(epoch, first int, x, y []float32) {
		for j := range len(x) / per {
			ex := first + j
			seen[[2]int{epoch, ex}] = true
			img, err := pipeline.LoadSample(labels[ex].ID, files[labels[ex].ID], pipeline.DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for c := range 4 {
				p := pipeline.Resize(img.Planes[c], 32, 32)
				for i, v := range p.Pix {
					want := (float32(v)/255 - o.Norm.Mean[c]) / o.Norm.Std[c]
					if got := x[j*per+c*1024+i]; math.Abs(float64(got-want)) > 1e-5 {
						t.Fatalf("epoch %d sample %d channel %d pixel %d: %v, want %v", epoch, ex, c, i, got, want)
					}
				}
			}
			hot := map[int]bool{}
			for _, k := range labels[ex].Labels {
				hot[k] = true
			}
			for k := range 28 {
				if (y[j*28+k] == 1) != hot[k] {
					t.Fatalf("sample %d class %d: target %v, labels %v", ex, k, y[j*28+k], labels[ex].Labels)
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Samples != 12 || len(seen) != 24 || r.Cold <= 0 || r.Cached <= 0 || r.ColdPerSecond() <= 0 ||
		r.ColdCPU <= 0 || r.Cores != min(3, runtime.NumCPU()) || r.ColdPerSecondCPU() <= 0 {
		t.Fatalf("result %+v, %d (epoch, sample) pairs seen", r, len(seen))
	}
}

// With augmentation the batches are those of the trainer's seeded RNG, whatever the worker count.
func TestLoaderAugmentsDeterministically(t *testing.T) {
	dir := synthData(t)
	collect := func(workers int) map[[2]int][]float32 {
		o := loaderOpts(t, dir)
		o.Workers, o.Samples = workers, 7
		got := map[[2]int][]float32{}
		r, err := measureLoader(context.Background(), o, func(epoch, first int, x, _ []float32) {
			got[[2]int{epoch, first}] = append([]float32(nil), x...)
		})
		if err != nil {
			t.Fatal(err)
		}
		if r.Samples != 7 {
			t.Fatalf("samples %d, want 7", r.Samples)
		}
		return got
	}
	a, b := collect(1), collect(4)
	if len(a) != 4 { // 2 epochs x batches of 5 + 2
		t.Fatalf("%d batches, want 4", len(a))
	}
	for k, x := range a {
		y := b[k]
		if len(x) != len(y) {
			t.Fatalf("batch %v: %d vs %d values", k, len(x), len(y))
		}
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("batch %v differs between 1 and 4 workers at %d", k, i)
			}
		}
	}
	// Epochs 0 and 1 augment differently (AugmentRNG depends on the epoch).
	x0, x1 := a[[2]int{0, 0}], a[[2]int{1, 0}]
	same := true
	for i := range x0 {
		if x0[i] != x1[i] {
			same = false
			break
		}
	}
	if same {
		t.Error("epoch 0 and epoch 1 batches are identical: augmentation not applied")
	}
}

func TestLoaderErrors(t *testing.T) {
	dir := synthData(t)
	var oe *OptionsError
	o := loaderOpts(t, dir)
	o.Workers = 0
	if _, err := MeasureLoader(context.Background(), o); !errors.As(err, &oe) {
		t.Errorf("workers 0: %v", err)
	}
	o = loaderOpts(t, dir)
	o.Norm.Std = o.Norm.Std[:2]
	if _, err := MeasureLoader(context.Background(), o); !errors.As(err, &oe) {
		t.Errorf("short normalization: %v", err)
	}
	o = loaderOpts(t, dir)
	o.Samples = 99
	var de *DataError
	if _, err := MeasureLoader(context.Background(), o); !errors.As(err, &de) || !strings.Contains(err.Error(), "99 samples wanted") {
		t.Errorf("too many samples: %v", err)
	}

	// A sample of train.csv without its images, and a corrupt image: both name the problem.
	broken := t.TempDir()
	if err := os.CopyFS(broken, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	labels, err := labels.ReadTargetsFile(filepath.Join(broken, "train.csv"))
	if err != nil {
		t.Fatal(err)
	}
	green := filepath.Join(broken, "train", labels[2].ID+"_green.png")
	if err := os.WriteFile(green, []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	o = loaderOpts(t, broken)
	var ie *pipeline.InputError
	if _, err := MeasureLoader(context.Background(), o); !errors.As(err, &ie) || !strings.Contains(err.Error(), green) {
		t.Errorf("corrupt image: want an InputError naming %s, got %v", green, err)
	}
	if err := os.Remove(green); err != nil {
		t.Fatal(err)
	}
	if _, err := MeasureLoader(context.Background(), o); !errors.As(err, &de) || !strings.Contains(err.Error(), labels[2].ID) {
		t.Errorf("missing image: want a DataError naming %s, got %v", labels[2].ID, err)
	}
	if _, err := MeasureLoader(context.Background(), loaderOpts(t, t.TempDir())); err == nil || !strings.Contains(err.Error(), "train.csv") {
		t.Errorf("no train.csv: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := MeasureLoader(ctx, loaderOpts(t, dir)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
