package benchtrain

import (
	"context"
	"sync"
	"time"

	"github.com/hpa-plates/hpa/internal/model/torch"
)

// TogetherResult is the loader and the Go train step measured at the same time on the same cores,
// as they run in training (the loader prepares the next batches while the step runs): the loader's
// decoding pass over Samples samples took Loader wall time while the step, looping on its batch,
// completed Steps steps in StepWall.
type TogetherResult struct {
	Samples  int
	Loader   time.Duration
	Steps    int
	StepWall time.Duration
	Batch    int
}

// LoaderPerSecond is the decoding loader's samples/s while the step ran.
func (t TogetherResult) LoaderPerSecond() float64 { return perSecond(t.Samples, t.Loader) }

// StepPerSecond is the train step's samples/s while the loader ran.
func (t TogetherResult) StepPerSecond() float64 { return perSecond(t.Steps*t.Batch, t.StepWall) }

// Ratio is LoaderPerSecond / StepPerSecond: the loader/step verdict.
func (t TogetherResult) Ratio() float64 { return divf(t.LoaderPerSecond(), t.StepPerSecond()) }

// MeasureTogether runs the loader's decoding pass (lo, cold only; repeated until the step has
// completed at least togetherMinSteps steps meanwhile, at most togetherMaxPasses passes) while a Go
// train step (so, with the library's thread count) loops on a random batch. The step's rate counts
// the steps completed while the loader ran; when the loader ends within the first step, that one
// step (waited for) is the rate.
func MeasureTogether(ctx context.Context, lib *torch.Lib, so StepOptions, lo LoaderOptions) (TogetherResult, error) {
	if err := so.Validate(); err != nil {
		return TogetherResult{}, err
	}
	b, err := torch.NewBackend(lib, so.Spec, "cpu", so.Seed, torch.BackendOptions{
		LR: LR, Momentum: Momentum, WeightDecay: WeightDecay, Nesterov: true, Loss: "bce",
	})
	if err != nil {
		return TogetherResult{}, err
	}
	defer b.Close()
	x, y := RandomBatch(so.Spec, so.Batch, so.Size, so.Seed)
	for range max(so.Warmup, 1) {
		if _, err := b.TrainStep(x, so.Batch, so.Size, y, LR); err != nil {
			return TogetherResult{}, err
		}
	}
	var (
		mu       sync.Mutex
		done     bool
		steps    int
		stepWall time.Duration
		stepErr  error
		finished = make(chan struct{})
	)
	start := time.Now()
	go func() {
		defer close(finished)
		for {
			if _, err := b.TrainStep(x, so.Batch, so.Size, y, LR); err != nil {
				mu.Lock()
				stepErr = err
				mu.Unlock()
				return
			}
			mu.Lock()
			if done && steps > 0 {
				mu.Unlock()
				return
			}
			steps++
			stepWall = time.Since(start)
			stop := done
			mu.Unlock()
			if stop {
				return
			}
		}
	}()
	lo.coldOnly = true
	var (
		samples int
		loader  time.Duration
		lerr    error
	)
	for pass := 0; pass < togetherMaxPasses; pass++ {
		var l LoaderResult
		if l, lerr = MeasureLoader(ctx, lo); lerr != nil {
			break
		}
		samples, loader = samples+l.Samples, loader+l.Cold
		mu.Lock()
		enough := steps >= togetherMinSteps || stepErr != nil
		mu.Unlock()
		if enough {
			break
		}
	}
	mu.Lock()
	done = true
	mu.Unlock()
	<-finished
	if lerr != nil {
		return TogetherResult{}, lerr
	}
	if stepErr != nil {
		return TogetherResult{}, stepErr
	}
	return TogetherResult{Samples: samples, Loader: loader, Steps: steps, StepWall: stepWall, Batch: so.Batch}, nil
}

// The together measurement's window: enough loader passes for this many steps, within this many passes.
const (
	togetherMinSteps  = 5
	togetherMaxPasses = 10
)
