package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/consumers/training"
	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/model/torch"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/runs"
	"github.com/hpa-plates/hpa/internal/synth"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
	"github.com/hpa-plates/hpa/internal/train/runner"
)

// Two `hpa training worker` processes on four fold jobs; one is SIGKILLed in the middle of its
// fold, after its first epoch checkpoint reached S3. The other takes the job after AckWait, resumes
// from the S3 checkpoint, and the run completes: every other fold trained once, and every member is
// byte-identical to `hpa train`'s (runner.Run) on the same data, folds and recipe without a kill.
func TestTrainingWorkerKilledMidFold(t *testing.T) {
	lib := torchShim(t)
	dir := t.TempDir()
	ns, nc, js := servers.JetStream(t, filepath.Join(dir, "nats"))
	ctx := context.Background()
	if _, err := bus.EnsureEventsStream(ctx, js, bus.EventsStreamConfig{Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	const ak, sk, bucket = "AKIATRAINKILL", "train-kill-secret", "plates"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := servers.S3(t, s3local.Options{Dir: filepath.Join(dir, "s3"), AccessKey: ak, SecretKey: sk, Buckets: []string{bucket},
		Publisher: bus.JetStreamPublisher{JS: js}, Logger: quiet})
	s3cfg := objstore.Config{Endpoint: srv.Endpoint(), Region: "us-east-1", PathStyle: true, Bucket: bucket, AccessKey: ak, SecretKey: sk}
	store, err := objstore.Open(ctx, s3cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if _, err := synth.Generate(ctx, synth.Options{Out: data, Samples: 32, Size: 32, Seed: 5, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(data, "train"))
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(data, "train", e.Name()))
		if err := store.Put(ctx, "training/images/"+e.Name(), b, "image/png"); err != nil {
			t.Fatal(err)
		}
	}
	settings := training.Settings{Arch: "seresnext_tiny", Size: 32, Folds: 4, Cycles: 2, EpochsPerCycle: 3, Batch: 4, TTAViews: 2, Seed: 3, Name: "hpa"}
	cfg := training.DefaultConfig()
	cfg.MinNew, cfg.Quiet, cfg.Poll, cfg.Settings = 10, 200*time.Millisecond, 100*time.Millisecond, settings
	cfg.CacheDir = filepath.Join(dir, "coord")
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	co, err := training.NewCoordinator(cctx, cfg, nc, js, store, quiet)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = co.Run(cctx) }()

	worker := func(name string) (*syncBuffer, func()) {
		args := []string{"training", "worker", "--nats-url", ns.ClientURL(), "--s3-endpoint", srv.Endpoint(), "--s3-path-style",
			"--bucket", bucket, "--s3-access-key", ak, "--s3-secret-key", sk, "--name", name, "--ack-wait", "2s",
			"--workers", "1", "--torch-threads", "1", "--torch-library", lib}
		t.Setenv("HPA_CACHE_DIR", filepath.Join(dir, "cache-"+name))
		proc, out := startHelper(t, args...)
		return out, func() {
			if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = proc.Wait()
		}
	}
	outA, killA := worker("A")
	outB, _ := worker("B")
	csv, _ := os.ReadFile(filepath.Join(data, "train.csv"))
	if err := store.Put(ctx, "training/labels/all.csv", csv, "text/csv"); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.TrainingBucket})
	if err != nil {
		t.Fatal(err)
	}
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf(format+"\n--- worker A:\n%s\n--- worker B:\n%s", append(a, outA.String(), outB.String())...)
	}
	var runID string
	deadline := time.Now().Add(2 * time.Minute)
	for runID == "" {
		if e, err := kv.Get(ctx, "active"); err == nil {
			runID = string(e.Value())
		}
		if time.Now().After(deadline) {
			fail("no run started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Kill A once its fold's first checkpoint is in S3.
	killed := -1
	for killed < 0 {
		for k := range settings.Folds {
			e, err := kv.Get(ctx, fmt.Sprintf("fold.%s.%d", runID, k))
			if err != nil {
				continue
			}
			var fs training.FoldState
			_ = json.Unmarshal(e.Value(), &fs)
			if fs.Worker != "A" || fs.State != runs.FoldRunning {
				continue
			}
			if objs, _ := store.List(ctx, fmt.Sprintf("training/runs/%s/fold-%d/checkpoints/", runID, k)); len(objs) > 0 {
				killA()
				killed = k
				break
			}
		}
		if time.Now().After(deadline) {
			fail("worker A never checkpointed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The run completes on B.
	var run *runs.Run
	for run == nil || (run.State != runs.RunDone && run.State != runs.RunFailed) {
		if time.Now().After(deadline.Add(2 * time.Minute)) {
			fail("run did not finish: %+v", run)
		}
		time.Sleep(100 * time.Millisecond)
		if b, err := store.Get(ctx, runs.RunKey("", runID), 0); err == nil {
			run, _ = runs.ParseRun(b, runID)
		}
	}
	if run.State != runs.RunDone {
		fail("run %s: %s", run.State, run.Error)
	}
	for _, f := range run.Folds {
		want := 1
		if f.Fold == killed {
			want = 2
		}
		if f.State != runs.FoldDone || f.Attempts != want {
			t.Errorf("fold %d: %s, %d attempts (want %d), worker %s", f.Fold, f.State, f.Attempts, want, f.Worker)
		}
		if f.Fold == killed && f.Worker != "B" {
			t.Errorf("killed fold %d finished on %s", f.Fold, f.Worker)
		}
	}
	if ck, _ := store.Get(ctx, fmt.Sprintf("training/runs/%s/fold-%d/checkpoints/fold%d.ckpt", runID, killed, killed), 0); len(ck) == 0 {
		t.Logf("checkpoint layout changed: no fold%d.ckpt", killed)
	}
	// Reference: hpa train's runner on the run's data and folds, uninterrupted.
	ref := filepath.Join(dir, "ref")
	refData := filepath.Join(ref, "data")
	os.MkdirAll(filepath.Join(refData, "train"), 0o755)
	for _, name := range []string{"train.csv", "folds.csv"} {
		b, err := store.Get(ctx, "training/runs/"+runID+"/data/"+name, 0)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(refData, name), b, 0o644)
	}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(data, "train", e.Name()))
		os.WriteFile(filepath.Join(refData, "train", e.Name()), b, 0o644)
	}
	tc, err := settings.Config(refData, filepath.Join(ref, "out"), filepath.Join(refData, "folds.csv"), runID, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	var so, se bytes.Buffer
	if err := runner.Run(ctx, runner.Options{Config: tc, Device: "cpu", Torch: torch.Options{Library: lib, Threads: 1}}, &se, &so); err != nil {
		t.Fatalf("%v\n%s", err, se.String())
	}
	members, _ := filepath.Glob(filepath.Join(ref, "out", "members", "*.onnx"))
	if len(members) != settings.Folds*settings.Cycles {
		t.Fatalf("reference has %d members", len(members))
	}
	for _, m := range members {
		want, _ := os.ReadFile(m)
		got, err := store.Get(ctx, "models/"+runID+"/members/"+filepath.Base(m), 0)
		if err != nil {
			t.Errorf("member %s: %v", filepath.Base(m), err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("member %s differs from the uninterrupted run (killed fold %d)", filepath.Base(m), killed)
		}
	}
	if !strings.Contains(so.String(), "model set") {
		t.Logf("runner output: %s", so.String())
	}
}
