package benchtrain

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/testenv"
	"github.com/hpa-plates/hpa/internal/train"
)

func TestMedian(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{{nil, 0}, {ms(5), 5 * time.Millisecond}, {ms(9, 1, 5), 5 * time.Millisecond}, {ms(9, 1, 5, 3), 4 * time.Millisecond}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestResultRatiosAndTable(t *testing.T) {
	d := func(ms ...float64) []time.Duration {
		var out []time.Duration
		for _, m := range ms {
			out = append(out, time.Duration(m*float64(time.Millisecond)))
		}
		return out
	}
	spec := preset(t, "seresnext_tiny")
	r := Result{
		Opts:       Options{StepOptions: StepOptions{Spec: spec, Size: 64, Batch: 10, Steps: 3}, Threads: 1, Rounds: 1, Loader: LoaderOptions{Workers: 2}},
		SpecParams: spec.ParamCount(),
		Go:         Steps{Wall: d(110, 100, 300), CPU: d(103, 102, 104)},
		Py:         PyResult{Params: spec.ParamCount(), Steps: Steps{Wall: d(100, 50, 100), CPU: d(100, 101, 99)}},
		Loader: LoaderResult{Samples: 40, Cold: 200 * time.Millisecond, Cached: 20 * time.Millisecond,
			ColdCPU: 250 * time.Millisecond, CachedCPU: 30 * time.Millisecond, Cores: 2},
		Together: TogetherResult{Samples: 40, Loader: 250 * time.Millisecond, Steps: 4, StepWall: 500 * time.Millisecond, Batch: 10},
	}
	if got := r.StepRatioWall(); got != 1.1 {
		t.Errorf("wall ratio %v, want 1.1 (medians 110 / 100)", got)
	}
	if got := r.StepRatioCPU(); got < 1.0299 || got > 1.0301 {
		t.Errorf("CPU ratio %v, want 1.03", got)
	}
	// Step: 10 samples per 110 ms = 90.9/s; loader 200/s decoding, 2000/s cached.
	if got := r.LoaderRatio(); got < 2.199 || got > 2.201 {
		t.Errorf("loader ratio %v, want 2.2", got)
	}
	// CPU basis: 2 cores x 40 samples / 250 ms = 320/s; step 10 per 103 ms CPU = 97.09/s.
	if got := r.LoaderRatioCPU(); got < 3.2959 || got > 3.2961 {
		t.Errorf("loader CPU-basis ratio %v, want 3.296", got)
	}
	// Together: the loader 40 samples in 250 ms = 160/s while the step did 4 x 10 in 500 ms = 80/s.
	if got := r.LoaderRatioTogether(); got < 1.999 || got > 2.001 {
		t.Errorf("together ratio %v, want 2.0", got)
	}
	if !r.StepPass() || !r.LoaderPass() {
		t.Errorf("both goals are met: step %v loader %v", r.StepPass(), r.LoaderPass())
	}
	var b bytes.Buffer
	r.Write(&b)
	for _, want := range []string{"params: spec 395228, python module 395228 (match)", "1.030  goal <= 1.05  PASS", "(wall 1.100)",
		"(together) 2.00   goal >= 1.50  PASS", "(isolated 2.20, cached 22.00, CPU-time basis 3.30)", "6.25 ms CPU/sample, 2 cores", "320.0", "110.0 ms", "200.0"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}

	r.Go.CPU = d(120, 120, 120)
	r.Together.Loader = time.Second // 40/s against 80/s: 0.5; the isolated ratio alone would pass
	r.Py.Params++
	b.Reset()
	r.Write(&b)
	if r.StepPass() || r.LoaderPass() {
		t.Error("both goals are missed")
	}
	for _, want := range []string{"goal <= 1.05  FAIL", "goal >= 1.50  FAIL", "(MISMATCH)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	r.Loader, r.LoaderError = LoaderResult{}, errors.New("disk on fire")
	b.Reset()
	r.Write(&b)
	if r.LoaderPass() || !strings.Contains(b.String(), "loader failed: disk on fire") {
		t.Errorf("loader error not shown:\n%s", b.String())
	}
}

func TestGoSteps(t *testing.T) {
	l := openLib(t)
	o := StepOptions{Spec: preset(t, "seresnext_tiny"), Size: 64, Batch: 4, Steps: 3, Warmup: 1, Seed: 5}
	s, err := GoSteps(l, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Wall) != 3 || len(s.CPU) != 3 || len(s.Loss) != 3 {
		t.Fatalf("%d/%d/%d timings", len(s.Wall), len(s.CPU), len(s.Loss))
	}
	for i := range 3 {
		if s.Wall[i] <= 0 || s.CPU[i] <= 0 || !(s.Loss[i] > 0) {
			t.Errorf("step %d: wall %v cpu %v loss %v", i, s.Wall[i], s.CPU[i], s.Loss[i])
		}
	}
	// The same batch over and over: SGD drives its loss down.
	if s.Loss[2] >= s.Loss[0] {
		t.Errorf("loss did not fall on a repeated batch: %v", s.Loss)
	}
	again, err := GoSteps(l, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if again.Loss[i] != s.Loss[i] {
			t.Errorf("seeded runs differ at step %d: %v vs %v", i, s.Loss, again.Loss)
		}
	}
	bad := o
	bad.Size = 8
	var oe *OptionsError
	if _, err := GoSteps(l, bad); !errors.As(err, &oe) {
		t.Errorf("size 8: %v", err)
	}
}

// The Python model has the spec's timm state dict (names, shapes, order) and parameter count for
// both stems and a full-size preset, and its steps train.
func TestPythonModelIsTheSpec(t *testing.T) {
	py := pythonWithTorch(t)
	script := filepath.Join(testenv.RepoRoot(t), DefaultScript)
	conv := preset(t, "seresnext_tiny")
	conv.Stem = model.StemConv
	for _, spec := range []model.Spec{preset(t, "seresnext_tiny"), conv, preset(t, "seresnext50_32x4d")} {
		t.Run(spec.Name+"_"+string(spec.Stem), func(t *testing.T) {
			steps, size := 3, 64
			if spec.Name == "seresnext50_32x4d" {
				steps, size = 1, 32
			}
			r, err := PythonSteps(context.Background(), PyOptions{StepOptions: StepOptions{Spec: spec, Size: size, Batch: 2, Steps: steps, Warmup: 0, Seed: 1},
				Threads: 1, Python: py, Script: script})
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckArch(spec, r); err != nil {
				t.Fatal(err)
			}
			if r.Threads != 1 || !r.InplaceReLU || len(r.Wall) != steps {
				t.Errorf("threads %d inplace %v steps %d", r.Threads, r.InplaceReLU, len(r.Wall))
			}
			if steps == 3 && r.Loss[2] >= r.Loss[0] {
				t.Errorf("loss did not fall on a repeated batch: %v", r.Loss)
			}
		})
	}
}

func TestRunBothHalves(t *testing.T) {
	l := openLib(t)
	py := pythonWithTorch(t)
	preload, err := FindTCMalloc()
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		StepOptions: StepOptions{Spec: preset(t, "seresnext_tiny"), Size: 64, Batch: 2, Steps: 2, Warmup: 1, Seed: 1},
		Threads:     1, Rounds: 2, Python: py, Script: filepath.Join(testenv.RepoRoot(t), DefaultScript), Preload: preload,
		Loader: LoaderOptions{DataDir: synthData(t), Workers: 2, Augment: train.RecipeAugment(),
			Norm: pipeline.Norm{Mean: []float32{.1, .1, .1, .1}, Std: []float32{.2, .2, .2, .2}}},
	}
	var log bytes.Buffer
	r, err := Run(context.Background(), l, o, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(r.Go.Wall) != 4 || len(r.Py.Wall) != 4 || !r.GoTCMalloc || !r.PyTCMalloc || r.Py.Params != r.SpecParams {
		t.Errorf("result: %d go steps, %d python steps, tcmalloc %v/%v, params %d/%d",
			len(r.Go.Wall), len(r.Py.Wall), r.GoTCMalloc, r.PyTCMalloc, r.Py.Params, r.SpecParams)
	}
	if r.LoaderError != nil || r.Loader.Samples != 12 || r.StepRatioCPU() <= 0 || r.LoaderRatio() <= 0 {
		t.Errorf("loader %+v (%v), ratios %v %v", r.Loader, r.LoaderError, r.StepRatioCPU(), r.LoaderRatio())
	}
	if r.Together.Samples%12 != 0 || r.Together.Samples == 0 || r.Together.Steps < 1 || r.LoaderRatioTogether() <= 0 {
		t.Errorf("together %+v, ratio %v", r.Together, r.LoaderRatioTogether())
	}
	if strings.Count(log.String(), "round ") != 4 {
		t.Errorf("progress:\n%s", log.String())
	}
	o.Rounds = 0
	var oe *OptionsError
	if _, err := Run(context.Background(), l, o, nil); !errors.As(err, &oe) {
		t.Errorf("rounds 0: %v", err)
	}
}
