package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/hpa-plates/hpa/consumers/inference"
	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/local"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// syncBuffer is a goroutine-safe output sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func upPNG(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 11))
	img := image.NewGray(image.Rect(0, 0, size, size))
	for i := range img.Pix {
		img.Pix[i] = uint8(r.IntN(256))
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

type upRun struct {
	dataDir string
	ep      local.Endpoints
	store   *objstore.Bucket
	cancel  context.CancelFunc
	done    chan error
	out     *syncBuffer
}

// startUp runs `hpa up` in-process on dataDir with free ports.
func startUp(t testing.TB, dataDir, manifest string) *upRun {
	t.Helper()
	v := config.New()
	o := local.UpOptions{Stack: local.StackOptions{DataDir: dataDir, S3Addr: "127.0.0.1:0", Bucket: "plates", Region: "us-east-1"},
		Model: manifest, MetricsAddr: "127.0.0.1:0"}
	ctx, cancel := context.WithCancel(context.Background())
	r := &upRun{dataDir: dataDir, cancel: cancel, done: make(chan error, 1), out: &syncBuffer{}}
	start, err := inferenceOnStack(v, r.out, &o)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan local.Endpoints, 1)
	go func() { r.done <- local.Up(ctx, o, r.out, start, ready) }()
	select {
	case r.ep = <-ready:
	case err := <-r.done:
		t.Fatalf("up: %v\n%s", err, r.out.String())
	case <-time.After(60 * time.Second):
		t.Fatal("up did not become ready")
	}
	t.Cleanup(func() { r.stop(t) })
	store, err := objstore.Open(context.Background(), objstore.Config{Endpoint: r.ep.S3Endpoint, Region: r.ep.Region, PathStyle: true,
		Bucket: r.ep.Bucket, AccessKey: r.ep.AccessKey, SecretKey: r.ep.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	r.store = store
	return r
}

func (r *upRun) stop(t testing.TB) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("up returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("up did not stop within 30s")
	}
}

func (r *upRun) upload(t testing.TB, plate, id string, seed uint64) {
	t.Helper()
	for c, ch := range pipeline.ChannelNames {
		if err := r.store.Put(context.Background(), r.ep.UploadPrefix+plate+"/"+id+"_"+ch+".png", upPNG(64, seed*4+uint64(c)), "image/png"); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *upRun) waitLabel(t testing.TB, plate, id string) []byte {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		b, err := r.store.Get(context.Background(), r.ep.LabelsPrefix+plate+"/"+id+".json", 0)
		if err == nil {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("no label for %s/%s: %v\n%s", plate, id, err, r.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// `hpa up` labels uploads with the real ONNX Runtime ensemble, writes endpoints.json, serves
// metrics, stops cleanly, and resumes on the same data directory.
func TestUpLabelsAndResumes(t *testing.T) {
	manifest := labelModelSet(t)
	m, err := model.ReadManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := m.Digest()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	r := startUp(t, dataDir, manifest)

	b, err := os.ReadFile(filepath.Join(dataDir, "endpoints.json"))
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]string
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"s3_endpoint", "region", "bucket", "access_key", "secret_key", "upload_prefix", "labels_prefix", "nats_url",
		"nats_user", "nats_password", "metrics_url"} {
		if keys[k] == "" {
			t.Errorf("endpoints.json lacks %s", k)
		}
	}
	r.upload(t, "plate A", "s1", 1)
	r.upload(t, "plate A", "s2", 2)
	got := map[string][]byte{}
	for _, id := range []string{"s1", "s2"} {
		got[id] = r.waitLabel(t, "plate A", id)
		l, err := labels.ParseLabel(got[id])
		if err != nil {
			t.Fatal(err)
		}
		if l.Model.ManifestDigest != digest || l.Model.Members != 2 || l.Model.TTAViews != 8 || l.SampleID != id {
			t.Errorf("label %s: %+v", id, l.Model)
		}
	}
	// The counter moves right after the PUT the test saw: poll.
	var mb []byte
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(r.ep.MetricsURL)
		if err != nil {
			t.Fatal(err)
		}
		mb, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(mb), "hpa_inference_samples_labeled_total 2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed 2 labels:\n%s", mb)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ready, err := http.Get(strings.TrimSuffix(r.ep.MetricsURL, "/metrics") + "/readyz")
	if err != nil || ready.StatusCode != 200 {
		t.Errorf("readyz: %v %v", err, ready)
	}
	r.stop(t)
	if !strings.Contains(r.out.String(), "hpa up: stopped") {
		t.Errorf("no clean stop:\n%s", r.out.String())
	}

	// Restart on the same data directory: same credentials, old labels kept, new uploads labeled.
	r2 := startUp(t, dataDir, manifest)
	if r2.ep.AccessKey != r.ep.AccessKey || r2.ep.SecretKey != r.ep.SecretKey {
		t.Error("credentials changed across restarts")
	}
	r2.upload(t, "plate A", "s3", 3)
	r2.waitLabel(t, "plate A", "s3")
	for id, want := range got {
		got, err := r2.store.Get(context.Background(), r2.ep.LabelsPrefix+"plate A/"+id+".json", 0)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("label %s changed across restart (%v)", id, err)
		}
	}
	// The plate CSV lists all three samples.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := r2.store.Get(context.Background(), r2.ep.LabelsPrefix+"plate A/submission.csv", 0)
		if err == nil {
			rows, err := labels.ReadSubmission(bytes.NewReader(b))
			if err == nil && len(rows) == 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("plate CSV incomplete: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(r2.out.String(), "level=") && strings.Contains(strings.SplitN(r2.out.String(), "endpoints", 2)[1], r2.ep.SecretKey) {
		t.Error("secret key in the logs")
	}
}

// `hpa inference` joins a running service as a second replica over plain NATS + S3 URLs.
func TestInferenceCommandReplica(t *testing.T) {
	manifest := labelModelSet(t)
	r := startUp(t, t.TempDir(), manifest)
	ctx, cancel := context.WithCancel(context.Background())
	root := newRoot()
	logs := &syncBuffer{}
	root.SetOut(logs)
	root.SetErr(logs)
	// S3, NATS and the prefixes come from the endpoints file of `hpa up` alone.
	root.SetArgs([]string{"inference", "--endpoints", filepath.Join(r.dataDir, "endpoints.json"),
		"--model", filepath.Dir(manifest), "--metrics-addr", "", "--batch", "2"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "inference consumer running") {
		select {
		case err := <-done:
			t.Fatalf("inference exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("inference did not start:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 6 {
		r.upload(t, "p", fmt.Sprintf("x%d", i), uint64(10+i))
	}
	for i := range 6 {
		r.waitLabel(t, "p", fmt.Sprintf("x%d", i))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("inference: %v\n%s", err, logs.String())
	}
	if strings.Contains(logs.String(), r.ep.SecretKey) {
		t.Error("secret key logged")
	}
}

func TestInferenceCommandErrors(t *testing.T) {
	cases := [][]string{
		{"inference", "--batch", "0", "--nats-url", "nats://127.0.0.1:1"},
		{"inference", "--nats-url", "nats://user:hunter2@127.0.0.1:1", "--bucket", "b"},
		{"inference", "--nats-url", "nats://127.0.0.1:1", "--nats-tls-cert", "x.pem"},
	}
	for _, args := range cases {
		out, err := runCLI(t, args...)
		if err == nil {
			t.Errorf("%v: no error", args)
			continue
		}
		if strings.Contains(err.Error()+out, "hunter2") {
			t.Errorf("%v: password in the error: %v", args, err)
		}
	}
}

// `hpa demo` uploads a synthetic plate through the S3 API and prints its labels and macro-F1.
func TestDemo(t *testing.T) {
	manifest := labelModelSet(t)
	out, err := runCLI(t, "demo", "--data-dir", t.TempDir(), "--model", manifest, "--samples", "3", "--size", "64", "--timeout", "2m")
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	if !strings.Contains(out, "macro-F1") || !strings.Contains(out, "sample  ") || !strings.Contains(out, "hpa up: stopped") {
		t.Fatalf("demo output:\n%s", out)
	}
	if n := strings.Count(out, "\n"); n < 8 {
		t.Errorf("short demo output:\n%s", out)
	}
}

// inference.* keys follow the project's precedence: flags > HPA_* env > config file > defaults.
func TestInferenceConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("inference:\n  batch: 5\n  max_batch_delay: 7ms\n  fetch_workers: 3\n  labels_prefix: out/\ns3:\n  bucket: fromfile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HPA_INFERENCE_FETCH_WORKERS", "6")
	v := config.New()
	cmd := newInferenceCmd(v)
	if err := cmd.Flags().Parse([]string{"--batch", "9"}); err != nil {
		t.Fatal(err)
	}
	config.BindFlags(v, cmd, "inference", inferenceFlagKeys)
	if err := config.Load(v, file); err != nil {
		t.Fatal(err)
	}
	c, err := inferenceConfig(v, newLogger(v, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxBatch != 9 || c.FetchWorkers != 6 || c.MaxBatchDelay != 7*time.Millisecond || c.Bucket != "fromfile" ||
		c.LabelsPrefix != "out/" || c.WriteWorkers != inference.DefaultConfig().WriteWorkers {
		t.Errorf("config %+v", c)
	}
	t.Setenv("HPA_INFERENCE_WRITE_WORKERS", "0")
	if _, err := inferenceConfig(v, newLogger(v, io.Discard)); err == nil {
		t.Error("zero write workers accepted")
	}
}

// --endpoints FILE is the default of the S3 and NATS settings of a client command: flags > HPA_*
// env > config file > endpoints file > defaults, on the real flags of `hpa inference`.
func TestInferenceEndpointsPrecedence(t *testing.T) {
	dir := t.TempDir()
	ep := filepath.Join(dir, "endpoints.json")
	if err := (local.Endpoints{S3Endpoint: "http://127.0.0.1:9100", Region: "eu-local-1", Bucket: "ep-bucket", AccessKey: "AKEP",
		SecretKey: "sk-ep", UploadPrefix: "up/", LabelsPrefix: "lab/", NATSURL: "nats://127.0.0.1:4333",
		NATSUser: "hpa-ep", NATSPassword: "pw-ep"}).Write(ep); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("s3:\n  region: file-region\ninference:\n  labels_prefix: file-labels/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HPA_S3_SECRET_KEY", "sk-env")
	v := config.New()
	root := newRootWith(v)
	var got struct {
		s3  objstore.Config
		bus bus.Config
		inf inference.Config
	}
	cmd, _, err := root.Find([]string{"inference"})
	if err != nil {
		t.Fatal(err)
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		config.BindFlags(v, c, "inference", inferenceFlagKeys)
		got.s3, got.bus = config.S3(v), config.NATS(v)
		got.inf, err = config.Inference(v)
		return err
	}
	root.SetArgs([]string{"inference", "--config", file, "--endpoints", ep, "--bucket", "flag-bucket"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, got, want string }{
		{"bucket (flag)", got.s3.Bucket, "flag-bucket"}, {"secret key (env)", got.s3.SecretKey, "sk-env"},
		{"region (file)", got.s3.Region, "file-region"}, {"labels prefix (file)", got.inf.LabelsPrefix, "file-labels/"},
		{"endpoint (endpoints)", got.s3.Endpoint, "http://127.0.0.1:9100"}, {"access key (endpoints)", got.s3.AccessKey, "AKEP"},
		{"nats url (endpoints)", got.bus.URL, "nats://127.0.0.1:4333"}, {"upload prefix (endpoints)", got.inf.UploadPrefix, "up/"},
		{"nats user (endpoints)", got.bus.User, "hpa-ep"}, {"nats password (endpoints)", got.bus.Password, "pw-ep"},
		{"ready stream (default)", got.inf.ReadyStream, "HPA_READY"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if !got.s3.PathStyle {
		t.Error("path-style addressing from the endpoints file")
	}
	root = newRoot()
	root.SetArgs([]string{"inference", "--endpoints", filepath.Join(dir, "missing.json")})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "endpoints file") {
		t.Errorf("missing endpoints file: %v", err)
	}
}

// A model set stored in S3 is promoted on the running service: the consumer downloads it
// (s3://bucket/prefix), loads it beside the serving set and swaps; later samples carry its digest.
// A promotion of a missing set keeps the serving one.
func TestUpPromotionFromS3(t *testing.T) {
	manifest := labelModelSet(t)
	r := startUp(t, t.TempDir(), manifest)
	newSet := benchModelSet(t, 64, 1)
	m, err := model.ReadManifest(newSet)
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := m.Digest()
	ents, err := os.ReadDir(filepath.Dir(newSet))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(newSet), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.store.Put(context.Background(), "models/v2/"+e.Name(), b, "application/octet-stream"); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(r.ep.NATSURL, nats.UserInfo(r.ep.NATSUser, r.ep.NATSPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	metrics := func() string {
		resp, err := http.Get(r.ep.MetricsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if err := nc.Publish("hpa.models.promoted", []byte(`{"location":"s3://plates/models/missing/"}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("hpa.models.promoted", []byte("s3://plates/models/v2/")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(metrics(), `digest="`+digest+`"`) {
		if time.Now().After(deadline) {
			t.Fatalf("promotion not served:\n%s", r.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(metrics(), `hpa_inference_model_reloads_total{result="failed"} 1`) {
		t.Errorf("failed promotion not counted")
	}
	r.upload(t, "pp", "after", 5)
	l, err := labels.ParseLabel(r.waitLabel(t, "pp", "after"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Model.ManifestDigest != digest || l.Model.Members != 1 {
		t.Errorf("label after promotion: %+v", l.Model)
	}
}
