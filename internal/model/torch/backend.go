package torch

import (
	"fmt"

	"github.com/hpa-plates/hpa/internal/model"
)

// BackendOptions configure NewBackend: the optimizer, the loss and the initial weights.
type BackendOptions struct {
	// Optimizer: "sgd" (default, the recipe: LR, Momentum, WeightDecay, Nesterov) or "adamw" (LR,
	// WeightDecay decoupled, default betas).
	Optimizer                 string
	LR, Momentum, WeightDecay float64
	Nesterov                  bool
	Loss                      string // bce | focal | soft_f1
	FocalGamma                float64
	AMP                       bool
	// Pretrained is a timm-named safetensors checkpoint loaded over the seeded init (3-channel stems
	// are adapted to the spec's channels; a classifier of another class count keeps the seeded init).
	Pretrained string
}

// Backend is one model + its SGD optimizer: what the trainer (internal/train.Backend) drives.
type Backend struct {
	m    *Model
	opt  *Optimizer
	step StepOptions
	// Adapt says how a pretrained checkpoint was fitted to the spec (nil without one).
	Adapt *model.AdaptReport
}

// NewBackend builds the model on device from seed, loads pretrained weights when given, and creates
// the optimizer.
func NewBackend(lib *Lib, spec model.Spec, device string, seed uint64, o BackendOptions) (*Backend, error) {
	loss, err := ParseLoss(o.Loss)
	if err != nil {
		return nil, err
	}
	m, err := lib.NewModel(spec, device, seed)
	if err != nil {
		return nil, err
	}
	var adapt *model.AdaptReport
	if o.Pretrained != "" {
		init, err := m.Weights()
		if err != nil {
			m.Close()
			return nil, err
		}
		w, rep, err := model.WeightsFromSafetensors(o.Pretrained, spec, int64(seed))
		if err != nil {
			m.Close()
			return nil, err
		}
		// BN buffers the checkpoint lacks keep the shim's values.
		for name, v := range init {
			if _, ok := w[name]; !ok {
				w[name] = v
			}
		}
		adapt = rep
		if err := m.SetWeights(w); err != nil {
			m.Close()
			return nil, fmt.Errorf("pretrained %s: %w", o.Pretrained, err)
		}
	}
	var opt *Optimizer
	switch o.Optimizer {
	case "", "sgd":
		opt, err = NewSGD(m, SGDOptions{LR: o.LR, Momentum: o.Momentum, WeightDecay: o.WeightDecay, Nesterov: o.Nesterov})
	case "adamw":
		opt, err = NewAdamW(m, AdamWOptions{LR: o.LR, WeightDecay: o.WeightDecay})
	default:
		err = fmt.Errorf("torch: unknown optimizer %q (sgd, adamw)", o.Optimizer)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	return &Backend{m: m, opt: opt, step: StepOptions{Loss: loss, FocalGamma: o.FocalGamma, AMP: o.AMP}, Adapt: adapt}, nil
}

// Model is the underlying model.
func (b *Backend) Model() *Model { return b.m }

// TrainStep sets the learning rate and runs one optimization step; it returns the batch's mean loss.
func (b *Backend) TrainStep(x []float32, n, size int, targets []float32, lr float64) (float64, error) {
	if err := b.opt.SetLR(lr); err != nil {
		return 0, err
	}
	r, err := b.m.TrainStep(b.opt, x, n, size, size, targets, b.step)
	if err != nil {
		return 0, err
	}
	return float64(r.Loss), nil
}

// Predict returns eval-mode logits.
func (b *Backend) Predict(x []float32, n, size int) ([]float32, error) {
	return b.m.Forward(x, n, size, size, false)
}

// Weights returns every parameter and BN buffer by timm name.
func (b *Backend) Weights() (model.Weights, error) { return b.m.Weights() }

// SetWeights loads weights by timm name.
func (b *Backend) SetWeights(w model.Weights) error { return b.m.SetWeights(w) }

// OptimizerState returns the optimizer state (momentum buffers, or AdamW moments and steps).
func (b *Backend) OptimizerState() (map[string][]float32, error) { return b.opt.State() }

// SetOptimizerState restores what OptimizerState returned.
func (b *Backend) SetOptimizerState(s map[string][]float32) error { return b.opt.SetState(s) }

// Close frees the optimizer and the model.
func (b *Backend) Close() error {
	b.opt.Close()
	b.m.Close()
	return nil
}
