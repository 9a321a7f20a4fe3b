package training

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/runs"
	"github.com/hpa-plates/hpa/internal/train/runner"
)

// BenchmarkTrainingOverhead measures the orchestration overhead (`make bench-training`): a K=4 run
// through the training consumer with one worker (label file in S3 -> registry -> snapshot -> fold
// jobs -> staged data -> per-epoch S3 checkpoints -> merge -> decision) against `hpa train`
// (runner.Run) of the same folds, data and recipe in one process, measured in the same run,
// alternating. Reports the wall ratio (goal <= 1.05). HPA_BENCH_TRAINING_SAMPLES / _SIZE / _EPOCHS
// change the workload (defaults 96 samples, 64 px, 3 epochs).
func BenchmarkTrainingOverhead(b *testing.B) {
	lib := torchLib(b)
	env := func(k string, d int) int {
		if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
			return v
		}
		return d
	}
	samples, size, epochs := env("HPA_BENCH_TRAINING_SAMPLES", 96), env("HPA_BENCH_TRAINING_SIZE", 64), env("HPA_BENCH_TRAINING_EPOCHS", 3)
	settings := Settings{Arch: "seresnext_tiny", Size: size, Folds: 4, Cycles: 1, EpochsPerCycle: epochs, Batch: 8, TTAViews: 2, Seed: 1, Name: "hpa"}
	var orchBest, baseBest, orchCPU, baseCPU time.Duration
	for round := 0; round < max(2, b.N); round++ {
		e := newEnv(b)
		ctx := context.Background()
		data := synthDataSize(b, samples, size, int64(7+round))
		e.uploadImages(b, data, "training/images/")
		cfg := testConfig(e, b)
		cfg.Settings, cfg.Quiet, cfg.Poll, cfg.MinNew = settings, 0, time.Second, 1 // the default poll
		_, stopCoord := startCoordinator(b, e, cfg)
		ctxW, cancelW := context.WithCancel(ctx)
		w, err := NewWorker(ctxW, WorkerConfig{Name: "bench", CacheDir: filepath.Join(e.dir, "w"), Torch: lib, Workers: 2, AckWait: time.Minute}, e.js, e.store, e.log)
		if err != nil {
			b.Fatal(err)
		}
		wdone := make(chan struct{})
		go func() { defer close(wdone); _ = w.Run(ctxW) }()
		time.Sleep(2 * time.Second) // the worker has opened libtorch and waits for jobs
		csv, _ := os.ReadFile(filepath.Join(data, "train.csv"))
		start, cpu0 := time.Now(), processCPU()
		e.put(b, "training/labels/bench.csv", csv)
		var r *runs.Run
		for r == nil || r.State != runs.RunDone {
			time.Sleep(200 * time.Millisecond) // (polling the run record costs CPU in this process)
			if rs := e.runRecords(b); len(rs) == 1 {
				r = rs[0]
				if r.State == runs.RunFailed {
					b.Fatalf("run failed: %s", r.Error)
				}
			}
			if time.Since(start) > 20*time.Minute {
				b.Fatal("run did not finish")
			}
		}
		orch, orchC := time.Since(start), processCPU()-cpu0
		cancelW()
		<-wdone
		stopCoord()
		// hpa train on the same data and folds.
		ref := filepath.Join(e.dir, "ref")
		if err := os.MkdirAll(filepath.Join(ref, "data", "train"), 0o755); err != nil {
			b.Fatal(err)
		}
		fb, err := e.store.Get(ctx, "training/runs/"+r.ID+"/data/folds.csv", 0)
		if err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(ref, "data", "folds.csv"), fb, 0o644)
		os.WriteFile(filepath.Join(ref, "data", "train.csv"), csv, 0o644)
		ents, _ := os.ReadDir(filepath.Join(data, "train"))
		for _, de := range ents {
			os.Link(filepath.Join(data, "train", de.Name()), filepath.Join(ref, "data", "train", de.Name()))
		}
		tc, err := settings.Config(filepath.Join(ref, "data"), filepath.Join(ref, "out"), filepath.Join(ref, "data", "folds.csv"), r.ID, "", 2)
		if err != nil {
			b.Fatal(err)
		}
		var so, se bytes.Buffer
		t0, c0 := time.Now(), processCPU()
		if err := runner.Run(ctx, runner.Options{Config: tc, Device: "cpu", Torch: lib}, &se, &so); err != nil {
			b.Fatalf("%v\n%s", err, se.String())
		}
		base, baseC := time.Since(t0), processCPU()-c0
		fmt.Printf("round %d: training consumer %.2fs (cpu %.2fs), hpa train %.2fs (cpu %.2fs): wall ratio %.3f, cpu ratio %.3f\n", round,
			orch.Seconds(), orchC.Seconds(), base.Seconds(), baseC.Seconds(), orch.Seconds()/base.Seconds(), orchC.Seconds()/baseC.Seconds())
		orchCPU, baseCPU = orchCPU+orchC, baseCPU+baseC
		if orchBest == 0 || orch < orchBest {
			orchBest = orch
		}
		if baseBest == 0 || base < baseBest {
			baseBest = base
		}
	}
	ratio := orchBest.Seconds() / baseBest.Seconds()
	fmt.Printf("K=4, %d samples, %d px, %d epochs: training consumer (1 worker) %.2fs, hpa train %.2fs (best of rounds): wall ratio %.3f (goal <= 1.05)\n",
		samples, size, epochs, orchBest.Seconds(), baseBest.Seconds(), ratio)
	cpuRatio := orchCPU.Seconds() / baseCPU.Seconds()
	fmt.Printf("process CPU time over all rounds: training consumer %.2fs, hpa train %.2fs: cpu ratio %.3f\n", orchCPU.Seconds(), baseCPU.Seconds(), cpuRatio)
	b.ReportMetric(ratio, "wall-ratio")
	b.ReportMetric(cpuRatio, "cpu-ratio")
	b.ReportMetric(orchBest.Seconds(), "consumer-s")
	b.ReportMetric(baseBest.Seconds(), "hpa-train-s")
}

// processCPU is the user + system CPU time of this process so far (every goroutine: the
// coordinator, the worker, the in-process S3 and NATS servers, libtorch's threads).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
