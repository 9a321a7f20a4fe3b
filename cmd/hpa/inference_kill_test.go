package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

// TestHelperProcessHPA is not a test: run with HPA_HELPER_ARGS (a JSON array) it is the hpa
// command in a child process, so tests can SIGKILL a real consumer process.
func TestHelperProcessHPA(t *testing.T) {
	raw := os.Getenv("HPA_HELPER_ARGS")
	if raw == "" {
		t.Skip("helper process for other tests")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	root := newRoot()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hpa:", err)
		os.Exit(exitCode(err))
	}
	os.Exit(0)
}

func startHelper(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	b, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessHPA$")
	cmd.Env = append(os.Environ(), "HPA_HELPER_ARGS="+string(b))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, out
}

// An `hpa inference` process killed with SIGKILL in the middle of a load and started again loses
// nothing: every sample gets its label, labels written before the kill are not rewritten, and
// nothing is left in the work queue.
func TestInferenceProcessKilledAndRestarted(t *testing.T) {
	manifest := labelModelSet(t)
	dir := t.TempDir()
	ns, _, js := servers.JetStream(t, filepath.Join(dir, "nats"))
	ctx := context.Background()
	if _, err := bus.EnsureEventsStream(ctx, js, bus.EventsStreamConfig{Name: "S3_EVENTS", Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	const ak, sk = "AKIAKILLTEST", "kill-test-secret"
	srv := servers.S3(t, s3local.Options{Dir: filepath.Join(dir, "s3"), AccessKey: ak, SecretKey: sk, Buckets: []string{"plates"},
		Publisher: bus.JetStreamPublisher{JS: js}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	store, err := objstore.Open(context.Background(), objstore.Config{Endpoint: srv.Endpoint(), Region: "us-east-1", PathStyle: true,
		Bucket: "plates", AccessKey: ak, SecretKey: sk})
	if err != nil {
		t.Fatal(err)
	}

	args := []string{"inference", "--nats-url", ns.ClientURL(), "--s3-endpoint", srv.Endpoint(), "--s3-path-style",
		"--bucket", "plates", "--s3-access-key", ak, "--s3-secret-key", sk, "--model", manifest, "--metrics-addr", "",
		"--batch", "4", "--ack-wait", "2s", "--fetch-workers", "2"}
	proc, out := startHelper(t, args...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := js.Consumer(ctx, "HPA_READY", "hpa-labeler"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer process did not start:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	const n = 40
	// Upload while the consumer works; it is killed under load, the uploads go on.
	uploaded := make(chan error, 1)
	go func() {
		for i := range n {
			for c, ch := range pipeline.ChannelNames {
				if err := store.Put(ctx, fmt.Sprintf("incoming/pk/k%02d_%s.png", i, ch), upPNG(128, uint64(1000+i*4+c)), "image/png"); err != nil {
					uploaded <- err
					return
				}
			}
		}
		uploaded <- nil
	}()
	labelKey := func(i int) string { return fmt.Sprintf("labels/pk/k%02d.json", i) }
	// Kill as soon as the first labels are there.
	for {
		if _, err := store.Get(ctx, labelKey(0), 0); err == nil {
			break
		}
		if keys, _ := store.List(ctx, "labels/pk/k"); len(keys) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no label before the kill:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	if err := <-uploaded; err != nil {
		t.Fatal(err)
	}
	before := map[int][]byte{}
	for i := range n {
		if b, err := store.Get(ctx, labelKey(i), 0); err == nil {
			before[i] = b
		}
	}
	if len(before) == n {
		t.Fatalf("all %d samples were labeled before the kill: nothing was in flight", n)
	}
	t.Logf("%d of %d samples labeled when the process was killed", len(before), n)

	proc2, out2 := startHelper(t, args...)
	deadline = time.Now().Add(120 * time.Second)
	for i := range n {
		for {
			b, err := store.Get(ctx, labelKey(i), 0)
			if err == nil {
				if _, err := labels.ParseLabel(b); err != nil {
					t.Fatalf("label %d: %v", i, err)
				}
				if old, ok := before[i]; ok && !bytes.Equal(old, b) {
					t.Errorf("label %d rewritten after the restart", i)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sample %d never labeled after the restart:\n%s", i, out2.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The work queue drains: nothing stuck, nothing dead-lettered.
	st, err := js.Stream(ctx, "HPA_READY")
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := st.Info(ctx)
		if err == nil && info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ready stream not drained: %+v", info.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dlq, err := js.Stream(ctx, "HPA_DLQ"); err == nil {
		if info, err := dlq.Info(ctx); err == nil && info.State.Msgs != 0 {
			t.Errorf("%d dead letters after a crash", info.State.Msgs)
		}
	}
	if err := proc2.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- proc2.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("SIGTERM: %v\n%s", err, out2.String())
		}
	case <-time.After(30 * time.Second):
		t.Error("no clean stop within 30s of SIGTERM")
	}
}
