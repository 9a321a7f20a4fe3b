package train

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/torch"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/testenv"
	"github.com/hpa-plates/hpa/internal/train/folds"
)

// pythonTorch returns the interpreter of Debian's python3-torch ($HPA_PYTHON, default
// /usr/bin/python3). Without torch the test is skipped, unless CI is set: then it fails.
func pythonTorch(t testing.TB) string {
	t.Helper()
	py := os.Getenv("HPA_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if out, err := exec.Command(py, "-c", "import torch").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("%s cannot import torch (install python3-torch: scripts/setup.sh): %v %s", py, err, out)
		if os.Getenv("CI") == "" {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	return py
}

func writeF32(t testing.TB, path string, v []float32) {
	t.Helper()
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// loaderBatches returns the first steps batches the trainer's own loader prepares for fold 0 of cfg
// (sampler, decode, augmentation, normalization), epoch after epoch.
func loaderBatches(t *testing.T, cfg Config, steps int) []batchPrep {
	t.Helper()
	order, err := pipeline.ParseChannelOrder(pipeline.ChannelNames[:cfg.Arch.InChans])
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := loadDataset(cfg.DataDir, cfg.Size, order, cfg.Decode, false, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	tr := &trainer{cfg: cfg, data: data}
	if tr.cfg.Normalization, err = data.channelStats(2); err != nil {
		t.Fatal(err)
	}
	tr.norm = pipeline.Norm{Mean: tr.cfg.Normalization.Mean, Std: tr.cfg.Normalization.Std}
	if tr.folds, err = folds.StratifiedKFold(data.labels, cfg.Arch.NumClasses, folds.Options{K: cfg.Folds, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	trainIdx, _ := tr.split(0)
	smp, err := tr.sampler(0, trainIdx)
	if err != nil {
		t.Fatal(err)
	}
	var out []batchPrep
	for e := 0; len(out) < steps; e++ {
		for p := range tr.loader(context.Background(), smp.Epoch(e)[:tr.batchesPerEpoch(0)], e) {
			if p.err != nil {
				t.Fatal(p.err)
			}
			if len(out) < steps {
				out = append(out, p)
			}
		}
	}
	return out
}

// TestStepParityWithPyTorch: the Go trainer's training steps (libtorch shim) and a plain PyTorch
// module built from the same spec (scripts/torch_steps.py), started from the same exported initial
// weights (loaded by timm name) and fed the same 50 batches from the project's loader (balanced
// sampler, all augmentations, per-channel normalization) with the same cosine learning rates, agree
// step by step: every loss within 1e-4 relative, every weight and BatchNorm buffer after the last
// step within 1e-4 relative (per tensor, L2), BatchNorm in train mode -- for SGD (Nesterov, weight
// decay) and AdamW.
func TestStepParityWithPyTorch(t *testing.T) {
	py := pythonTorch(t)
	lib := torchLib(t)
	const steps = 50
	data := synthData(t, 96, 32, 21)
	cfg := tinyConfig(t, data, t.TempDir())
	cfg.BatchSize = 8
	batches := loaderBatches(t, cfg, steps)
	spec := cfg.Arch
	s := cfg.Size
	var xs, ys []float32
	for _, b := range batches {
		xs = append(xs, b.x...)
		ys = append(ys, b.targets...)
	}
	dir := t.TempDir()
	writeF32(t, filepath.Join(dir, "x.bin"), xs)
	writeF32(t, filepath.Join(dir, "y.bin"), ys)
	sch := CyclicCosine{Max: 1, Cycles: 1, EpochsPerCycle: 1, StepsPerEpoch: steps}
	script := filepath.Join(testenv.RepoRoot(t), "scripts", "torch_steps.py")
	for _, o := range []torch.BackendOptions{
		{Optimizer: "sgd", LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true, Loss: "bce"},
		{Optimizer: "adamw", LR: 0.003, WeightDecay: 0.05, Loss: "bce"},
	} {
		t.Run(o.Optimizer, func(t *testing.T) {
			b, err := torch.NewBackend(lib, spec, "cpu", 7, o)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			init, err := b.Weights()
			if err != nil {
				t.Fatal(err)
			}
			st, err := model.SafetensorsFromWeights(spec, init)
			if err != nil {
				t.Fatal(err)
			}
			initPath := filepath.Join(dir, o.Optimizer+"-init.safetensors")
			if err := model.WriteSafetensors(initPath, st, nil); err != nil {
				t.Fatal(err)
			}
			lrs := make([]float64, steps)
			goLoss := make([]float64, steps)
			for i, bt := range batches {
				lrs[i] = o.LR * sch.LR(i)
				if goLoss[i], err = b.TrainStep(bt.x, bt.n, s, bt.targets, lrs[i]); err != nil {
					t.Fatal(err)
				}
			}
			final, err := b.Weights()
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, o.Optimizer+"-final.safetensors")
			run := map[string]any{"spec": spec, "init": initPath, "out": out, "x": filepath.Join(dir, "x.bin"),
				"y": filepath.Join(dir, "y.bin"), "steps": steps, "batch": cfg.BatchSize, "size": s, "lrs": lrs,
				"optimizer": o.Optimizer, "momentum": o.Momentum, "weight_decay": o.WeightDecay, "nesterov": o.Nesterov, "threads": 1}
			rj, _ := json.Marshal(run)
			runPath := filepath.Join(dir, o.Optimizer+"-run.json")
			if err := os.WriteFile(runPath, rj, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(py, script, runPath)
			cmd.Stderr = os.Stderr
			stdout, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v", script, err)
			}
			var res struct {
				Losses []float64 `json:"losses"`
			}
			if err := json.Unmarshal(stdout, &res); err != nil || len(res.Losses) != steps {
				t.Fatalf("torch_steps.py output %q: %v", stdout, err)
			}
			worst := 0.0
			for i := range goLoss {
				r := math.Abs(goLoss[i]-res.Losses[i]) / math.Abs(res.Losses[i])
				worst = max(worst, r)
				if r > 1e-4 {
					t.Errorf("step %d: loss %.7f (Go) vs %.7f (PyTorch), rel %.2g", i, goLoss[i], res.Losses[i], r)
				}
			}
			ref, err := model.ReadSafetensors(out)
			if err != nil {
				t.Fatal(err)
			}
			worstW, moved := 0.0, 0
			tensors := 0
			for _, ts := range spec.Tensors() {
				if ts.Kind == model.NumBatches { // the shim does not keep the counter (unused with BN momentum)
					continue
				}
				tensors++
				a, p0 := final[ts.Name], init[ts.Name]
				r, ok := ref[ts.Name]
				if !ok || len(r.Data) != len(a) {
					t.Fatalf("%s: PyTorch result lacks it (%v) or has another size (%d vs %d)", ts.Name, ok, len(r.Data), len(a))
				}
				var d2, n2, m2 float64
				for i := range a {
					d := float64(a[i]) - float64(r.Data[i])
					d2 += d * d
					n2 += float64(r.Data[i]) * float64(r.Data[i])
					dm := float64(a[i]) - float64(p0[i])
					m2 += dm * dm
				}
				if m2 > 0 {
					moved++
				}
				rel := math.Sqrt(d2) / math.Max(math.Sqrt(n2), 1e-12)
				worstW = max(worstW, rel)
				if rel > 1e-4 {
					t.Errorf("%s after %d steps: rel L2 difference %.2g", ts.Name, steps, rel)
				}
			}
			// Training happened: the loss fell and (nearly) every tensor moved.
			if moved < tensors*9/10 || goLoss[steps-1] >= goLoss[0] {
				t.Errorf("%d of %d tensors moved; loss %.4f -> %.4f", moved, tensors, goLoss[0], goLoss[steps-1])
			}
			t.Logf("%s: %d steps, loss %.4f -> %.4f; worst rel loss diff %.2g, worst rel weight diff %.2g",
				o.Optimizer, steps, goLoss[0], goLoss[steps-1], worst, worstW)
		})
	}
}
