package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/local"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/synth"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

// hpa train on a tiny synthetic set writes a model set that hpa label then uses.
func TestTrainThenLabel(t *testing.T) {
	lib := torchShim(t)
	data := t.TempDir()
	if _, err := synth.Generate(context.Background(), synth.Options{Out: data, Samples: 24, Size: 32, Seed: 4, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "set")
	t.Setenv("HPA_TORCH_LIBRARY", lib)
	t.Setenv("HPA_TORCH_THREADS", "1")
	t.Setenv("HPA_TRAIN_AUGMENT_ERASE_PROB", "0.9") // env layer for a non-flag key
	res, err := runCLI(t, "train", "--data", data, "--out", out, "--arch", "seresnext_tiny", "--size", "32",
		"--folds", "2", "--cycles", "1", "--epochs", "1", "--batch", "4", "--tta-views", "2", "--price-per-hour", "3.5")
	if err != nil {
		t.Fatalf("%v\n%s", err, res)
	}
	if !strings.Contains(res, "warning: class ") || !strings.Contains(res, "fewer than 2 folds; folds without it") {
		t.Errorf("no rare-class warning on stderr:\n%s", res)
	}
	if !strings.Contains(res, "model set: ") || !strings.Contains(res, "out-of-fold macro-F1") || !strings.Contains(res, "cost ") {
		t.Errorf("summary:\n%s", res)
	}
	m, err := model.ReadManifest(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Members) != 2 || m.InputSize != 32 || m.TTAViews != 2 || m.Version != "seresnext_tiny-32px-k2-c1x1-s1" {
		t.Errorf("manifest: %d members, size %d, views %d, version %s", len(m.Members), m.InputSize, m.TTAViews, m.Version)
	}
	var rep struct {
		Cost float64 `json:"cost"`
	}
	b, _ := os.ReadFile(filepath.Join(out, "report.json"))
	if err := json.Unmarshal(b, &rep); err != nil || rep.Cost <= 0 {
		t.Errorf("report cost %v %v", rep.Cost, err)
	}
	labels := filepath.Join(t.TempDir(), "labels")
	code, stderr := labelRun(t, "label", filepath.Join(data, "train"), "--model", filepath.Join(out, "manifest.json"), "--out", labels)
	if code != 0 {
		t.Fatalf("label exit %d:\n%s", code, stderr)
	}
	js, _ := filepath.Glob(filepath.Join(labels, "*.json"))
	if len(js) != 24 {
		t.Errorf("%d label files", len(js))
	}
}

func TestTrainConfigLayers(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfgFile, []byte("train:\n  epochs: 7\n  augment:\n    contrast: 0.5\n  balance:\n    shares: [0.6, 0.3, 0.1]\n"), 0o644)
	t.Setenv("HPA_TRAIN_EPOCHS", "9")
	t.Setenv("HPA_TRAIN_AUGMENT_ROT90", "false")
	cfg := config.New()
	root := newRootWith(cfg)
	cmd, _, err := root.Find([]string{"train"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags([]string{"--cycles", "3"}); err != nil {
		t.Fatal(err)
	}
	if err := config.Load(cfg, cfgFile); err != nil {
		t.Fatal(err)
	}
	c, err := config.Train(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cycles != 3 || c.EpochsPerCycle != 9 || c.Augment.Contrast != 0.5 || c.Augment.Rot90 || c.Balance.Shares != [3]float64{0.6, 0.3, 0.1} {
		t.Errorf("layers: cycles %d (flag 3), epochs %d (env 9), contrast %v (file 0.5), rot90 %v (env false), shares %v (file)",
			c.Cycles, c.EpochsPerCycle, c.Augment.Contrast, c.Augment.Rot90, c.Balance.Shares)
	}
	if c.Augment.FlipLR != true || c.LR != 0.003 || c.Optimizer != "adamw" || c.Init != "pytorch" || c.PriorBias || c.Balance.MaxRepeat != 4 {
		t.Errorf("defaults: flip_lr %v lr %v", c.Augment.FlipLR, c.LR)
	}
}

// --data and --out as s3:// prefixes on the in-process S3 server: the data is downloaded, the model
// set uploaded (without checkpoints), and a second run on the same --out resumes from what is there.
func TestTrainS3DataAndOut(t *testing.T) {
	lib := torchShim(t)
	srv := servers.S3(t, s3local.Options{AccessKey: "trainkey", SecretKey: "trainsecret1", Buckets: []string{"lab"}})
	ctx := context.Background()
	data := t.TempDir()
	if _, err := synth.Generate(ctx, synth.Options{Out: data, Samples: 12, Size: 32, Seed: 5, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	client, err := objstore.NewClient(ctx, objstore.Config{Endpoint: srv.Endpoint(), Region: "us-east-1", PathStyle: true, AccessKey: "trainkey", SecretKey: "trainsecret1"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := objstore.Upload(ctx, client, data, objstore.URL{Bucket: "lab", Prefix: "datasets/synth/"}); err != nil || n != 49 {
		t.Fatalf("uploaded %d, %v", n, err)
	}
	t.Setenv("HPA_TORCH_LIBRARY", lib)
	t.Setenv("HPA_TORCH_THREADS", "1")
	t.Setenv("HPA_CACHE_DIR", t.TempDir())
	// The S3 settings come from an endpoints file, as after `hpa up`.
	ep := filepath.Join(t.TempDir(), "endpoints.json")
	if err := (local.Endpoints{S3Endpoint: srv.Endpoint(), Region: "us-east-1", Bucket: "lab", AccessKey: "trainkey", SecretKey: "trainsecret1"}).Write(ep); err != nil {
		t.Fatal(err)
	}
	args := []string{"train", "--endpoints", ep, "--data", "s3://lab/datasets/synth", "--out", "s3://lab/models/v1/", "--arch", "seresnext_tiny",
		"--size", "32", "--folds", "2", "--cycles", "1", "--epochs", "1", "--batch", "4", "--tta-views", "1"}
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	back := t.TempDir()
	if _, err := objstore.Download(ctx, client, objstore.URL{Bucket: "lab", Prefix: "models/v1/"}, back); err != nil {
		t.Fatal(err)
	}
	m, err := model.ReadManifest(filepath.Join(back, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, mem := range m.Members {
		if sum, err := model.FileSHA256(filepath.Join(back, mem.File)); err != nil || sum != mem.SHA256 {
			t.Errorf("member %s in S3: %v", mem.File, err)
		}
	}
	for _, f := range []string{"report.md", "curves.png", "folds.csv"} {
		if _, err := os.Stat(filepath.Join(back, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(back, "checkpoints")); err == nil {
		t.Error("checkpoints were uploaded")
	}
	// Again on the same --out: every fold is done, nothing retrains, the same members are uploaded.
	if out, err = runCLI(t, args...); err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	again, _ := os.ReadFile(filepath.Join(back, "manifest.json"))
	back2 := t.TempDir()
	objstore.Download(ctx, client, objstore.URL{Bucket: "lab", Prefix: "models/v1/"}, back2)
	if now, _ := os.ReadFile(filepath.Join(back2, "manifest.json")); !bytes.Equal(again, now) {
		t.Error("resumed run changed the model set")
	}
}

// An `hpa train` process killed with SIGKILL after its first checkpoint and started again on the same
// --out finishes with exactly the model set of an uninterrupted run (member bytes identical).
func TestTrainProcessKilledAndResumed(t *testing.T) {
	lib := torchShim(t)
	data := t.TempDir()
	if _, err := synth.Generate(context.Background(), synth.Options{Out: data, Samples: 40, Size: 32, Seed: 12, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HPA_TORCH_LIBRARY", lib)
	t.Setenv("HPA_TORCH_THREADS", "1")
	args := func(out string) []string {
		return []string{"train", "--data", data, "--out", out, "--arch", "seresnext_tiny", "--size", "32", "--folds", "2",
			"--train-folds", "0", "--cycles", "2", "--epochs", "12", "--batch", "4", "--tta-views", "1", "--snapshots", "all"}
	}
	ref := filepath.Join(t.TempDir(), "ref")
	if out, err := runCLI(t, args(ref)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	killed := filepath.Join(t.TempDir(), "killed")
	cmd, log := startHelper(t, args(killed)...)
	ckpt := filepath.Join(killed, "checkpoints", "fold0.ckpt")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(ckpt); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint appeared:\n%s", log.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(killed, "manifest.json")); err == nil {
		t.Fatal("the run finished before the kill; nothing was resumed")
	}
	if out, err := runCLI(t, args(killed)...); err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	a, err := model.ReadManifest(filepath.Join(ref, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := model.ReadManifest(filepath.Join(killed, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Members) != 2 || len(b.Members) != 2 {
		t.Fatalf("members %d / %d", len(a.Members), len(b.Members))
	}
	for i := range a.Members {
		if a.Members[i].SHA256 != b.Members[i].SHA256 {
			t.Errorf("member %s differs after kill + resume", a.Members[i].File)
		}
	}
	if a.Metrics["oof_macro_f1"] != b.Metrics["oof_macro_f1"] {
		t.Errorf("OOF macro-F1 %v vs %v", a.Metrics["oof_macro_f1"], b.Metrics["oof_macro_f1"])
	}
}
