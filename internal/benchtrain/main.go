package benchtrain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/torch"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/synth"
)

// MainOptions are what `hpa bench train` runs (config section bench_train.*).
type MainOptions struct {
	Options
	// Library is the libtorch shim (torch.library).
	Library string
	// SynthSize is the image side of the dataset synthesized when Loader.DataDir is empty.
	SynthSize int
	// Strict makes a missed goal an error (ErrGoalNotMet).
	Strict bool
}

// ErrGoalNotMet is returned by Main with Strict when a ratio misses its goal.
var ErrGoalNotMet = errors.New("bench train: a goal is not met")

// Main runs the training benchmarks and writes their report to w: it finds tcmalloc for the
// Python child, synthesizes a dataset for the loader when none is given, runs and reports.
func Main(ctx context.Context, o MainOptions, w io.Writer) error {
	if err := o.Validate(); err != nil {
		return err
	}
	norm := model.DefaultNormalization(o.Spec.InChans)
	o.Loader.Norm = pipeline.Norm{Mean: norm.Mean, Std: norm.Std}
	var err error
	if o.Preload == "" && torch.Allocator == "tcmalloc" {
		if o.Preload, err = FindTCMalloc(); err != nil {
			return err
		}
	}
	lib, err := torch.Open(o.Library)
	if err != nil {
		return err
	}
	if o.Loader.DataDir == "" {
		if o.Loader.Samples < 1 {
			return &OptionsError{Reason: "--samples must be >= 1 to synthesize a dataset"}
		}
		dir, err := os.MkdirTemp("", "hpa-bench-train-data-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		s, err := synth.Generate(ctx, synth.Options{Out: dir, Samples: o.Loader.Samples, Size: o.SynthSize, Seed: int64(o.Seed)})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "synthesized %d samples (%dx%d px) in %s\n", s.Samples, s.Size, s.Size, s.Elapsed.Round(1e6))
		o.Loader.DataDir = dir
	}
	r, err := Run(ctx, lib, o.Options, w)
	if err != nil {
		return err
	}
	r.Write(w)
	if r.LoaderError != nil {
		return r.LoaderError
	}
	if o.Strict && (!r.StepPass() || !r.LoaderPass()) {
		return ErrGoalNotMet
	}
	return nil
}
