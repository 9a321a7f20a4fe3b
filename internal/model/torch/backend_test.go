package torch

import (
	"math/rand/v2"
	"path/filepath"
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
	for _, o := range []struct {
		name  string
		opts  BackendOptions
		slots int
	}{
		{"sgd", BackendOptions{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true, Loss: "bce"}, 1},
		{"adamw", BackendOptions{Optimizer: "adamw", LR: 2e-3, WeightDecay: 1e-4, Loss: "bce"}, 3},
	} {
		t.Run(o.name, func(t *testing.T) { testResume(t, o.opts, o.slots) })
	}
}

func testResume(t *testing.T, opts BackendOptions, slots int) {
	lib := openLib(t)
	spec, _ := model.Preset("seresnext_tiny")
	const n, s = 4, 32
	batches := make([][2][]float32, 6)
	for i := range batches {
		x, y := randomBatch(uint64(i), n, spec.InChans, s, spec.NumClasses)
		batches[i] = [2][]float32{x, y}
	}
	lrs := []float64{1, 0.9, 0.7, 0.5, 0.3, 0.1}
	for i := range lrs {
		lrs[i] *= opts.LR
	}
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
	if len(st) != slots*params {
		t.Fatalf("%d state entries, want %d per parameter (%d)", len(st), slots, params)
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
		t.Fatal("the optimizer state had no effect on the continuation")
	}
	slot := "momentum/"
	if opts.Optimizer == "adamw" {
		slot = "exp_avg/"
	}
	for key, n := range map[string]int{slot + "bn1.running_mean": spec.StemWidth, slot + "fc.bias": 3, "fc.bias": spec.NumClasses, "nosuch/fc.bias": spec.NumClasses} {
		if err := c.SetOptimizerState(map[string][]float32{key: make([]float32, n)}); err == nil {
			t.Errorf("state %s with %d values must be refused", key, n)
		}
	}
}

// A timm-named ImageNet-style checkpoint (3 input channels, 1000 classes) initializes the backend:
// the stem becomes the RGB mean copied to the 4 channels, other layers are taken as they are, the
// classifier of another class count keeps a seeded init.
func TestBackendPretrained(t *testing.T) {
	lib := openLib(t)
	spec, _ := model.Preset("seresnext_tiny")
	rgb := spec
	rgb.InChans, rgb.NumClasses = 3, 1000
	w := model.InitWeights(rgb, 42)
	tensors, err := model.SafetensorsFromWeights(rgb, w)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "imagenet.safetensors")
	if err := model.WriteSafetensors(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	b, err := NewBackend(lib, spec, "cpu", 1, BackendOptions{LR: 0.1, Momentum: 0.9, Nesterov: true, Loss: "bce", Pretrained: path})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := b.Weights()
	if err != nil {
		t.Fatal(err)
	}
	// conv1.weight [16, 3, 7, 7] -> [16, 4, 7, 7]: every input channel is the mean of R, G, B.
	src, dst := w["conv1.weight"], got["conv1.weight"]
	for o := 0; o < spec.StemWidth; o++ {
		for k := 0; k < 49; k++ {
			mean := (src[(o*3+0)*49+k] + src[(o*3+1)*49+k] + src[(o*3+2)*49+k]) / 3
			for c := 0; c < 4; c++ {
				if d := dst[(o*4+c)*49+k] - mean; d > 1e-6 || d < -1e-6 {
					t.Fatalf("conv1 out %d in %d tap %d: %v, want RGB mean %v", o, c, k, dst[(o*4+c)*49+k], mean)
				}
			}
		}
	}
	if !slices.Equal(got["layer2.0.conv2.weight"], w["layer2.0.conv2.weight"]) {
		t.Error("a middle layer was not taken from the checkpoint")
	}
	if b.Adapt == nil || !b.Adapt.StemAdapted || b.Adapt.StemFrom != 3 || b.Adapt.StemTo != 4 {
		t.Errorf("adapt report %+v", b.Adapt)
	}
	if len(got["fc.weight"]) != spec.NumClasses*spec.Features() {
		t.Errorf("fc.weight has %d values", len(got["fc.weight"]))
	}
	if _, err := NewBackend(lib, spec, "cpu", 1, BackendOptions{LR: 0.1, Loss: "bce", Pretrained: path + ".missing"}); err == nil {
		t.Error("a missing checkpoint must fail")
	}
}
