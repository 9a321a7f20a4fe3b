package benchtrain

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/synth"
	"github.com/hpa-plates/hpa/internal/testenv"
	"github.com/hpa-plates/hpa/internal/train"
)

// BenchmarkTrainStepGoVsPython: each iteration is one round of `hpa bench train` (seresnext_tiny,
// 128 px, batch 8, 1 thread, 3 timed steps a side, tcmalloc on both). Metrics: the go/python ratios
// of the median step's process CPU time (goal <= 1.05) and wall time.
func BenchmarkTrainStepGoVsPython(b *testing.B) {
	l := openLib(b)
	py := pythonWithTorch(b)
	preload, err := FindTCMalloc()
	if err != nil {
		b.Fatal(err)
	}
	so := StepOptions{Spec: preset(b, "seresnext_tiny"), Size: 128, Batch: 8, Steps: 3, Warmup: 1, Seed: 1}
	var g, p Steps
	b.ResetTimer()
	for b.Loop() {
		gs, err := GoSteps(l, so)
		if err != nil {
			b.Fatal(err)
		}
		ps, err := PythonSteps(context.Background(), PyOptions{StepOptions: so, Threads: 1, Python: py,
			Script: filepath.Join(testenv.RepoRoot(b), DefaultScript), Preload: preload})
		if err != nil {
			b.Fatal(err)
		}
		g.Append(gs)
		p.Append(ps.Steps)
	}
	b.ReportMetric(ratio(g.MedianCPU(), p.MedianCPU()), "go/python-cpu")
	b.ReportMetric(ratio(g.MedianWall(), p.MedianWall()), "go/python-wall")
	b.ReportMetric(float64(g.MedianWall().Microseconds())/1000, "go-ms/step")
}

// BenchmarkLoaderVsStep: the data loader (2 workers, decoding 256 px synthetic PNGs to 128 px,
// default augmentation) against the Go train step of seresnext_tiny at batch 8. Metric: loader
// samples/s over step samples/s (goal >= 1.5), decoding and from cached planes.
func BenchmarkLoaderVsStep(b *testing.B) {
	l := openLib(b)
	dir := b.TempDir()
	if _, err := synth.Generate(context.Background(), synth.Options{Out: dir, Samples: 32, Size: 256, Seed: 1, Workers: 2}); err != nil {
		b.Fatal(err)
	}
	spec := preset(b, "seresnext_tiny")
	lo := LoaderOptions{DataDir: dir, Spec: spec, Size: 128, Batch: 8, Workers: 2, Seed: 1, Augment: train.RecipeAugment(),
		Norm: pipeline.Norm{Mean: []float32{.08, .08, .08, .08}, Std: []float32{.13, .13, .13, .13}}}
	so := StepOptions{Spec: spec, Size: 128, Batch: 8, Steps: 3, Warmup: 1, Seed: 1}
	var steps Steps
	var n int
	var cold, cached, coldCPU time.Duration
	cores := 0
	b.ResetTimer()
	for b.Loop() {
		r, err := MeasureLoader(context.Background(), lo)
		if err != nil {
			b.Fatal(err)
		}
		n, cold, cached, coldCPU, cores = n+r.Samples, cold+r.Cold, cached+r.Cached, coldCPU+r.ColdCPU, r.Cores
		s, err := GoSteps(l, so)
		if err != nil {
			b.Fatal(err)
		}
		steps.Append(s)
	}
	step := perSecond(so.Batch, steps.MedianWall())
	b.ReportMetric(divf(perSecond(n, cold), step), "loader/step")
	b.ReportMetric(divf(perSecond(n, cached), step), "cached-loader/step")
	b.ReportMetric(perSecond(n, cold), "loader-samples/s")
	b.ReportMetric(divf(perSecond(cores*n, coldCPU), perSecond(so.Batch, steps.MedianCPU())), "cpu-basis-loader/step")
}
