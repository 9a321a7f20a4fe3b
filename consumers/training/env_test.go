package training

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/local/natsembed"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/model/torch"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/synth"
	"github.com/hpa-plates/hpa/internal/testenv"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

const (
	testBucket = "hpa"
	testAK     = "trainak"
	testSK     = "trainsecret"
)

type testEnv struct {
	dir   string
	ns    *natsembed.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	s3    *s3local.Server
	store *objstore.Bucket
	s3cfg objstore.Config
	log   *slog.Logger
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	dir := t.TempDir()
	ns, nc, js := servers.JetStream(t, filepath.Join(dir, "nats"))
	ctx := context.Background()
	if _, err := bus.EnsureEventsStream(ctx, js, bus.EventsStreamConfig{Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("HPA_TEST_LOG") != "" {
		quiet = slog.Default()
	}
	srv := servers.S3(t, s3local.Options{Dir: filepath.Join(dir, "s3"), AccessKey: testAK, SecretKey: testSK,
		Buckets: []string{testBucket}, Publisher: bus.JetStreamPublisher{JS: js}, Logger: quiet})
	cfg := objstore.Config{Endpoint: srv.Endpoint(), Region: "us-east-1", PathStyle: true, Bucket: testBucket, AccessKey: testAK, SecretKey: testSK}
	store, err := objstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{dir: dir, ns: ns, nc: nc, js: js, s3: srv, store: store, s3cfg: cfg, log: quiet}
}

// synthData generates n samples of size px and returns the directory (train.csv, train/).
func synthData(t testing.TB, n int, seed int64) string {
	t.Helper()
	return synthDataSize(t, n, 32, seed)
}

func synthDataSize(t testing.TB, n, size int, seed int64) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := synth.Generate(context.Background(), synth.Options{Out: dir, Samples: n, Size: size, Seed: seed, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// uploadImages puts every image of data/train under the images prefix.
func (e *testEnv) uploadImages(t testing.TB, data, prefix string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(data, "train"))
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range ents {
		b, err := os.ReadFile(filepath.Join(data, "train", de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.store.Put(context.Background(), prefix+de.Name(), b, "image/png"); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *testEnv) put(t testing.TB, key string, b []byte) {
	t.Helper()
	if err := e.store.Put(context.Background(), key, b, "text/csv"); err != nil {
		t.Fatal(err)
	}
}

// torchLib returns the libtorch shim (skipped without it unless CI is set).
func torchLib(t testing.TB) torch.Options {
	t.Helper()
	p := os.Getenv("HPA_TORCH_LIBRARY")
	if p == "" {
		p = filepath.Join(testenv.RepoRoot(t), torch.DefaultLibrary)
	}
	if _, err := os.Stat(p); err != nil && os.Getenv("CI") == "" {
		t.Skipf("training shim %s not built (run scripts/setup.sh); CI unset, so skipping", p)
	}
	return torch.Options{Library: p, Threads: 1}
}

// testSettings is a recipe that trains in seconds.
func testSettings() Settings {
	return Settings{Arch: "seresnext_tiny", Size: 32, Folds: 2, Cycles: 1, EpochsPerCycle: 2, Batch: 4, TTAViews: 2, Seed: 1, Name: "hpa"}
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
