package benchtrain

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/train"
)

// LoaderOptions describe a data-loader measurement.
type LoaderOptions struct {
	DataDir string     // an `hpa synth` (or HPA-layout) directory: train.csv + images in DIR/train or DIR
	Spec    model.Spec // input channels and classes
	Size    int        // training input size
	Batch   int
	Workers int // decode + augment goroutines per batch, as train.Config.Workers
	Samples int // samples to load (0 = every labeled sample of the directory)
	Seed    uint64
	Augment train.Augment
	Norm    pipeline.Norm
	Decode  pipeline.DecodeOptions

	coldOnly bool // the decoding pass only (MeasureTogether)
}

// LoaderResult is one measurement: Samples loaded in Cold (each decoded from its image files) and
// then again in Cached (from decoded 8-bit planes kept in memory, as the trainer's sample cache
// serves every epoch after the first). Augment, normalize and targets are done in both.
// ColdCPU and CachedCPU are the process CPU time (user + system) of each pass, Cores the workers
// that can run at once (min(workers, runtime.NumCPU())).
type LoaderResult struct {
	Samples            int
	Cold, Cached       time.Duration
	ColdCPU, CachedCPU time.Duration
	Cores              int
}

// ColdPerSecond is the samples/s of the decoding pass.
func (r LoaderResult) ColdPerSecond() float64 { return perSecond(r.Samples, r.Cold) }

// ColdPerSecondCPU is the decoding pass's samples/s on the CPU-time basis: Cores workers, each
// with a core of its own, at the CPU cost per sample the pass measured (Cores x Samples / ColdCPU).
// On a shared machine the other processes take cores from the workers, so the wall rate falls
// below this one; on an idle machine with Cores free cores the two agree (up to the serial part
// of each batch).
func (r LoaderResult) ColdPerSecondCPU() float64 { return perSecond(r.Cores*r.Samples, r.ColdCPU) }

// CachedPerSecond is the samples/s of the pass over cached planes.
func (r LoaderResult) CachedPerSecond() float64 { return perSecond(r.Samples, r.Cached) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// DataError is a data directory the loader cannot use.
type DataError struct {
	Dir    string
	Reason string
}

func (e *DataError) Error() string { return fmt.Sprintf("bench train: data %s: %s", e.Dir, e.Reason) }

// MeasureLoader loads o.Samples labeled samples of o.DataDir in batches of o.Batch, each batch with
// o.Workers goroutines, the way internal/train's loader prepares a batch: pipeline.LoadSample (the
// inference decode), pipeline.Resize of each channel in input order to Size, /255, train.Augment
// with train.AugmentRNG(seed, epoch, draw position), pipeline.Norm.ApplyFloat, multi-hot targets.
func MeasureLoader(ctx context.Context, o LoaderOptions) (LoaderResult, error) {
	return measureLoader(ctx, o, nil)
}

// measureLoader is MeasureLoader; onBatch, when set, sees every prepared batch (first sample index,
// inputs, targets) after it is complete.
func measureLoader(ctx context.Context, o LoaderOptions, onBatch func(epoch, first int, x, y []float32)) (LoaderResult, error) {
	if o.Size < 32 || o.Batch < 1 || o.Workers < 1 || o.Samples < 0 {
		return LoaderResult{}, &OptionsError{Reason: fmt.Sprintf("loader: size >= 32, batch >= 1, workers >= 1, samples >= 0 required (got %d, %d, %d, %d)",
			o.Size, o.Batch, o.Workers, o.Samples)}
	}
	if err := o.Spec.Validate(); err != nil {
		return LoaderResult{}, err
	}
	if o.Spec.InChans > len(pipeline.ChannelNames) {
		return LoaderResult{}, &OptionsError{Reason: fmt.Sprintf("loader: %d input channels, the images have 4", o.Spec.InChans)}
	}
	order, err := pipeline.ParseChannelOrder(pipeline.ChannelNames[:o.Spec.InChans])
	if err != nil {
		return LoaderResult{}, err
	}
	if len(o.Norm.Mean) < o.Spec.InChans || len(o.Norm.Std) < o.Spec.InChans {
		return LoaderResult{}, &OptionsError{Reason: fmt.Sprintf("loader: normalization needs %d means and stds", o.Spec.InChans)}
	}
	labels, err := labels.ReadTargetsFile(filepath.Join(o.DataDir, "train.csv"))
	if err != nil {
		return LoaderResult{}, err
	}
	imgDir := train.ImageDir(o.DataDir)
	complete, _, err := pipeline.ScanDir(imgDir)
	if err != nil {
		return LoaderResult{}, err
	}
	files := make(map[string][4]string, len(complete))
	for _, s := range complete {
		files[s.ID] = s.Files
	}
	var ids []string
	var targets [][]int
	var paths [][4]string
	for _, ex := range labels {
		f, ok := files[ex.ID]
		if !ok {
			return LoaderResult{}, &DataError{Dir: o.DataDir, Reason: fmt.Sprintf("sample %s of train.csv has no complete set of four images in %s", ex.ID, imgDir)}
		}
		ids, targets, paths = append(ids, ex.ID), append(targets, ex.Labels), append(paths, f)
		if o.Samples > 0 && len(ids) == o.Samples {
			break
		}
	}
	if len(ids) == 0 {
		return LoaderResult{}, &DataError{Dir: o.DataDir, Reason: "train.csv lists no samples"}
	}
	if o.Samples > len(ids) {
		return LoaderResult{}, &DataError{Dir: o.DataDir, Reason: fmt.Sprintf("%d samples wanted, train.csv lists %d", o.Samples, len(ids))}
	}
	for _, t := range targets {
		for _, k := range t {
			if k < 0 || k >= o.Spec.NumClasses {
				return LoaderResult{}, &DataError{Dir: o.DataDir, Reason: fmt.Sprintf("class %d outside the model's %d classes", k, o.Spec.NumClasses)}
			}
		}
	}

	c, s := o.Spec.InChans, o.Size
	per := c * s * s
	cache := make([][]uint8, len(ids))
	planes := func(i int, cached bool) ([]uint8, error) {
		if cached {
			return cache[i], nil
		}
		img, err := pipeline.LoadSample(ids[i], paths[i], o.Decode)
		if err != nil {
			return nil, err
		}
		out := make([]uint8, per)
		for k, ch := range order {
			p := pipeline.Resize(img.Planes[ch], s, s)
			if len(p.Pix) != s*s {
				return nil, &DataError{Dir: o.DataDir, Reason: fmt.Sprintf("sample %s: %s plane %dx%d cannot be resized to %d", ids[i], ch, img.Planes[ch].W, img.Planes[ch].H, s)}
			}
			copy(out[k*s*s:], p.Pix)
		}
		cache[i] = out // each index is written by one worker only
		return out, nil
	}
	pass := func(epoch int, cached bool) (time.Duration, time.Duration, error) {
		start, cpu0 := time.Now(), processCPU()
		for b0 := 0; b0 < len(ids); b0 += o.Batch {
			if err := ctx.Err(); err != nil {
				return 0, 0, err
			}
			n := min(o.Batch, len(ids)-b0)
			x := make([]float32, n*per)
			y := make([]float32, n*o.Spec.NumClasses)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var firstErr error
			jobs := make(chan int)
			for range o.Workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tmp := make([]float32, per)
					for j := range jobs {
						ex := b0 + j
						p, err := planes(ex, cached)
						if err == nil {
							dst := x[j*per : (j+1)*per]
							for k, v := range p {
								dst[k] = float32(v) * (1.0 / 255)
							}
							o.Augment.Apply(dst, c, s, train.AugmentRNG(o.Seed, epoch, ex), tmp)
							err = o.Norm.ApplyFloat(dst, c, s)
						}
						if err != nil {
							mu.Lock()
							if firstErr == nil {
								firstErr = err
							}
							mu.Unlock()
							continue
						}
						for _, k := range targets[ex] {
							y[j*o.Spec.NumClasses+k] = 1
						}
					}
				}()
			}
			for j := range n {
				jobs <- j
			}
			close(jobs)
			wg.Wait()
			if firstErr != nil {
				return 0, 0, firstErr
			}
			if onBatch != nil {
				onBatch(epoch, b0, x, y)
			}
		}
		return time.Since(start), processCPU() - cpu0, nil
	}
	cold, coldCPU, err := pass(0, false)
	if err != nil {
		return LoaderResult{}, err
	}
	var cached, cachedCPU time.Duration
	if !o.coldOnly {
		if cached, cachedCPU, err = pass(1, true); err != nil {
			return LoaderResult{}, err
		}
	}
	return LoaderResult{Samples: len(ids), Cold: cold, Cached: cached, ColdCPU: coldCPU, CachedCPU: cachedCPU,
		Cores: min(o.Workers, runtime.NumCPU())}, nil
}
