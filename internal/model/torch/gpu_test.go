package torch

import (
	"encoding/json"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/model"
)

// TestGPUTrainStep is the issue-3 GPU check: on a CUDA device it trains the real configuration
// (seresnext50_32x4d, 512 px by default) with and without bfloat16 autocast for a short timed run and
// reports images/s; it also checks the CUDA eval forward against the CPU forward of the same weights.
// Without CUDA it is skipped (CI and these CPU machines). scripts/gpu-check.sh runs it on a device
// machine beside the PyTorch eager baseline (scripts/gpu_eager.py). Env: HPA_GPU_ARCH, HPA_GPU_SIZE,
// HPA_GPU_BATCH, HPA_GPU_STEPS, HPA_GPU_OUT (a JSON file for the results), HPA_GPU_DEVICE (cuda:0).
func TestGPUTrainStep(t *testing.T) {
	lib := openLib(t)
	dev := envOr("HPA_GPU_DEVICE", "cuda:0")
	if !lib.CUDAAvailable() && os.Getenv("HPA_GPU_FORCE_CPU") == "" {
		t.Skip("no CUDA device (the check runs on a GPU machine: scripts/gpu-check.sh)")
	}
	if !lib.CUDAAvailable() {
		dev = "cpu" // HPA_GPU_FORCE_CPU: smoke-test this check on a CPU machine with tiny settings
	}
	arch := envOr("HPA_GPU_ARCH", "seresnext50_32x4d")
	size, batch, steps := envInt("HPA_GPU_SIZE", 512), envInt("HPA_GPU_BATCH", 32), envInt("HPA_GPU_STEPS", 20)
	spec, err := model.Preset(arch)
	if err != nil {
		t.Fatal(err)
	}
	x, y := randomBatch(7, batch, spec.InChans, size, spec.NumClasses)
	results := map[string]any{"arch": arch, "size": size, "batch": batch, "steps": steps, "device": dev, "version": lib.Version()}
	for _, amp := range []bool{false, true} {
		if amp && dev == "cpu" {
			continue
		}
		b, err := NewBackend(lib, spec, dev, 1, BackendOptions{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true, Loss: "bce", AMP: amp})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 { // warm-up (cuDNN autotuning, allocator)
			if _, err := b.TrainStep(x, batch, size, y, 0.1); err != nil {
				t.Fatal(err)
			}
		}
		t0 := time.Now()
		var loss float64
		for range steps {
			if loss, err = b.TrainStep(x, batch, size, y, 0.1); err != nil {
				t.Fatal(err)
			}
		}
		el := time.Since(t0) // TrainStep copies the loss to the host, so each step has finished
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			t.Errorf("amp=%v: loss %v", amp, loss)
		}
		ips := float64(steps*batch) / el.Seconds()
		t.Logf("%s %dpx batch %d on %s, amp=%v: %.1f images/s (%.1f ms/step), loss %.4f", arch, size, batch, dev, amp, ips,
			el.Seconds()*1000/float64(steps), loss)
		results[map[bool]string{false: "fp32_images_per_s", true: "amp_bf16_images_per_s"}[amp]] = ips
		if !amp {
			// The device's eval forward equals the CPU forward of the same weights (fp32; cuDNN may
			// pick other algorithms, so a looser bound than the CPU parity test).
			w, err := b.Weights()
			if err != nil {
				t.Fatal(err)
			}
			cpu, err := lib.NewModel(spec, "cpu", 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := cpu.SetWeights(w); err != nil {
				t.Fatal(err)
			}
			n := min(batch, 2)
			a, err := b.Predict(x[:n*spec.InChans*size*size], n, size)
			if err != nil {
				t.Fatal(err)
			}
			c, err := cpu.Forward(x[:n*spec.InChans*size*size], n, size, size, false)
			cpu.Close()
			if err != nil {
				t.Fatal(err)
			}
			var maxd float64
			for i := range a {
				maxd = max(maxd, math.Abs(float64(a[i]-c[i])))
			}
			results["eval_max_abs_diff_vs_cpu"] = maxd
			if maxd > 1e-2 {
				t.Errorf("device eval forward differs from the CPU forward by %g", maxd)
			}
		}
		b.Close()
	}
	if p := os.Getenv("HPA_GPU_OUT"); p != "" {
		buf, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}
