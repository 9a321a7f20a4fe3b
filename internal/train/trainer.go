package train

import (
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Backend is one model being trained on one device (the libtorch shim implements it). Inputs are
// normalized NCHW float32 batches of square images; targets are n x classes multi-hot.
type Backend interface {
	// TrainStep runs forward + loss + backward + one optimizer step at the given learning rate and
	// returns the mean loss of the batch before the step.
	TrainStep(x []float32, n, size int, targets []float32, lr float64) (float64, error)
	// Predict returns eval-mode logits, n x classes.
	Predict(x []float32, n, size int) ([]float32, error)
	Weights() (model.Weights, error)
	SetWeights(model.Weights) error
	// OptimizerState / SetOptimizerState move the momentum buffers (by parameter name) so a resumed
	// run continues exactly.
	OptimizerState() (map[string][]float32, error)
	SetOptimizerState(map[string][]float32) error
	Close() error
}

// BackendFactory creates the backend of one fold: the architecture initialized from seed (then
// overwritten by init weights when the config names a pretrained file).
type BackendFactory func(spec model.Spec, seed int64) (Backend, error)

// Config is one training run. Defaults (DefaultConfig) are the reference Kaggle recipe.
type Config struct {
	DataDir string // train.csv + images (in DataDir/train/ or DataDir itself)
	OutDir  string // the model-set directory: manifest.json, members/, report, checkpoints
	Arch    model.Spec
	Size    int // input size in pixels (square)

	Folds          int    // K
	TrainFolds     []int  // which folds to train (nil = all); the rest are skipped (quick runs)
	FoldsFile      string // optional Id,fold CSV overriding the stratified split
	DedupHamming   int    // pHash near-duplicates within this many bits share a fold (-1 = off)
	Cycles         int    // C snapshots per fold
	EpochsPerCycle int    // E
	BatchSize      int
	Optimizer      string // sgd (the recipe) | adamw
	LR, LRMin      float64
	Momentum       float64
	WeightDecay    float64
	Nesterov       bool
	Loss           string  // bce | focal | soft_f1
	FocalGamma     float64 // focal loss exponent
	Sampler        string  // auto | balanced | random (auto: SamplerFor)
	Balance        BalanceConfig
	Augment        Augment
	TTAViews       int // views for out-of-fold predictions
	Seed           int64
	Workers        int // decode + augment workers
	Prefetch       int // batches prepared ahead of the device
	Normalization  model.Normalization
	NormFromData   bool // per-channel mean/std computed from the training data (replaces Normalization)
	// Init: "pytorch" (plain PyTorch module defaults, model.InitWeightsPyTorch) or "timm" (the
	// backend's own init: timm's kaiming-normal fan_out, zero_init_last; kept with pretrained weights).
	Init         string
	WarmupEpochs int // linear LR warm-up over the first epochs of the first cycle (0 = none)
	// PriorBias starts the classifier bias at each class's log prior odds in the fold's training rows.
	PriorBias bool
	// Snapshots: "auto" keeps the last k snapshots of every fold, the k whose out-of-fold ensemble
	// scores best (each snapshot more must gain more than SnapshotMargin macro-F1); "all" keeps
	// every snapshot. Early snapshots of a short schedule are weaker than the last and pull the
	// average down (docs/quality.md).
	Snapshots     string
	Decode        pipeline.DecodeOptions
	SkipMissing   bool    // samples with missing images are skipped (listed) instead of fatal
	PricePerHour  float64 // device-hour price for the report's cost line
	ShrinkK       float64 // per-class threshold shrinkage strength
	Name, Version string  // model-set name and version for the manifest
	ParentVersion string

	// TrainOnly trains (and checkpoints, and exports the members of) TrainFolds and stops: no
	// thresholds, manifest, report or curves; Run returns a Result with only Skipped. A later Run
	// over the same OutDir with every fold's checkpoint finishes the set (distributed training).
	TrainOnly bool
}

// DefaultConfig returns the defaults for an architecture: the reference recipe's structure (5 folds x
// 4 cycles x 20 epochs of cyclic cosine, snapshots, balanced batches) with what won the ablation at
// CPU budgets (docs/quality.md): AdamW lr 0.003 wd 0.05, PyTorch's default init (the prior-odds
// classifier bias is an option; it cost held-out macro-F1 on both seeds), a repeat cap of 4 in the balanced sampler, rot90 + flips only, per-channel normalization from
// the data. The recipe's SGD (Nesterov, lr 0.1, momentum 0.9, wd 1e-4) stays available.
func DefaultConfig(arch model.Spec) Config {
	return Config{
		Arch: arch, Size: 512, Folds: 5, Cycles: 4, EpochsPerCycle: 20, BatchSize: 32,
		Optimizer: "adamw", LR: 0.003, LRMin: 0, Momentum: 0.9, WeightDecay: 0.05, Nesterov: true,
		Init: "pytorch", PriorBias: false, Snapshots: "auto",
		Loss: "bce", FocalGamma: 2, Sampler: "auto", Balance: DefaultBalance(), Augment: DefaultAugment(),
		TTAViews: 8, Seed: 1, Workers: 2, Prefetch: 2, Normalization: model.DefaultNormalization(arch.InChans),
		NormFromData: true,
		ShrinkK:      10, Name: "hpa", Version: "v1", DedupHamming: 6,
	}
}

// RandomSamplerFromEpochs is the schedule length (cycles x epochs per cycle, per fold) from which the
// auto sampler is random rather than class-group-balanced: measured on hpa synth (docs/quality.md),
// balanced batches lead at 15 epochs per fold and random ones at 30 (+0.021 held-out, two seeds).
const RandomSamplerFromEpochs = 30

// SamplerFor is the sampler a run uses: Sampler, or for auto the one measured best at the run's
// schedule length (RandomSamplerFromEpochs).
func (c Config) SamplerFor() string {
	if c.Sampler != "auto" {
		return c.Sampler
	}
	if c.Cycles*c.EpochsPerCycle >= RandomSamplerFromEpochs {
		return "random"
	}
	return "balanced"
}

// Validate reports unusable settings.
func (c *Config) Validate() error {
	switch {
	case c.DataDir == "" || c.OutDir == "":
		return errors.New("train: data and out directories are required")
	case c.Size < 32:
		return fmt.Errorf("train: size %d too small (>= 32)", c.Size)
	case c.Folds < 2:
		return fmt.Errorf("train: folds must be >= 2, not %d", c.Folds)
	case c.Cycles < 1 || c.EpochsPerCycle < 1 || c.BatchSize < 2:
		return errors.New("train: cycles, epochs >= 1 and batch size >= 2 required")
	case c.Optimizer != "sgd" && c.Optimizer != "adamw":
		return fmt.Errorf("train: optimizer %q: sgd or adamw", c.Optimizer)
	case c.Sampler != "auto" && c.Sampler != "balanced" && c.Sampler != "random":
		return fmt.Errorf("train: sampler %q: auto, balanced or random", c.Sampler)
	case c.Init != "" && c.Init != "timm" && c.Init != "pytorch":
		return fmt.Errorf("train: init %q: pytorch or timm", c.Init)
	case c.Snapshots != "" && c.Snapshots != "auto" && c.Snapshots != "all":
		return fmt.Errorf("train: snapshots %q: auto or all", c.Snapshots)
	case c.Loss != "bce" && c.Loss != "focal" && c.Loss != "soft_f1":
		return fmt.Errorf("train: loss %q: bce, focal or soft_f1", c.Loss)
	}
	if len(c.Normalization.Mean) != c.Arch.InChans || len(c.Normalization.Std) != c.Arch.InChans {
		return fmt.Errorf("train: normalization needs %d means and stds", c.Arch.InChans)
	}
	if _, err := pipeline.ViewSet(c.TTAViews); err != nil {
		return err
	}
	for _, f := range c.TrainFolds {
		if f < 0 || f >= c.Folds {
			return fmt.Errorf("train: fold %d out of range 0..%d", f, c.Folds-1)
		}
	}
	return c.Arch.Validate()
}

// Progress is what the trainer reports after every optimizer step.
type Progress struct {
	Fold, Folds      int
	Cycle, Cycles    int
	Epoch, Epochs    int // epoch within the cycle
	Batch, Batches   int
	Step, TotalSteps int // within the fold
	Loss, LR         float64
	Elapsed, ETA     time.Duration // for the whole run
	Phase            string        // "train" | "oof" | "export"
}

// checkpoint is what is saved at the end of every epoch (and of a fold).
type checkpoint struct {
	Fold      int
	NextStep  int // global step within the fold to run next
	Weights   map[string][]float32
	Optimizer map[string][]float32
	Losses    []float64 // per step
	LRs       []float64
	// Snapshot OOF probabilities (validation rows of this fold, in fold order), per finished cycle.
	SnapshotOOF [][][]float64
	Members     []model.Member
	Seconds     float64 // device-seconds spent on this fold so far
	Done        bool
}

func saveGob(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := gob.NewEncoder(f).Encode(v); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func loadGob(path string, v any) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := gob.NewDecoder(f).Decode(v); err != nil {
		return false, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return true, nil
}

// batchPrep is one prepared minibatch.
type batchPrep struct {
	x       []float32
	targets []float32
	n       int
	err     error
}

// loader prepares the batches of one epoch, in order, with one pool of decode + augment workers for
// the whole epoch: up to Prefetch+1 batches are in preparation at once, so the workers move on to
// the next batch while the slowest sample of the current one finishes, and the device finds the next
// batch ready. Augmentation depends only on (seed, epoch, draw position), so the scheduling changes nothing.
func (t *trainer) loader(ctx context.Context, batches [][]int, epoch int) <-chan batchPrep {
	ahead := max(1, t.cfg.Prefetch)
	out := make(chan batchPrep, ahead)
	type slot struct {
		p    batchPrep
		mu   sync.Mutex
		left int
		done chan struct{}
	}
	type job struct {
		s   *slot
		j   int
		ex  int
		pos int // draw position in the epoch (keys the augmentation)
	}
	c, s, k := t.cfg.Arch.InChans, t.cfg.Size, t.cfg.Arch.NumClasses
	per := c * s * s
	jobs := make(chan job)
	pending := make(chan *slot, ahead+1) // batches in preparation, in order; its size bounds the window
	var wg sync.WaitGroup
	for range max(1, t.cfg.Workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tmp := make([]float32, per)
			for jb := range jobs {
				p := &jb.s.p
				dst := p.x[jb.j*per : (jb.j+1)*per]
				err := t.data.fill(dst, jb.ex)
				if err == nil {
					t.cfg.Augment.Apply(dst, c, s, AugmentRNG(uint64(t.cfg.Seed), epoch, jb.pos), tmp)
					err = t.norm.ApplyFloat(dst, c, s)
				}
				for _, l := range t.data.labels[jb.ex] {
					p.targets[jb.j*k+l] = 1
				}
				jb.s.mu.Lock()
				if err != nil && p.err == nil {
					p.err = err
				}
				jb.s.left--
				if jb.s.left == 0 {
					close(jb.s.done)
				}
				jb.s.mu.Unlock()
			}
		}()
	}
	// Feeder: queue every batch's examples; pending's capacity holds it Prefetch+1 batches ahead.
	go func() {
		defer close(jobs)
		defer close(pending)
		pos := 0
		for _, b := range batches {
			sl := &slot{p: batchPrep{x: make([]float32, len(b)*per), targets: make([]float32, len(b)*k), n: len(b)},
				left: len(b), done: make(chan struct{})}
			select {
			case pending <- sl:
			case <-ctx.Done():
				return
			}
			for j, ex := range b {
				select {
				case jobs <- job{sl, j, ex, pos + j}:
				case <-ctx.Done():
					return
				}
			}
			pos += len(b)
		}
	}()
	// Emitter: hand batches over in order as they complete.
	go func() {
		defer close(out)
		defer wg.Wait()
		for sl := range pending {
			select {
			case <-sl.done:
			case <-ctx.Done():
				return
			}
			select {
			case out <- sl.p:
			case <-ctx.Done():
				return
			}
			if sl.p.err != nil {
				return
			}
		}
	}()
	return out
}

func sigmoid(x float32) float64 { return model.Sigmoid(float64(x)) }
