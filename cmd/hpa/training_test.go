package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

// `hpa demo --retrain`: the labeled set trains a model that is promoted, and the next plate is
// labeled by that version only.
func TestDemoRetrain(t *testing.T) {
	lib := torchShim(t)
	t.Setenv("HPA_TORCH_LIBRARY", lib)
	t.Setenv("HPA_TORCH_THREADS", "1")
	manifest := labelModelSet(t)
	out, err := runCLI(t, "demo", "--retrain", "--data-dir", t.TempDir(), "--model", manifest, "--samples", "3", "--size", "64",
		"--train-samples", "32", "--timeout", "4m")
	if err != nil {
		t.Fatalf("demo --retrain: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`3\. decision: promote (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no promotion in:\n%s", out)
	}
	if !strings.Contains(out, "model versions of the labels: map["+m[1]+":3]") || !strings.Contains(out, "fold 3 done") {
		t.Fatalf("plate not labeled by %s only:\n%s", m[1], out)
	}
	// The plate labeled before the run is relabeled by the new version (replay after the promotion).
	if !strings.Contains(out, "0. plate demo-before (3 samples) labeled by map[v1:3]") ||
		!strings.Contains(out, "4. plate demo-before relabeled after the promotion: map["+m[1]+":3]") {
		t.Fatalf("no relabel of the earlier plate:\n%s", out)
	}
}

// `hpa training trigger|status` and `hpa model list|promote` against a bus and a bucket.
func TestTrainingAndModelCommands(t *testing.T) {
	dir := t.TempDir()
	ns, _, js := servers.JetStream(t, filepath.Join(dir, "nats"))
	ctx := context.Background()
	if _, err := bus.EnsureEventsStream(ctx, js, bus.EventsStreamConfig{Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	const ak, sk = "AKIATRAINCLI", "train-cli-secret"
	srv := servers.S3(t, s3local.Options{Dir: filepath.Join(dir, "s3"), AccessKey: ak, SecretKey: sk, Buckets: []string{"plates"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	conn := []string{"--nats-url", ns.ClientURL(), "--s3-endpoint", srv.Endpoint(), "--s3-path-style", "--bucket", "plates",
		"--s3-access-key", ak, "--s3-secret-key", sk}
	if out, err := runCLI(t, append([]string{"training", "trigger"}, conn...)...); err != nil || !strings.Contains(out, "run requested") {
		t.Fatalf("trigger: %v\n%s", err, out)
	}
	out, err := runCLI(t, append([]string{"training", "status", "--json"}, conn...)...)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var st struct {
		Trigger bool `json:"trigger_pending"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || !st.Trigger {
		t.Fatalf("status %v:\n%s", err, out)
	}
	if out, err := runCLI(t, append([]string{"training", "status"}, conn...)...); err != nil || !strings.Contains(out, "current model:  none promoted") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if out, err := runCLI(t, append([]string{"model", "list"}, conn...)...); err != nil || !strings.Contains(out, "VERSION") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := runCLI(t, append([]string{"model", "promote", "nosuch"}, conn...)...); err == nil || !strings.Contains(err.Error(), "no such model version") {
		t.Fatalf("promote of a missing version: %v\n%s", err, out)
	}
}
