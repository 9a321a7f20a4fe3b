package torch

/*
#include <stdlib.h>
#include "hpat_dl.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"github.com/hpa-plates/hpa/internal/model"
)

// maxDims mirrors HPAT_MAX_DIMS.
const maxDims = 8

// Model is an SE-ResNeXt built by libtorch from a model.Spec. Its tensors carry timm's state-dict
// names. Close frees it; an unreachable Model is freed by the garbage collector.
type Model struct {
	lib     *Lib
	spec    model.Spec
	device  string
	mu      sync.Mutex
	p       *C.hpat_model
	cleanup runtime.Cleanup
	tensors []model.TensorSpec
}

// flattenSpec encodes the resolved spec as the shim expects (see csrc/hpatorch/hpatorch.h).
func flattenSpec(s model.Spec) ([]int64, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	blocks := s.Blocks()
	stem := int64(0)
	if s.Stem == model.StemConv {
		stem = 1
	}
	out := []int64{int64(s.InChans), int64(s.NumClasses), stem, int64(s.StemWidth), int64(s.Features()), int64(len(blocks))}
	for _, b := range blocks {
		var stage, idx int
		if _, err := fmt.Sscanf(b.Prefix, "layer%d.%d", &stage, &idx); err != nil {
			return nil, fmt.Errorf("arch %s: block prefix %q: %w", s.Name, b.Prefix, err)
		}
		ds := int64(0)
		if b.Downsample {
			ds = 1
		}
		out = append(out, int64(stage), int64(idx), int64(b.In), int64(b.Width), int64(b.Out), int64(b.Stride),
			int64(b.Groups), int64(b.SEChannels), ds)
	}
	return out, nil
}

// NewModel builds the network of spec on device ("cpu", "cuda", "cuda:N") with timm's
// initialization drawn from seed: the same seed gives bit-identical weights.
func (l *Lib) NewModel(spec model.Spec, device string, seed uint64) (*Model, error) {
	flat, err := flattenSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("torch: new model: %w", err)
	}
	return l.newModelFlat(spec, flat, device, seed)
}

// newModelFlat builds from an already flattened spec (the shim validates it again).
func (l *Lib) newModelFlat(spec model.Spec, flat []int64, device string, seed uint64) (*Model, error) {
	cdev := C.CString(device)
	defer C.free(unsafe.Pointer(cdev))
	var fp *C.int64_t
	if len(flat) > 0 {
		fp = (*C.int64_t)(unsafe.Pointer(&flat[0]))
	}
	var e *C.char
	p := C.hdl_model_new(l.c, fp, C.int64_t(len(flat)), cdev, C.uint64_t(seed), &e)
	if p == nil {
		return nil, cErr("new model "+spec.Name+" on "+device, e)
	}
	var err error
	m := &Model{lib: l, spec: spec, device: device, p: p}
	lc := l.c
	m.cleanup = runtime.AddCleanup(m, func(p *C.hpat_model) { C.hdl_model_free(lc, p) }, p)
	if m.tensors, err = m.readTensors(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func (m *Model) readTensors() ([]model.TensorSpec, error) {
	n := int(C.hdl_model_num_tensors(m.lib.c, m.p))
	ts := make([]model.TensorSpec, 0, n)
	shape := make([]C.int64_t, maxDims)
	for i := 0; i < n; i++ {
		var kind, ndim C.int64_t
		var e *C.char
		if C.hdl_model_tensor_info(m.lib.c, m.p, C.int64_t(i), &kind, &ndim, &shape[0], &e) != 0 {
			return nil, cErr("tensor info", e)
		}
		name := C.hdl_model_tensor_name(m.lib.c, m.p, C.int64_t(i))
		t := model.TensorSpec{Name: C.GoString(name), Shape: make([]int, int(ndim)), Kind: model.TensorKind(kind)}
		for d := range t.Shape {
			t.Shape[d] = int(shape[d])
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// Close frees the model. Further calls return ErrClosed.
func (m *Model) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p != nil {
		m.cleanup.Stop()
		C.hdl_model_free(m.lib.c, m.p)
		m.p = nil
	}
}

// Spec is the architecture the model was built from.
func (m *Model) Spec() model.Spec { return m.spec }

// Device is the device the model lives on.
func (m *Model) Device() string { return m.device }

// Tensors lists the model's state dict as libtorch registered it: timm names, shapes and kinds, in
// state-dict order. For a correct shim it equals Spec().Tensors().
func (m *Model) Tensors() []model.TensorSpec {
	out := make([]model.TensorSpec, len(m.tensors))
	for i, t := range m.tensors {
		t.Shape = slices.Clone(t.Shape)
		out[i] = t
	}
	return out
}

// Weights copies every parameter and BN running statistic to host memory, keyed by timm name.
// num_batches_tracked counters are left out (they do not affect the forward pass).
func (m *Model) Weights() (model.Weights, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil {
		return nil, ErrClosed
	}
	w := make(model.Weights, len(m.tensors))
	for _, t := range m.tensors {
		if t.Kind == model.NumBatches {
			continue
		}
		buf := make([]float32, t.Size())
		if err := m.getTensor(t.Name, unsafe.Pointer(&buf[0]), len(buf)*4); err != nil {
			return nil, err
		}
		w[t.Name] = buf
	}
	return w, nil
}

// NumBatchesTracked reads the num_batches_tracked counter of a BatchNorm (name without the suffix,
// e.g. "bn1"): how many training-mode forwards updated its statistics.
func (m *Model) NumBatchesTracked(bn string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil {
		return 0, ErrClosed
	}
	var v int64
	if err := m.getTensor(bn+".num_batches_tracked", unsafe.Pointer(&v), 8); err != nil {
		return 0, err
	}
	return v, nil
}

func (m *Model) getTensor(name string, dst unsafe.Pointer, nbytes int) error {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var e *C.char
	if C.hdl_model_get_tensor(m.lib.c, m.p, cname, dst, C.int64_t(nbytes), &e) != 0 {
		return cErr("get tensor "+name, e)
	}
	return nil
}

// SetWeights loads w into the model. w must pass w.Check(Spec()) (every parameter and running
// statistic present, exact sizes, finite, no foreign names; the error is a *model.WeightsError);
// num_batches_tracked entries are optional (one value, stored as int64). Nothing is changed when w
// does not fit.
func (m *Model) SetWeights(w model.Weights) error {
	if err := w.Check(m.spec); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil {
		return ErrClosed
	}
	for _, t := range m.tensors {
		v, ok := w[t.Name]
		if !ok {
			continue
		}
		if t.Kind == model.NumBatches {
			n := int64(v[0])
			if err := m.setTensor(t.Name, unsafe.Pointer(&n), 8); err != nil {
				return err
			}
			continue
		}
		if err := m.setTensor(t.Name, unsafe.Pointer(&v[0]), len(v)*4); err != nil {
			return err
		}
	}
	return nil
}

func (m *Model) setTensor(name string, src unsafe.Pointer, nbytes int) error {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var e *C.char
	if C.hdl_model_set_tensor(m.lib.c, m.p, cname, src, C.int64_t(nbytes), &e) != 0 {
		return cErr("set tensor "+name, e)
	}
	return nil
}

// InputError says an input batch does not match its stated dimensions or the model.
type InputError struct {
	Op     string
	Reason string
}

func (e *InputError) Error() string { return "torch: " + e.Op + ": " + e.Reason }

func (m *Model) checkInput(op string, x []float32, n, h, w int) error {
	if n <= 0 || h <= 0 || w <= 0 {
		return &InputError{Op: op, Reason: fmt.Sprintf("batch %dx%dx%d: dimensions must be positive", n, h, w)}
	}
	if want := n * m.spec.InChans * h * w; len(x) != want {
		return &InputError{Op: op, Reason: fmt.Sprintf("input has %d values, want n*c*h*w = %d*%d*%d*%d = %d",
			len(x), n, m.spec.InChans, h, w, want)}
	}
	return nil
}

// Forward runs the network on x (NCHW float32, C = Spec().InChans) and returns n x NumClasses
// logits. train selects BN's training mode (batch statistics; running statistics are updated);
// no gradients are kept either way.
func (m *Model) Forward(x []float32, n, h, w int, train bool) ([]float32, error) {
	if err := m.checkInput("forward", x, n, h, w); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil {
		return nil, ErrClosed
	}
	out := make([]float32, n*m.spec.NumClasses)
	tr := C.int(0)
	if train {
		tr = 1
	}
	var e *C.char
	if C.hdl_model_forward(m.lib.c, m.p, (*C.float)(&x[0]), C.int64_t(n), C.int64_t(m.spec.InChans),
		C.int64_t(h), C.int64_t(w), tr, (*C.float)(&out[0]), &e) != 0 {
		return nil, cErr("forward", e)
	}
	return out, nil
}
