package inference

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/local/natsembed"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

const (
	testBucket = "hpa"
	testAK     = "AKIATESTTESTTEST"
	testSK     = "test-secret-key-0123456789"
)

// fakeModel is a deterministic test double of the ensemble: each class probability is a fixed
// function of the four planes' mean intensities and the model's seed, so expected labels can be
// computed independently of the service.
type fakeModel struct {
	info    labels.ModelInfo
	th      labels.Thresholds
	seed    float64
	delay   time.Duration
	calls   atomic.Int64
	samples atomic.Int64
	busy    atomic.Int32
	closed  atomic.Bool
	// closedWhileBusy is set when Close ran during a Predict (a swap pulled the model away).
	closedWhileBusy atomic.Bool
	usedAfterClose  atomic.Bool
	failNext        atomic.Int32 // fail this many Predict calls
}

func newFakeModel(name string, seed float64) *fakeModel {
	info := labels.ModelInfo{Name: name, Version: "1", ManifestDigest: "sha256:" + name, Members: 1, TTAViews: 1, Arch: "fake"}
	return &fakeModel{info: info, th: labels.UniformThresholds(0.5, labels.NumClasses), seed: seed}
}

func expectedProbs(img pipeline.Image4, seed float64) []float64 {
	var means [4]float64
	for c, p := range img.Planes {
		var sum int
		for _, v := range p.Pix {
			sum += int(v)
		}
		means[c] = float64(sum) / float64(len(p.Pix)) / 255
	}
	out := make([]float64, labels.NumClasses)
	for k := range out {
		x := means[k%4]*3 + float64(k)*0.17 + seed
		out[k] = 0.5 + 0.5*math.Sin(x*7)
	}
	return out
}

func (f *fakeModel) Predict(ctx context.Context, batch []pipeline.Image4) ([][]float64, error) {
	f.busy.Add(1)
	defer f.busy.Add(-1)
	if f.closed.Load() {
		f.usedAfterClose.Store(true)
		return nil, errors.New("predict on a closed model")
	}
	if f.failNext.Load() > 0 && f.failNext.Add(-1) >= 0 {
		return nil, errors.New("injected model failure")
	}
	f.calls.Add(1)
	f.samples.Add(int64(len(batch)))
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	out := make([][]float64, len(batch))
	for i, img := range batch {
		out[i] = expectedProbs(img, f.seed)
	}
	return out, nil
}

func (f *fakeModel) Info() labels.ModelInfo        { return f.info }
func (f *fakeModel) Thresholds() labels.Thresholds { return f.th }

func (f *fakeModel) Close() error {
	if f.busy.Load() > 0 {
		f.closedWhileBusy.Store(true)
	}
	f.closed.Store(true)
	return nil
}

func loaderOf(models map[string]*fakeModel) model.Loader {
	return func(ctx context.Context, loc string) (model.Predictor, io.Closer, error) {
		m, ok := models[loc]
		if !ok {
			return nil, nil, fmt.Errorf("no model set at %q", loc)
		}
		return m, m, nil
	}
}

// testEnv is a real embedded JetStream plus a real in-process S3 server publishing events.
type testEnv struct {
	t      testing.TB
	ns     *natsembed.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	s3     *s3local.Server
	store  *objstore.Bucket
	labels *labelWatch
}

func newEnv(t testing.TB, middleware func(http.Handler) http.Handler) *testEnv {
	t.Helper()
	return newEnvWith(t, middleware, nil)
}

// newEnvWith is newEnv with the S3 server's event publisher wrapped (nil: as it is), e.g. to lose
// events as an object store that drops notifications does.
func newEnvWith(t testing.TB, middleware func(http.Handler) http.Handler, wrap func(bus.Publisher) bus.Publisher) *testEnv {
	t.Helper()
	dir := t.TempDir()
	ns, nc, js := servers.JetStream(t, filepath.Join(dir, "nats"))
	ctx := context.Background()
	if _, err := bus.EnsureEventsStream(ctx, js, bus.EventsStreamConfig{Name: "S3_EVENTS", Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	var pub bus.Publisher = bus.JetStreamPublisher{JS: js}
	if wrap != nil {
		pub = wrap(pub)
	}
	srv := servers.S3(t, s3local.Options{Dir: filepath.Join(dir, "s3"), AccessKey: testAK, SecretKey: testSK,
		Buckets: []string{testBucket}, Publisher: pub, Middleware: middleware,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	store, err := objstore.Open(ctx, objstore.Config{Endpoint: srv.Endpoint(), Region: "us-east-1", PathStyle: true,
		Bucket: testBucket, AccessKey: testAK, SecretKey: testSK})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, ns: ns, nc: nc, js: js, s3: srv, store: store}
	e.labels = watchLabels(t, nc)
	return e
}

func testConfig() Config {
	c := DefaultConfig()
	c.Bucket = testBucket
	c.MaxBatch = 4
	c.MaxBatchDelay = 5 * time.Millisecond
	c.FetchWorkers = 2
	c.WriteWorkers = 2
	c.EventWorkers = 4
	c.AckWait = 2 * time.Second
	c.MaxDeliver = 12
	c.Backoff = 20 * time.Millisecond
	c.CSVInterval = 50 * time.Millisecond
	c.SweepInterval = time.Hour
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() && os.Getenv("HPA_TEST_LOG") != "" {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return c
}

// startService runs a replica until the test ends; it returns the service and a stop function
// that drains it and returns Run's error.
func (e *testEnv) startService(cfg Config, loader model.Loader, location string) (*Service, func() error) {
	e.t.Helper()
	svc, err := New(e.nc, e.store, loader, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if location != "" {
		if err := svc.Load(context.Background(), location); err != nil {
			e.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				runErr = fmt.Errorf("Run did not return within 30s of cancel; goroutines:\n%s", buf[:n])
			}
		})
		return runErr
	}
	e.t.Cleanup(func() {
		if err := stop(); err != nil {
			e.t.Error(err)
		}
	})
	// Wait for the consumers to exist, so uploads are seen.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := e.js.Consumer(context.Background(), cfg.ReadyStream, cfg.LabelConsumer); err == nil {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatal("service consumers not created")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return svc, stop
}

// put uploads through the S3 API, retrying on failures (fault-injection tests).
func (e *testEnv) put(key string, data []byte) {
	e.t.Helper()
	var err error
	for range 30 {
		if err = e.store.Put(context.Background(), key, data, "image/png"); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("upload %s: %v", key, err)
}

func (e *testEnv) get(key string) ([]byte, error) {
	var err error
	for range 30 {
		var b []byte
		if b, err = e.store.Get(context.Background(), key, 0); err == nil {
			return b, nil
		}
		var oe *objstore.Error
		if errors.As(err, &oe) && oe.NotFound {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, err
}

// labelWatch counts label events per plate/sample.
type labelWatch struct {
	mu     sync.Mutex
	counts map[string]int
	digest map[string]string
}

func watchLabels(t testing.TB, nc *nats.Conn) *labelWatch {
	w := &labelWatch{counts: map[string]int{}, digest: map[string]string{}}
	sub, err := nc.Subscribe("hpa.labels.>", func(m *nats.Msg) {
		var ev struct {
			P string `json:"plate"`
			S string `json:"sample_id"`
			D string `json:"manifest_digest"`
		}
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		w.mu.Lock()
		w.counts[ev.P+"/"+ev.S]++
		w.digest[ev.P+"/"+ev.S] = ev.D
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

func (w *labelWatch) snapshot() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.counts))
	for k, v := range w.counts {
		out[k] = v
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pngGray encodes a w x h 8-bit grayscale PNG with content derived from seed.
func pngGray(w, h int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	img := image.NewGray(image.Rect(0, 0, w, h))
	base := r.IntN(200)
	for i := range img.Pix {
		img.Pix[i] = uint8(base + r.IntN(56))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// sampleSet is a plate of synthetic samples: key -> bytes, plus the expected decoded images.
type sampleSet struct {
	plate string
	ids   []string
	files map[string][]byte // object key -> content
	imgs  map[string]pipeline.Image4
}

func makePlate(plate string, n int, size int, seed uint64) *sampleSet {
	s := &sampleSet{plate: plate, files: map[string][]byte{}, imgs: map[string]pipeline.Image4{}}
	for i := range n {
		id := fmt.Sprintf("s%03d", i)
		s.ids = append(s.ids, id)
		img := pipeline.Image4{ID: id, W: size, H: size}
		for c, ch := range pipeline.ChannelNames {
			b := pngGray(size, size, seed*1000+uint64(i*4+c))
			s.files["incoming/"+plate+"/"+id+"_"+ch+".png"] = b
			p, err := pipeline.DecodeChannel(b, id, pipeline.Channel(c), pipeline.DecodeOptions{})
			if err != nil {
				panic(err)
			}
			img.Planes[c] = p
		}
		s.imgs[id] = img
	}
	return s
}

// keys returns the object keys in a random order.
func (s *sampleSet) shuffledKeys(seed uint64) []string {
	keys := make([]string, 0, len(s.files))
	for k := range s.files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	r := rand.New(rand.NewPCG(seed, 7))
	r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	return keys
}

// checkLabel reads a label and compares its prediction with the fake model's.
func (e *testEnv) checkLabel(plate, id string, img pipeline.Image4, m *fakeModel) labels.Label {
	e.t.Helper()
	b, err := e.get("labels/" + plate + "/" + id + ".json")
	if err != nil {
		e.t.Fatalf("label %s/%s: %v", plate, id, err)
	}
	l, err := labels.ParseLabel(b)
	if err != nil {
		e.t.Fatalf("label %s/%s: %v", plate, id, err)
	}
	if l.Model.ManifestDigest != m.info.ManifestDigest {
		e.t.Errorf("label %s/%s: digest %s, want %s", plate, id, l.Model.ManifestDigest, m.info.ManifestDigest)
	}
	want := expectedProbs(img, m.seed)
	for k, cp := range l.Probabilities {
		if math.Abs(float64(cp.P)-want[k]) > 1e-6 {
			e.t.Fatalf("label %s/%s class %d: p=%v want %v", plate, id, k, cp.P, want[k])
		}
	}
	wantPred := m.th.Apply(roundAll(want))
	if fmt.Sprint(l.PredictedIDs()) != fmt.Sprint(wantPred) {
		e.t.Errorf("label %s/%s predicted %v, want %v", plate, id, l.PredictedIDs(), wantPred)
	}
	return l
}

func roundAll(p []float64) []float64 {
	out := make([]float64, len(p))
	for i, v := range p {
		out[i] = labels.RoundProb(v)
	}
	return out
}

// counter reads a counter (summed over label values matching match) from a service's registry.
func counter(t testing.TB, s *Service, name string, match map[string]string) float64 {
	t.Helper()
	mfs, err := s.m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !labelsMatch(m, match) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, match map[string]string) bool {
	for k, v := range match {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// dlq reads every dead-letter message.
func (e *testEnv) dlq(stream string) []*nats.Msg {
	e.t.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*nats.Msg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		rm, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		out = append(out, &nats.Msg{Subject: rm.Subject, Data: rm.Data, Header: rm.Header})
	}
	return out
}
