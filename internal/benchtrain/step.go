// Package benchtrain measures the training side of hpa against its goals:
//
//  1. the time of one Go+libtorch training step (internal/model/torch, through the shim) against
//     the same step of a PyTorch-Python script (scripts/bench_train_step.py) with the same
//     architecture, batch, thread count, libtorch and allocator: goal Go/Python <= 1.05;
//  2. the samples/s of the training data loader (PNG decode through internal/pipeline, resize,
//     augment, normalize, in parallel workers, as internal/train's loader does) against the
//     samples/s of the training step: goal >= 1.5, so the device never waits for data.
//
// Run collects both and Result.Write prints them as a table with PASS/FAIL; `hpa bench train` is
// the command.
package benchtrain

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"time"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/torch"
)

// The recipe's optimizer (internal/train.DefaultConfig), used on both sides of the comparison.
const (
	LR          = 0.1
	Momentum    = 0.9
	WeightDecay = 1e-4
)

// StepOptions describe one timed series of training steps on a fixed random batch.
type StepOptions struct {
	Spec   model.Spec
	Size   int    // square input size in pixels
	Batch  int    // samples per step
	Steps  int    // timed steps
	Warmup int    // untimed steps before them
	Seed   uint64 // weights and batch
}

// Validate reports unusable options.
func (o StepOptions) Validate() error {
	if o.Size < 32 || o.Batch < 1 || o.Steps < 1 || o.Warmup < 0 {
		return &OptionsError{Reason: fmt.Sprintf("size >= 32, batch >= 1, steps >= 1 and warmup >= 0 required (got size %d, batch %d, steps %d, warmup %d)",
			o.Size, o.Batch, o.Steps, o.Warmup)}
	}
	return o.Spec.Validate()
}

// OptionsError is a benchmark setting that cannot be run.
type OptionsError struct{ Reason string }

func (e *OptionsError) Error() string { return "bench train: " + e.Reason }

// Steps are the timings of the timed steps: wall-clock and process CPU time of each, and its loss.
type Steps struct {
	Wall []time.Duration
	CPU  []time.Duration
	Loss []float64
}

// Append adds the steps of another series (another round).
func (s *Steps) Append(o Steps) {
	s.Wall = append(s.Wall, o.Wall...)
	s.CPU = append(s.CPU, o.CPU...)
	s.Loss = append(s.Loss, o.Loss...)
}

// MedianWall is the median wall time of a step (0 without steps).
func (s Steps) MedianWall() time.Duration { return median(s.Wall) }

// MedianCPU is the median process CPU time of a step (0 without steps).
func (s Steps) MedianCPU() time.Duration { return median(s.CPU) }

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	c := slices.Clone(d)
	slices.Sort(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

// processCPU is the CPU time (user + system) of the whole process so far: the same clock as
// Python's time.process_time (the libtorch thread pool, when threads > 1, counts too).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// RandomBatch is a seeded standard-normal input (batch x in_chans x size x size) and 10%-dense
// multi-hot targets (batch x num_classes).
func RandomBatch(spec model.Spec, batch, size int, seed uint64) (x, y []float32) {
	r := rand.New(rand.NewPCG(seed, 0x62656e6368))
	x = make([]float32, batch*spec.InChans*size*size)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	y = make([]float32, batch*spec.NumClasses)
	for i := range y {
		if r.Float64() < 0.1 {
			y[i] = 1
		}
	}
	return x, y
}

// GoSteps builds the model on the CPU through the shim with the recipe's optimizer (SGD, Nesterov
// momentum, weight decay, BCE: torch.NewBackend, exactly what the trainer drives) and times
// o.Steps training steps after o.Warmup untimed ones. The thread count is the library's (set it
// with lib.SetNumThreads first).
func GoSteps(lib *torch.Lib, o StepOptions) (Steps, error) {
	if err := o.Validate(); err != nil {
		return Steps{}, err
	}
	b, err := torch.NewBackend(lib, o.Spec, "cpu", o.Seed, torch.BackendOptions{
		LR: LR, Momentum: Momentum, WeightDecay: WeightDecay, Nesterov: true, Loss: "bce",
	})
	if err != nil {
		return Steps{}, err
	}
	defer b.Close()
	x, y := RandomBatch(o.Spec, o.Batch, o.Size, o.Seed)
	for range o.Warmup {
		if _, err := b.TrainStep(x, o.Batch, o.Size, y, LR); err != nil {
			return Steps{}, err
		}
	}
	s := Steps{Wall: make([]time.Duration, 0, o.Steps), CPU: make([]time.Duration, 0, o.Steps)}
	for range o.Steps {
		w0, c0 := time.Now(), processCPU()
		loss, err := b.TrainStep(x, o.Batch, o.Size, y, LR)
		c1 := processCPU()
		w := time.Since(w0)
		if err != nil {
			return Steps{}, err
		}
		s.Wall = append(s.Wall, w)
		s.CPU = append(s.CPU, c1-c0)
		s.Loss = append(s.Loss, loss)
	}
	return s, nil
}
