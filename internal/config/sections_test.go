package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

func TestDecodeSection(t *testing.T) {
	v := New()
	// No decode.* key set: the decoder's own defaults (zero values).
	o, err := Decode(v)
	if err != nil || o != (pipeline.DecodeOptions{}) {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("decode:\n  max_pixels: 1000000\n  yellow_from: g\n"), 0o644)
	if err := Load(v, cfg); err != nil {
		t.Fatal(err)
	}
	o, err = Decode(v)
	if err != nil || o.MaxPixels != 1000000 || o.YellowFrom != "g" {
		t.Fatalf("file: %+v %v", o, err)
	}
	// The environment beats the file.
	t.Setenv("HPA_DECODE_MAX_PIXELS", "2048")
	if o, err = Decode(v); err != nil || o.MaxPixels != 2048 {
		t.Fatalf("env: %+v %v", o, err)
	}
	t.Setenv("HPA_DECODE_MAX_PIXELS", "lots")
	if _, err = Decode(v); err == nil || !strings.Contains(err.Error(), keyDecodeMaxPixels) {
		t.Fatalf("bad number: %v", err)
	}
	t.Setenv("HPA_DECODE_MAX_PIXELS", "10")
	t.Setenv("HPA_DECODE_YELLOW_FROM", "blue")
	if _, err = Decode(v); err == nil || !strings.Contains(err.Error(), "YellowFrom") {
		t.Fatalf("bad yellow_from: %v", err)
	}
}

func TestConnectionAndRuntimeSections(t *testing.T) {
	v := New()
	v.Set("ort.library", "/opt/ort/libonnxruntime.so")
	v.Set("ort.provider", "cuda")
	v.Set("ort.device_id", 1)
	v.Set("ort.intra_threads", 6)
	v.Set("ort.inter_threads", 2)
	want := model.RuntimeOptions{Library: "/opt/ort/libonnxruntime.so", Provider: "cuda", DeviceID: 1, IntraThreads: 6, InterThreads: 2}
	if got := Runtime(v); got != want {
		t.Errorf("Runtime = %+v, want %+v", got, want)
	}
	t.Setenv("HPA_NATS_URL", "nats://a:4222,nats://b:4222")
	t.Setenv("HPA_NATS_PASSWORD", "pw")
	v.Set("nats.user", "u")
	if n := NATS(v); n.URL != "nats://a:4222,nats://b:4222" || n.User != "u" || n.Password != "pw" {
		t.Errorf("NATS = %+v", n)
	}
	v.Set("s3.bucket", "plates")
	v.Set("s3.path_style", true)
	if s := S3(v); s.Bucket != "plates" || !s.PathStyle || s.Region != "us-east-1" {
		t.Errorf("S3 = %+v", s)
	}
	v.Set("torch.threads", 3)
	if o := Torch(v); o.Threads != 3 || o.Library != ".cache/hpatorch/libhpatorch.so" {
		t.Errorf("Torch = %+v", o)
	}
	if l := Log(v); l.Level != "info" || l.Format != "text" {
		t.Errorf("Log = %+v", l)
	}
}

func TestInferenceSection(t *testing.T) {
	v := New()
	v.Set("inference.batch", 5)
	v.Set("inference.ready_subject", "x.ready")
	v.Set("inference.max_batch_delay", "7ms")
	v.Set("s3.bucket", "b")
	c, err := Inference(v)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxBatch != 5 || c.ReadySubject != "x.ready" || c.MaxBatchDelay.Milliseconds() != 7 || c.Bucket != "b" ||
		c.ReadyStream != "HPA_READY" || c.FetchWorkers != 4 {
		t.Errorf("inference config %+v", c)
	}
	v.Set("inference.fetch_workers", 0)
	if _, err := Inference(v); err == nil || !strings.Contains(err.Error(), "inference.fetch_workers must be at least 1") {
		t.Errorf("zero workers: %v", err)
	}
}

// nats.replicas (default 1) is the replicas of the inference consumer's streams and buckets.
func TestInferenceNATSReplicas(t *testing.T) {
	c, err := Inference(New())
	if err != nil || c.Replicas != 1 {
		t.Fatalf("default replicas %d (%v), want 1", c.Replicas, err)
	}
	t.Setenv("HPA_NATS_REPLICAS", "3")
	if c, err = Inference(New()); err != nil || c.Replicas != 3 {
		t.Errorf("HPA_NATS_REPLICAS=3: %d (%v)", c.Replicas, err)
	}
	t.Setenv("HPA_NATS_REPLICAS", "0")
	if _, err = Inference(New()); err == nil || !strings.Contains(err.Error(), "nats.replicas") {
		t.Errorf("replicas 0: %v", err)
	}
}
