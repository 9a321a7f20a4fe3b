package torch

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hpa-plates/hpa/internal/model"
)

func randomBatch(seed uint64, n, c, s, classes int) (x, y []float32) {
	r := rand.New(rand.NewPCG(seed, 1))
	x = make([]float32, n*c*s*s)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	y = make([]float32, n*classes)
	for i := range y {
		if r.IntN(5) == 0 {
			y[i] = 1
		}
	}
	return
}

// A checkpoint of weights + momentum buffers taken after k steps, loaded into a fresh backend, gives
// exactly the losses the uninterrupted backend gives for the following steps.
func TestBackendResumeIsExact(t *testing.T) {
	lib := openLib(t)
	spec, _ := model.Preset("seresnext_tiny")
	opts := BackendOptions{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true, Loss: "bce"}
	const n, s = 4, 32
	batches := make([][2][]float32, 6)
	for i := range batches {
		x, y := randomBatch(uint64(i), n, spec.InChans, s, spec.NumClasses)
		batches[i] = [2][]float32{x, y}
	}
	lrs := []float64{0.1, 0.09, 0.07, 0.05, 0.03, 0.01}
	run := func(b *Backend, from, to int) []float64 {
		var out []float64
		for i := from; i < to; i++ {
			l, err := b.TrainStep(batches[i][0], n, s, batches[i][1], lrs[i])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, l)
		}
		return out
	}
	a, err := NewBackend(lib, spec, "cpu", 7, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if st, err := a.OptimizerState(); err != nil || len(st) != 0 {
		t.Fatalf("before the first step there is no momentum: %d buffers, %v", len(st), err)
	}
	full := run(a, 0, 6)

	b, err := NewBackend(lib, spec, "cpu", 7, opts)
	if err != nil {
		t.Fatal(err)
	}
	first := run(b, 0, 3)
	w, err := b.Weights()
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.OptimizerState()
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	params := 0
	for _, ts := range spec.Tensors() {
		if ts.Kind == model.Param {
			params++
		}
	}
	if len(st) != params {
		t.Fatalf("%d momentum buffers, want one per parameter (%d)", len(st), params)
	}

	c, err := NewBackend(lib, spec, "cpu", 99, opts) // another seed: everything comes from the checkpoint
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetWeights(w); err != nil {
		t.Fatal(err)
	}
	if err := c.SetOptimizerState(st); err != nil {
		t.Fatal(err)
	}
	rest := run(c, 3, 6)
	if got := append(first, rest...); !slices.Equal(got, full) {
		t.Fatalf("resumed losses %v != uninterrupted %v", got, full)
	}

	// Without the momentum the continuation differs: the test above can fail.
	d, err := NewBackend(lib, spec, "cpu", 99, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.SetWeights(w); err != nil {
		t.Fatal(err)
	}
	if noMom := run(d, 3, 6); slices.Equal(noMom[1:], full[4:]) {
		t.Fatal("momentum had no effect on the continuation")
	}
	if err := c.SetOptimizerState(map[string][]float32{"bn1.running_mean": make([]float32, spec.StemWidth)}); err == nil {
		t.Error("momentum for a buffer must be refused")
	}
	if err := c.SetOptimizerState(map[string][]float32{"fc.bias": make([]float32, 3)}); err == nil {
		t.Error("wrong size must be refused")
	}
}
