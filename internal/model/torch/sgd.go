package torch

/*
#include <stdlib.h>
#include "hpat_dl.h"
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/hpa-plates/hpa/internal/model"
)

// LossKind selects the training loss (HPAT_LOSS_* in csrc/hpatorch/hpatorch.h).
type LossKind int

const (
	// LossBCE is binary cross-entropy with logits, averaged over samples and classes.
	LossBCE LossKind = 0
	// LossFocal is the binary focal loss: BCE * (1 - p_t)^gamma, averaged.
	LossFocal LossKind = 1
	// LossSoftF1 is 1 - mean over classes of the soft F1 (probabilities as fractional counts) over
	// the batch.
	LossSoftF1 LossKind = 2
)

// ParseLoss maps "bce", "focal", "f1" / "soft_f1" to a LossKind.
func ParseLoss(s string) (LossKind, error) {
	switch s {
	case "bce":
		return LossBCE, nil
	case "focal":
		return LossFocal, nil
	case "f1", "soft_f1", "soft-f1":
		return LossSoftF1, nil
	}
	return 0, fmt.Errorf("torch: unknown loss %q (bce, focal, soft_f1)", s)
}

func (k LossKind) String() string {
	switch k {
	case LossBCE:
		return "bce"
	case LossFocal:
		return "focal"
	case LossSoftF1:
		return "soft_f1"
	}
	return fmt.Sprintf("LossKind(%d)", int(k))
}

// SGDOptions configure stochastic gradient descent (PyTorch's torch.optim.SGD semantics; weight
// decay applies to every parameter).
type SGDOptions struct {
	LR          float64
	Momentum    float64
	WeightDecay float64
	Nesterov    bool
}

// SGD is an optimizer bound to one model's parameters: SGD (NewSGD, the recipe's) or AdamW
// (NewAdamW). The name stays for the recipe's optimizer; Optimizer is the general alias.
type SGD struct {
	model   *Model
	mu      sync.Mutex
	p       *C.hpat_sgd
	cleanup runtime.Cleanup
	lr      float64
	adamw   bool
}

// Optimizer is an SGD or AdamW optimizer.
type Optimizer = SGD

// AdamWOptions configure AdamW (PyTorch's torch.optim.AdamW semantics).
type AdamWOptions struct {
	LR          float64
	Beta1       float64 // 0.9 when 0
	Beta2       float64 // 0.999 when 0
	Eps         float64 // 1e-8 when 0
	WeightDecay float64 // decoupled
}

// NewAdamW creates an AdamW optimizer over m's parameters.
func NewAdamW(m *Model, o AdamWOptions) (*Optimizer, error) {
	if o.Beta1 == 0 {
		o.Beta1 = 0.9
	}
	if o.Beta2 == 0 {
		o.Beta2 = 0.999
	}
	if o.Eps == 0 {
		o.Eps = 1e-8
	}
	if !(o.LR > 0) || math.IsInf(o.LR, 0) || o.WeightDecay < 0 || o.Beta1 >= 1 || o.Beta2 >= 1 || o.Beta1 < 0 || o.Beta2 < 0 {
		return nil, fmt.Errorf("torch: adamw: lr must be positive and finite, betas in [0,1), weight decay non-negative (got %+v)", o)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil {
		return nil, ErrClosed
	}
	var e *C.char
	p := C.hdl_adamw_new(m.lib.c, m.p, C.double(o.LR), C.double(o.Beta1), C.double(o.Beta2), C.double(o.Eps), C.double(o.WeightDecay), &e)
	if p == nil {
		return nil, cErr("new adamw", e)
	}
	s := &SGD{model: m, p: p, lr: o.LR, adamw: true}
	lc := m.lib.c
	s.cleanup = runtime.AddCleanup(s, func(p *C.hpat_sgd) { C.hdl_sgd_free(lc, p) }, p)
	return s, nil
}

// IsAdamW reports the optimizer kind.
func (s *SGD) IsAdamW() bool { return s.adamw }

// NewSGD creates an SGD optimizer over m's parameters.
func NewSGD(m *Model, o SGDOptions) (*SGD, error) {
	if !(o.LR > 0) || math.IsInf(o.LR, 0) || o.Momentum < 0 || o.WeightDecay < 0 {
		return nil, fmt.Errorf("torch: sgd: lr must be positive and finite, momentum and weight decay non-negative (got %+v)", o)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil {
		return nil, ErrClosed
	}
	nest := C.int(0)
	if o.Nesterov {
		nest = 1
	}
	var e *C.char
	p := C.hdl_sgd_new(m.lib.c, m.p, C.double(o.LR), C.double(o.Momentum), C.double(o.WeightDecay), nest, &e)
	if p == nil {
		return nil, cErr("new sgd", e)
	}
	s := &SGD{model: m, p: p, lr: o.LR}
	lc := m.lib.c
	s.cleanup = runtime.AddCleanup(s, func(p *C.hpat_sgd) { C.hdl_sgd_free(lc, p) }, p)
	return s, nil
}

// LR is the current learning rate.
func (s *SGD) LR() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lr
}

// SetLR changes the learning rate of every parameter group (for schedules).
func (s *SGD) SetLR(lr float64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return ErrClosed
	}
	var e *C.char
	if C.hdl_sgd_set_lr(s.model.lib.c, s.p, C.double(lr), &e) != 0 {
		return cErr("sgd set lr", e)
	}
	s.lr = lr
	return nil
}

// Close frees the optimizer state (momentum buffers).
func (s *SGD) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		s.cleanup.Stop()
		C.hdl_sgd_free(s.model.lib.c, s.p)
		s.p = nil
	}
}

// StepOptions configure one training step.
type StepOptions struct {
	Loss       LossKind
	FocalGamma float64 // LossFocal's exponent (2 is usual)
	// AMP runs the forward under bfloat16 autocast; CUDA devices only.
	AMP bool
}

// StepResult is what a training step reports.
type StepResult struct {
	Loss   float32   // mean loss of the batch, before the update
	Logits []float32 // n x NumClasses logits of the step's forward (training-mode BN)
}

// TrainStep runs one optimization step of opt on the batch x (NCHW float32) with targets
// (n x NumClasses, values in [0,1]): forward in training mode, loss, backward, SGD update.
func (m *Model) TrainStep(opt *SGD, x []float32, n, h, w int, targets []float32, o StepOptions) (StepResult, error) {
	if opt == nil || opt.model != m {
		return StepResult{}, &InputError{Op: "train step", Reason: "optimizer does not belong to this model"}
	}
	if err := m.checkInput("train step", x, n, h, w); err != nil {
		return StepResult{}, err
	}
	if want := n * m.spec.NumClasses; len(targets) != want {
		return StepResult{}, &InputError{Op: "train step", Reason: fmt.Sprintf("targets have %d values, want n*classes = %d", len(targets), want)}
	}
	for i, t := range targets {
		if !(t >= 0 && t <= 1) {
			return StepResult{}, &InputError{Op: "train step", Reason: fmt.Sprintf("target %d (sample %d, class %d) is %v, not in [0,1]", i, i/m.spec.NumClasses, i%m.spec.NumClasses, t)}
		}
	}
	if o.Loss < LossBCE || o.Loss > LossSoftF1 {
		return StepResult{}, &InputError{Op: "train step", Reason: "unknown loss " + o.Loss.String()}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	opt.mu.Lock()
	defer opt.mu.Unlock()
	if m.p == nil || opt.p == nil {
		return StepResult{}, ErrClosed
	}
	res := StepResult{Logits: make([]float32, n*m.spec.NumClasses)}
	amp := C.int(0)
	if o.AMP {
		amp = 1
	}
	var loss C.float
	var e *C.char
	if C.hdl_train_step(m.lib.c, m.p, opt.p, (*C.float)(&x[0]), C.int64_t(n), C.int64_t(m.spec.InChans), C.int64_t(h),
		C.int64_t(w), (*C.float)(&targets[0]), C.int(o.Loss), C.double(o.FocalGamma), amp, &loss,
		(*C.float)(&res.Logits[0]), &e) != 0 {
		return StepResult{}, cErr("train step", e)
	}
	res.Loss = float32(loss)
	return res, nil
}

// State slots per optimizer kind (HPAT state slots): SGD has the momentum buffer; AdamW has the two
// moment estimates and the step count.
func (s *SGD) slots() []string {
	if s.adamw {
		return []string{"exp_avg", "exp_avg_sq", "step"}
	}
	return []string{"momentum"}
}

// State returns the optimizer state of every trainable parameter that has one (none before the
// first step), keyed "<slot>/<timm name>" (slots: momentum for SGD; exp_avg, exp_avg_sq and step for
// AdamW, step as one value): with the weights, what a checkpoint must hold for a resumed run to
// continue exactly.
func (s *SGD) State() (map[string][]float32, error) {
	m := s.model
	m.mu.Lock()
	defer m.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.p == nil || s.p == nil {
		return nil, ErrClosed
	}
	out := map[string][]float32{}
	for _, t := range m.tensors {
		if t.Kind != model.Param {
			continue
		}
		name := C.CString(t.Name)
		for slot, sn := range s.slots() {
			n := t.Size()
			if sn == "step" {
				n = 1
			}
			buf := make([]float32, n)
			var e *C.char
			rc := C.hdl_optim_get_state(m.lib.c, s.p, name, C.int(slot), (*C.float)(&buf[0]), C.int64_t(4*n), &e)
			if rc < 0 {
				C.free(unsafe.Pointer(name))
				return nil, cErr("optimizer state "+sn+" "+t.Name, e)
			}
			if rc == 1 {
				out[sn+"/"+t.Name] = buf
			}
		}
		C.free(unsafe.Pointer(name))
	}
	return out, nil
}

// SetState installs optimizer state as State returned it. Every key must name a slot of this
// optimizer and a trainable parameter, with a value of the right size; parameters not in the map keep
// their state.
func (s *SGD) SetState(st map[string][]float32) error {
	m := s.model
	m.mu.Lock()
	defer m.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.p == nil || s.p == nil {
		return ErrClosed
	}
	size := map[string]int{}
	for _, t := range m.tensors {
		if t.Kind == model.Param {
			size[t.Name] = t.Size()
		}
	}
	slotOf := map[string]int{}
	for i, sn := range s.slots() {
		slotOf[sn] = i
	}
	type item struct {
		slot int
		name string
		v    []float32
	}
	var items []item
	for k, v := range st {
		sn, name, ok := strings.Cut(k, "/")
		slot, known := slotOf[sn]
		if !ok || !known {
			return &InputError{Op: "set optimizer state", Reason: fmt.Sprintf("%q is not <slot>/<parameter> with a slot of this optimizer (%s)", k, strings.Join(s.slots(), ", "))}
		}
		want, isParam := size[name]
		if !isParam {
			return &InputError{Op: "set optimizer state", Reason: fmt.Sprintf("%q is not a trainable parameter", name)}
		}
		if sn == "step" {
			want = 1
		}
		if len(v) != want {
			return &InputError{Op: "set optimizer state", Reason: fmt.Sprintf("%s has %d values, want %d", k, len(v), want)}
		}
		items = append(items, item{slot, name, v})
	}
	for _, it := range items {
		name := C.CString(it.name)
		var e *C.char
		rc := C.hdl_optim_set_state(m.lib.c, s.p, name, C.int(it.slot), (*C.float)(&it.v[0]), C.int64_t(4*len(it.v)), &e)
		C.free(unsafe.Pointer(name))
		if rc != 0 {
			return cErr("set optimizer state "+it.name, e)
		}
	}
	return nil
}
