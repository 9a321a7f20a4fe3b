package torch

import (
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/hpa-plates/hpa/internal/model"
)

// WriteInfo prints the shim's path and version, the allocator, threads and CUDA devices.
func WriteInfo(w io.Writer, l *Lib) error {
	mapped, err := AllocatorMapped()
	if err != nil {
		return fmt.Errorf("torch info: %w", err)
	}
	fmt.Fprintf(w, "library:   %s\n", l.Path())
	fmt.Fprintf(w, "version:   %s\n", l.Version())
	fmt.Fprintf(w, "allocator: %s (tcmalloc mapped: %v)\n", Allocator, mapped)
	fmt.Fprintf(w, "threads:   %d\n", l.NumThreads())
	fmt.Fprintf(w, "cuda:      %v (%d devices)\n", l.CUDAAvailable(), l.DeviceCount())
	return nil
}

// CheckOptions configure Check (`hpa torch check`, config section torch_check.*).
type CheckOptions struct {
	Arch, Device       string
	Size, Batch, Steps int
	Seed               uint64
}

// Check runs o.Steps seeded training steps of the architecture on random data and prints the
// loss and time of each, and the mean step time after the first (warm-up).
func Check(w io.Writer, l *Lib, o CheckOptions) error {
	if o.Size <= 0 || o.Batch <= 0 || o.Steps <= 0 {
		return fmt.Errorf("torch check: size, batch and steps must be positive (got %d, %d, %d)", o.Size, o.Batch, o.Steps)
	}
	spec, err := model.Preset(o.Arch)
	if err != nil {
		return fmt.Errorf("torch check: %w", err)
	}
	m, err := l.NewModel(spec, o.Device, o.Seed)
	if err != nil {
		return err
	}
	defer m.Close()
	opt, err := NewSGD(m, SGDOptions{LR: 0.01, Momentum: 0.9})
	if err != nil {
		return err
	}
	defer opt.Close()
	rng := rand.New(rand.NewPCG(o.Seed, 0))
	x := make([]float32, o.Batch*spec.InChans*o.Size*o.Size)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	y := make([]float32, o.Batch*spec.NumClasses)
	for i := range y {
		if rng.Float64() < 0.1 {
			y[i] = 1
		}
	}
	var rest time.Duration
	for i := 0; i < o.Steps; i++ {
		t0 := time.Now()
		r, err := m.TrainStep(opt, x, o.Batch, o.Size, o.Size, y, StepOptions{Loss: LossBCE})
		if err != nil {
			return err
		}
		d := time.Since(t0)
		if i > 0 {
			rest += d
		}
		fmt.Fprintf(w, "step %d: loss %.5f  %.1f ms\n", i+1, r.Loss, float64(d.Microseconds())/1000)
	}
	if o.Steps > 1 {
		fmt.Fprintf(w, "%s %dpx batch %d on %s, allocator %s: %.1f ms/step after warm-up\n", o.Arch, o.Size, o.Batch,
			o.Device, Allocator, float64(rest.Microseconds())/1000/float64(o.Steps-1))
	}
	return nil
}
