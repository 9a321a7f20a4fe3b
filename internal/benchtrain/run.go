package benchtrain

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/hpa-plates/hpa/internal/model/torch"
)

// The goals the training benchmarks are measured against.
const (
	StepGoal   = 1.05 // Go+libtorch step time / PyTorch step time, at most
	LoaderGoal = 1.5  // loader samples/s / train-step samples/s, at least
)

// Options are one `hpa bench train` run.
type Options struct {
	StepOptions
	Threads   int // libtorch intra-op threads, both sides
	Rounds    int // Go and Python series alternate this many times (each with its own warm-up)
	Python    string
	Script    string
	Preload   string // LD_PRELOAD for the Python child (tcmalloc, as the hpa binary links it)
	NoInplace bool
	Loader    LoaderOptions // Spec, Size, Batch, Seed are taken from StepOptions
}

// Result holds the raw numbers and the two ratios.
type Result struct {
	Opts        Options
	Allocator   string // the Go side's malloc (torch.Allocator)
	GoTCMalloc  bool   // libtcmalloc mapped in this process
	LibVersion  string
	SpecParams  int
	Go          Steps
	Py          PyResult // Steps of every round
	PyTCMalloc  bool     // every child had tcmalloc mapped
	Loader      LoaderResult
	Together    TogetherResult // loader and step at the same time (the loader verdict)
	LoaderError error          // the loader half failed (the step half is still reported)
}

// StepRatioWall is median Go step wall time / median Python step wall time.
func (r Result) StepRatioWall() float64 { return ratio(r.Go.MedianWall(), r.Py.MedianWall()) }

// StepRatioCPU is the same ratio of process CPU time per step: on a shared machine it does not count
// the time the neighbours held the cores.
func (r Result) StepRatioCPU() float64 { return ratio(r.Go.MedianCPU(), r.Py.MedianCPU()) }

// StepSamplesPerSecond is the Go training step's throughput (batch / median wall time).
func (r Result) StepSamplesPerSecond() float64 { return perSecond(r.Opts.Batch, r.Go.MedianWall()) }

// LoaderRatioTogether is the decoding loader's samples/s over the train step's, both measured
// while running at the same time on the same cores, as in training: the verdict.
func (r Result) LoaderRatioTogether() float64 { return r.Together.Ratio() }

// LoaderRatio is the cold (decoding) loader's samples/s over the train step's, each measured
// alone (isolated; printed beside the verdict).
func (r Result) LoaderRatio() float64 {
	return divf(r.Loader.ColdPerSecond(), r.StepSamplesPerSecond())
}

// StepSamplesPerSecondCPU is the Go training step's throughput per its process CPU time (batch /
// median CPU time): with one libtorch thread, the step's rate on a core of its own.
func (r Result) StepSamplesPerSecondCPU() float64 { return perSecond(r.Opts.Batch, r.Go.MedianCPU()) }

// LoaderRatioCPU is LoaderRatio on the CPU-time basis (LoaderResult.ColdPerSecondCPU over
// StepSamplesPerSecondCPU): the ratio an idle machine with a core per worker would show, which
// the neighbours of a shared machine do not distort. Printed beside the wall ratio, which stays
// the verdict.
func (r Result) LoaderRatioCPU() float64 {
	return divf(r.Loader.ColdPerSecondCPU(), r.StepSamplesPerSecondCPU())
}

// LoaderRatioCached is the same with the loader serving cached planes (epochs after the first).
func (r Result) LoaderRatioCached() float64 {
	return divf(r.Loader.CachedPerSecond(), r.StepSamplesPerSecond())
}

func ratio(a, b time.Duration) float64 { return divf(float64(a), float64(b)) }

func divf(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// Run measures both halves: Rounds alternating series of Go and Python steps, then the loader.
// Progress lines go to log (may be nil). A failing Python half is returned as the error (with the Go
// numbers in the Result); a failing loader is kept in Result.LoaderError.
func Run(ctx context.Context, lib *torch.Lib, o Options, log io.Writer) (Result, error) {
	if log == nil {
		log = io.Discard
	}
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	if o.Threads < 1 || o.Rounds < 1 {
		return Result{}, &OptionsError{Reason: fmt.Sprintf("threads and rounds must be >= 1 (got %d, %d)", o.Threads, o.Rounds)}
	}
	if err := lib.SetNumThreads(o.Threads); err != nil {
		return Result{}, err
	}
	mapped, err := torch.AllocatorMapped()
	if err != nil {
		return Result{}, err
	}
	r := Result{Opts: o, Allocator: torch.Allocator, GoTCMalloc: mapped, LibVersion: lib.Version(),
		SpecParams: o.Spec.ParamCount(), PyTCMalloc: true}
	for round := 1; round <= o.Rounds; round++ {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		g, err := GoSteps(lib, o.StepOptions)
		if err != nil {
			return r, err
		}
		r.Go.Append(g)
		fmt.Fprintf(log, "round %d/%d: go     %s/step (median wall), %s CPU\n", round, o.Rounds,
			ms(g.MedianWall()), ms(g.MedianCPU()))
		p, err := PythonSteps(ctx, PyOptions{StepOptions: o.StepOptions, Threads: o.Threads, Python: o.Python,
			Script: o.Script, Preload: o.Preload, NoInplace: o.NoInplace})
		if err != nil {
			return r, err
		}
		if round == 1 {
			if err := CheckArch(o.Spec, p); err != nil {
				return r, err
			}
			if p.Threads != o.Threads {
				return r, &PythonError{Python: p.Python, Script: o.Script, Kind: "failed",
					Reason: fmt.Sprintf("child runs %d threads, asked for %d", p.Threads, o.Threads)}
			}
			steps := r.Py.Steps
			r.Py = p
			r.Py.Steps = steps
		}
		r.PyTCMalloc = r.PyTCMalloc && p.TCMalloc
		r.Py.Steps.Append(p.Steps)
		fmt.Fprintf(log, "round %d/%d: python %s/step (median wall), %s CPU\n", round, o.Rounds,
			ms(p.MedianWall()), ms(p.MedianCPU()))
	}
	lo := o.Loader
	lo.Spec, lo.Size, lo.Batch, lo.Seed = o.Spec, o.Size, o.Batch, o.Seed
	l, err := MeasureLoader(ctx, lo)
	if err != nil {
		r.LoaderError = err
	} else {
		r.Loader = l
		fmt.Fprintf(log, "loader: %d samples, %d workers: %.1f samples/s decoding, %.1f samples/s cached\n",
			l.Samples, lo.Workers, l.ColdPerSecond(), l.CachedPerSecond())
		tg, err := MeasureTogether(ctx, lib, o.StepOptions, lo)
		if err != nil {
			r.LoaderError = err
		} else {
			r.Together = tg
			fmt.Fprintf(log, "together: loader %.1f samples/s while the step ran %d steps at %.1f samples/s\n",
				tg.LoaderPerSecond(), tg.Steps, tg.StepPerSecond())
		}
	}
	return r, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// StepPass says whether the train-step goal is met: by the CPU-time ratio, which the neighbours
// of a shared machine do not distort; the wall ratio is printed beside it.
func (r Result) StepPass() bool { x := r.StepRatioCPU(); return x > 0 && x <= StepGoal }

// LoaderPass says whether the loader goal is met by the decoding (first-epoch) loader running
// together with the train step.
func (r Result) LoaderPass() bool {
	return r.LoaderError == nil && r.LoaderRatioTogether() >= LoaderGoal
}

// Write prints the table.
func (r Result) Write(w io.Writer) {
	o := r.Opts
	fmt.Fprintf(w, "\nhpa bench train: %s %dpx batch %d, %d threads, %d rounds x %d steps (after %d warm-up)\n",
		o.Spec.Name, o.Size, o.Batch, o.Threads, o.Rounds, o.Steps, o.Warmup)
	fmt.Fprintf(w, "go:     %s, allocator %s (tcmalloc mapped: %v)\n", r.LibVersion, r.Allocator, r.GoTCMalloc)
	fmt.Fprintf(w, "python: %s, torch %s, LD_PRELOAD=%s (tcmalloc mapped: %v), in-place ReLU: %v\n",
		r.Py.Python, r.Py.TorchVersion, orNone(o.Preload), r.PyTCMalloc, r.Py.InplaceReLU)
	match := "match"
	if r.Py.Params != r.SpecParams {
		match = "MISMATCH"
	}
	fmt.Fprintf(w, "params: spec %d, python module %d (%s)\n\n", r.SpecParams, r.Py.Params, match)
	fmt.Fprintf(w, "%-28s %14s %14s %14s\n", "train step (median)", "go+libtorch", "pytorch", "go/python")
	fmt.Fprintf(w, "%-28s %14s %14s %14.3f\n", "wall time", ms(r.Go.MedianWall()), ms(r.Py.MedianWall()), r.StepRatioWall())
	fmt.Fprintf(w, "%-28s %14s %14s %14.3f\n", "process CPU time", ms(r.Go.MedianCPU()), ms(r.Py.MedianCPU()), r.StepRatioCPU())
	fmt.Fprintf(w, "%-28s %14.1f %14.1f\n", "samples/s (wall)", r.StepSamplesPerSecond(), perSecond(o.Batch, r.Py.MedianWall()))
	fmt.Fprintf(w, "\n%-28s %14s %14s\n", "data loader", "samples/s", "/ step")
	if r.LoaderError != nil {
		fmt.Fprintf(w, "loader failed: %v\n", r.LoaderError)
	} else {
		fmt.Fprintf(w, "%-28s %14.1f %14.2f   (loader alone vs step alone)\n", fmt.Sprintf("decode (%d samples, %d wk)", r.Loader.Samples, o.Loader.Workers),
			r.Loader.ColdPerSecond(), r.LoaderRatio())
		fmt.Fprintf(w, "%-28s %14.1f %14.2f   (step %.1f samples/s meanwhile, %d steps)\n", "decode, with the step running",
			r.Together.LoaderPerSecond(), r.LoaderRatioTogether(), r.Together.StepPerSecond(), r.Together.Steps)
		fmt.Fprintf(w, "%-28s %14.1f %14.2f\n", "cached planes", r.Loader.CachedPerSecond(), r.LoaderRatioCached())
		fmt.Fprintf(w, "%-28s %14.1f %14.2f   (%.2f ms CPU/sample, %d cores; step %.1f samples/s CPU)\n", "decode, CPU-time basis",
			r.Loader.ColdPerSecondCPU(), r.LoaderRatioCPU(), perSample(r.Loader.ColdCPU, r.Loader.Samples), r.Loader.Cores, r.StepSamplesPerSecondCPU())
	}
	fmt.Fprintf(w, "\nratio 1  train step go/python (CPU time) %.3f  goal <= %.2f  %s   (wall %.3f)\n",
		r.StepRatioCPU(), StepGoal, verdict(r.StepPass()), r.StepRatioWall())
	fmt.Fprintf(w, "ratio 2  loader/step samples/s (together) %.2f   goal >= %.2f  %s   (isolated %.2f, cached %.2f, CPU-time basis %.2f)\n",
		r.LoaderRatioTogether(), LoaderGoal, verdict(r.LoaderPass()), r.LoaderRatio(), r.LoaderRatioCached(), r.LoaderRatioCPU())
}

// perSample is d / n in milliseconds (0 for no samples).
func perSample(d time.Duration, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(d.Microseconds()) / 1000 / float64(n)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
