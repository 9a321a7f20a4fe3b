package model

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
)

// Weights are a model's tensors keyed by timm state-dict names, each flattened row-major in the
// shape Spec.Tensors gives. BatchNorm num_batches_tracked counters may be omitted (inference and
// the ONNX export do not use them).
type Weights map[string][]float32

// WeightsError reports weights that do not fit a spec: what is missing, of the wrong size,
// unknown to the architecture or not finite.
type WeightsError struct {
	Arch      string
	Missing   []string // names the spec needs that are absent
	WrongSize []string // "name: got N values, want M"
	Unknown   []string // names the spec does not have
	NonFinite []string // names holding NaN or Inf
}

func (e *WeightsError) Error() string {
	var parts []string
	list := func(what string, xs []string) {
		if len(xs) == 0 {
			return
		}
		const show = 5
		s := strings.Join(xs[:min(len(xs), show)], ", ")
		if len(xs) > show {
			s += fmt.Sprintf(" and %d more", len(xs)-show)
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s)", len(xs), what, s))
	}
	list("missing", e.Missing)
	list("of the wrong size", e.WrongSize)
	list("unknown", e.Unknown)
	list("not finite", e.NonFinite)
	return fmt.Sprintf("weights for %s: %s", e.Arch, strings.Join(parts, "; "))
}

// Check verifies that every tensor of the spec (except num_batches_tracked) is present with the
// right element count and finite values, and that no name is foreign to the spec.
func (w Weights) Check(spec Spec) error {
	e := &WeightsError{Arch: spec.Name}
	known := make(map[string]bool)
	for _, t := range spec.Tensors() {
		known[t.Name] = true
		v, ok := w[t.Name]
		if t.Kind == NumBatches {
			if ok && len(v) != 1 {
				e.WrongSize = append(e.WrongSize, fmt.Sprintf("%s: got %d values, want 1", t.Name, len(v)))
			}
			continue
		}
		if !ok {
			e.Missing = append(e.Missing, t.Name)
			continue
		}
		if len(v) != t.Size() {
			e.WrongSize = append(e.WrongSize, fmt.Sprintf("%s: got %d values, want %d %v", t.Name, len(v), t.Size(), t.Shape))
			continue
		}
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				e.NonFinite = append(e.NonFinite, t.Name)
				break
			}
		}
	}
	for name := range w {
		if !known[name] {
			e.Unknown = append(e.Unknown, name)
		}
	}
	sort.Strings(e.Unknown)
	if len(e.Missing)+len(e.WrongSize)+len(e.Unknown)+len(e.NonFinite) > 0 {
		return e
	}
	return nil
}

// Clone returns a deep copy.
func (w Weights) Clone() Weights {
	c := make(Weights, len(w))
	for k, v := range w {
		c[k] = append([]float32(nil), v...)
	}
	return c
}

// InitWeights returns freshly initialized weights, deterministic in (spec, seed), following timm's
// ResNet init: convolutions kaiming_normal_(mode='fan_out', nonlinearity='relu'), BatchNorm weight 1,
// bias 0, running mean 0, running var 1; the SE convolutions' biases and the classifier follow
// PyTorch's defaults (uniform +-1/sqrt(fan_in)). Unlike timm's zero_init_last the last BN of each
// block keeps weight 1, so every branch of a fresh model carries signal (exports are testable).
//
// Each tensor draws from its own generator seeded by (seed, name), so a tensor's values do not
// depend on the rest of the architecture (InitTensor gives the same values for one name).
func InitWeights(spec Spec, seed int64) Weights {
	w := make(Weights)
	ts := spec.Tensors()
	fanIn := fanIns(ts)
	for _, t := range ts {
		if t.Kind == NumBatches {
			continue
		}
		w[t.Name] = initTensor(t, fanIn[t.Name], seed)
	}
	return w
}

// InitTensor initializes the named tensor of the spec exactly as InitWeights does.
func InitTensor(spec Spec, name string, seed int64) ([]float32, error) {
	ts := spec.Tensors()
	for _, t := range ts {
		if t.Name == name && t.Kind != NumBatches {
			return initTensor(t, fanIns(ts)[name], seed), nil
		}
	}
	return nil, fmt.Errorf("arch %s has no tensor %q", spec.Name, name)
}

// fanIns maps every bias to the fan-in of its layer (weight elements per output unit).
func fanIns(ts []TensorSpec) map[string]int {
	m := make(map[string]int)
	for _, t := range ts {
		if (len(t.Shape) == 2 || len(t.Shape) == 4) && strings.HasSuffix(t.Name, ".weight") {
			m[strings.TrimSuffix(t.Name, ".weight")+".bias"] = t.Size() / t.Shape[0]
		}
	}
	return m
}

func initTensor(t TensorSpec, fanIn int, seed int64) []float32 {
	v := make([]float32, t.Size())
	h := fnv.New64a()
	h.Write([]byte(t.Name))
	rng := rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
	uniform := func(bound float64) {
		for i := range v {
			v[i] = float32((rng.Float64()*2 - 1) * bound)
		}
	}
	switch {
	case t.Kind == RunningMean:
		// zeros
	case t.Kind == RunningVar:
		fill(v, 1)
	case len(t.Shape) == 4: // convolution weight [out, in/groups, k, k]
		fanOut := t.Shape[0] * t.Shape[2] * t.Shape[3]
		std := math.Sqrt(2 / float64(fanOut))
		for i := range v {
			v[i] = float32(rng.NormFloat64() * std)
		}
	case len(t.Shape) == 2: // classifier weight [classes, features]
		uniform(1 / math.Sqrt(float64(t.Shape[1])))
	case fanIn > 0: // bias of a convolution or linear layer (SE fc1/fc2, fc)
		uniform(1 / math.Sqrt(float64(fanIn)))
	case strings.HasSuffix(t.Name, ".weight"): // BatchNorm gamma
		fill(v, 1)
	default: // BatchNorm beta: zeros
	}
	return v
}

func fill(v []float32, x float32) {
	for i := range v {
		v[i] = x
	}
}

// InitWeightsPyTorch returns weights initialized as plain PyTorch modules initialize themselves
// (what a PyTorch training script gets without an explicit init): every convolution and linear
// weight and bias uniform in +-1/sqrt(fan_in) (kaiming_uniform_ with a=sqrt(5)), fan_in = in/groups
// x k x k; BatchNorm weight 1, bias 0, running mean 0, running var 1. Deterministic in (spec, seed),
// one generator per tensor name.
func InitWeightsPyTorch(spec Spec, seed int64) Weights {
	w := make(Weights)
	ts := spec.Tensors()
	fanIn := fanIns(ts)
	for _, t := range ts {
		if t.Kind == NumBatches {
			continue
		}
		if len(t.Shape) == 4 || len(t.Shape) == 2 {
			v := make([]float32, t.Size())
			h := fnv.New64a()
			h.Write([]byte("pytorch:" + t.Name))
			rng := rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
			bound := 1 / math.Sqrt(float64(t.Size()/t.Shape[0]))
			for i := range v {
				v[i] = float32((rng.Float64()*2 - 1) * bound)
			}
			w[t.Name] = v
			continue
		}
		w[t.Name] = initTensor(t, fanIn[t.Name], seed)
	}
	return w
}
