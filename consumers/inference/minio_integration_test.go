package inference_test

// Integration test against a real MinIO server (internal/testenv/minio) with its native NATS
// JetStream bucket notifications: MinIO -> JetStream -> the inference consumer -> labels in MinIO.
// It needs the MinIO binary scripts/setup.sh builds; without it the test skips (fails in CI).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/consumers/inference"
	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/local/natsembed"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
	"github.com/hpa-plates/hpa/internal/model/ort"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/testenv"
	"github.com/hpa-plates/hpa/internal/testenv/minio"
)

// digestModel is a deterministic stand-in for the ensemble: class k's probability is byte k of
// the SHA-256 of the decoded pixels (and size) divided by 255, so a label is right only when every
// pixel of all four channels came through MinIO and the decoder intact and in the right channel.
type digestModel struct {
	mu      sync.Mutex
	samples map[string]int // sample id -> times predicted
	// gate, when set, holds the first Predict call until it is closed; held reports that the
	// call is waiting.
	gate chan struct{}
	held chan struct{}
	once sync.Once
}

var digestInfo = struct {
	labels.ModelInfo
	Thresholds labels.Thresholds
}{
	ModelInfo: labels.ModelInfo{Name: "minio-digest", Version: "1", ManifestDigest: "sha256:minio-digest",
		Members: 1, TTAViews: 1, Arch: "digest"},
	Thresholds: labels.UniformThresholds(0.5, labels.NumClasses),
}

func digestProbs(img pipeline.Image4) []float64 {
	h := sha256.New()
	fmt.Fprintf(h, "%dx%d", img.W, img.H)
	for _, p := range img.Planes {
		h.Write(p.Pix)
	}
	sum := h.Sum(nil)
	out := make([]float64, labels.NumClasses)
	for k := range out {
		out[k] = float64(sum[k]) / 255
	}
	return out
}

func (m *digestModel) Predict(ctx context.Context, batch []pipeline.Image4) ([][]float64, error) {
	if m.gate != nil {
		m.once.Do(func() {
			close(m.held)
			<-m.gate
		})
	}
	out := make([][]float64, len(batch))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, img := range batch {
		out[i] = digestProbs(img)
		m.samples[img.ID]++
	}
	return out, nil
}

func (m *digestModel) Info() labels.ModelInfo        { return digestInfo.ModelInfo }
func (m *digestModel) Thresholds() labels.Thresholds { return digestInfo.Thresholds }
func (m *digestModel) Close() error                  { return nil }

// minioSample is one sample to upload: its object keys by channel and their content.
type minioSample struct {
	plate, id string
	data      [4][]byte
	bad       bool // a channel is corrupt: an error record is expected, no label
}

func (s minioSample) key(c int) string {
	return "incoming/" + s.plate + "/" + s.id + "_" + pipeline.ChannelNames[c] + ".png"
}

// want returns the label bytes the service must write: the label schema built independently
// from the uploaded bytes and the model function.
func (s minioSample) want(t testing.TB) []byte {
	t.Helper()
	img := pipeline.Image4{ID: s.id}
	srcs := make([]labels.Source, 4)
	for c, b := range s.data {
		p, err := pipeline.DecodeChannel(b, s.id, pipeline.Channel(c), pipeline.DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		img.Planes[c], img.W, img.H = p, p.W, p.H
		srcs[c] = labels.SourceOf(pipeline.Channel(c), filepath.Base(s.key(c)), b)
	}
	l, err := labels.NewLabel(s.id, srcs, digestInfo.ModelInfo, digestInfo.Thresholds, digestProbs(img))
	if err != nil {
		t.Fatal(err)
	}
	b, err := labels.MarshalLabel(l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func grayPNG(t testing.TB, size int, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	img := image.NewGray(image.Rect(0, 0, size, size))
	for i := range img.Pix {
		img.Pix[i] = uint8(r.IntN(256))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// realHPAChannels returns one real 512x512 HPA channel image per channel (of different Ids: the
// real sample has one channel per Id) from the committed fixture testdata/hpa-real/train_sample.
func realHPAChannels(t *testing.T) [4][]byte {
	t.Helper()
	sample := filepath.Join(testenv.HPAFixture(t), "train_sample")
	var out [4][]byte
	for c, ch := range pipeline.ChannelNames {
		m, err := filepath.Glob(filepath.Join(sample, "*_"+ch+".png"))
		if err != nil || len(m) == 0 {
			t.Fatalf("no real HPA %s channel under %s (%v)", ch, sample, err)
		}
		sort.Strings(m)
		if out[c], err = os.ReadFile(m[0]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestMinIONativeNotifications runs the consumer against a real MinIO: samples uploaded with
// aws-sdk-go-v2 in shuffled channel order, plates with a space, a '+' and non-ASCII in the name,
// one sample of real HPA images, one with a corrupt channel. Every good sample gets exactly the
// label bytes computed independently, exactly once; the corrupt one an error record and a dead
// letter; the plate CSVs list the labeled samples; the events MinIO put on the stream are its
// native format (eventVersion 2.0, URL-encoded keys, no Nats-Msg-Id) and parse with bus.
func TestMinIONativeNotifications(t *testing.T) {
	dm := &digestModel{samples: map[string]int{}}
	e := startMinIOService(t, func(ctx context.Context, loc string) (model.Predictor, io.Closer, error) {
		if loc != "digest" {
			return nil, nil, fmt.Errorf("no model set at %q", loc)
		}
		return dm, dm, nil
	}, "digest")
	ctx, cfg, store, js, bucket, subject := context.Background(), e.cfg, e.store, e.js, e.bucket, e.subject

	// The samples: two plates with awkward names, 64 px synthetic ones, a real HPA one, a corrupt one.
	plates := []string{"plate 1", "run+2 é"}
	var samples []minioSample
	for i := range 6 {
		s := minioSample{plate: plates[i%2], id: fmt.Sprintf("s%02d", i)}
		for c := range s.data {
			s.data[c] = grayPNG(t, 64, uint64(i*4+c+1))
		}
		samples = append(samples, s)
	}
	samples = append(samples, minioSample{plate: "plate 1", id: "real0", data: realHPAChannels(t)})
	broken := minioSample{plate: "plate 1", id: "broken", bad: true}
	for c := range broken.data {
		broken.data[c] = grayPNG(t, 64, uint64(100+c))
	}
	broken.data[pipeline.Green] = append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0x42}, 200)...)
	samples = append(samples, broken)

	e.upload(t, samples)

	// Every good sample gets exactly the expected label bytes; the broken one an error record.
	predicted := map[string][]int{}
	for _, s := range samples {
		if s.bad {
			continue
		}
		key := cfg.LabelsPrefix + s.plate + "/" + s.id + ".json"
		var got []byte
		waitUntil(t, 30*time.Second, "label "+key, func() bool {
			var err error
			got, err = store.Get(ctx, key, 0)
			return err == nil
		})
		if want := s.want(t); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", key, got, want)
		}
		l, err := labels.ParseLabel(got)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		predicted[s.plate+"/"+s.id] = l.PredictedIDs()
	}
	errKey := cfg.LabelsPrefix + broken.plate + "/" + broken.id + ".error.json"
	var rec labels.ErrorRecord
	waitUntil(t, 30*time.Second, "error record "+errKey, func() bool {
		b, err := store.Get(ctx, errKey, 0)
		if err != nil {
			return false
		}
		rec, err = labels.ParseErrorRecord(b)
		if err != nil {
			t.Fatalf("%s: %v", errKey, err)
		}
		return true
	})
	if rec.SampleID != broken.id || rec.Object != broken.key(int(pipeline.Green)) || rec.Kind == "" || rec.Reason == "" ||
		rec.Model == nil || rec.Model.ManifestDigest != digestInfo.ManifestDigest {
		t.Errorf("error record %+v", rec)
	}
	if _, err := store.Get(ctx, cfg.LabelsPrefix+broken.plate+"/"+broken.id+".json", 0); err == nil {
		t.Error("the corrupt sample got a label")
	}

	// The dead letter of the corrupt sample.
	waitUntil(t, 10*time.Second, "dead letter", func() bool {
		for _, m := range streamMessages(t, js, cfg.DLQStream) {
			var body struct {
				SampleID string `json:"sample_id"`
			}
			if json.Unmarshal(m.Data, &body) == nil && body.SampleID == broken.id {
				return true
			}
		}
		return false
	})

	// Exactly once: the work drains and each good sample was predicted and announced once.
	waitUntil(t, 10*time.Second, "ready stream drained", func() bool {
		st, err := js.Stream(ctx, cfg.ReadyStream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	events := e.labelEvents()
	for _, s := range samples {
		if n := events[s.plate+"/"+s.id]; (n != 1 && !s.bad) || (n != 0 && s.bad) {
			t.Errorf("%s/%s: %d label events", s.plate, s.id, n)
		}
	}
	dm.mu.Lock()
	for _, s := range samples {
		if n := dm.samples[s.id]; !s.bad && n != 1 {
			t.Errorf("%s predicted %d times", s.id, n)
		}
	}
	dm.mu.Unlock()

	// Plate CSVs (rebuilt from the labels listed in MinIO) name every labeled sample.
	for _, plate := range plates {
		key := cfg.LabelsPrefix + plate + "/submission.csv"
		var want []string
		for _, s := range samples {
			if s.plate == plate && !s.bad {
				want = append(want, s.id)
			}
		}
		sort.Strings(want)
		var rows []labels.SubmissionRow
		var last []byte
		waitUntil(t, 10*time.Second, "CSV "+key, func() bool {
			b, err := store.Get(ctx, key, 0)
			if err != nil {
				last = []byte(err.Error())
				return false
			}
			last = b
			if rows, err = labels.ReadSubmission(bytes.NewReader(b)); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			var ids []string
			for _, r := range rows {
				ids = append(ids, r.ID)
			}
			sort.Strings(ids)
			return slices.Equal(ids, want)
		}, func() string { return fmt.Sprintf("want ids %v, last read:\n%s", want, last) })
		for _, r := range rows {
			if w := predicted[plate+"/"+r.ID]; fmt.Sprint(r.Predicted) != fmt.Sprint(w) {
				t.Errorf("%s: %s predicted %v, label says %v", key, r.ID, r.Predicted, w)
			}
		}
	}

	// The events MinIO published: one per upload, in its native format.
	msgs := streamMessages(t, js, cfg.EventsStream)
	if len(msgs) != 4*len(samples) {
		t.Errorf("%d events on %s for %d uploads", len(msgs), cfg.EventsStream, 4*len(samples))
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		if m.Subject != subject {
			t.Errorf("event on subject %q", m.Subject)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != "" {
			t.Errorf("unexpected Nats-Msg-Id %q", id)
		}
		var raw struct {
			EventName string
			Key       string
			Records   []struct {
				EventVersion string `json:"eventVersion"`
				S3           struct {
					Object struct {
						Key string `json:"key"`
					} `json:"object"`
				} `json:"s3"`
			}
		}
		if err := json.Unmarshal(m.Data, &raw); err != nil || len(raw.Records) != 1 {
			t.Fatalf("event %s: %v", m.Data, err)
		}
		evs, err := bus.ParseS3Events(m.Data)
		if err != nil || len(evs) != 1 {
			t.Fatalf("bus.ParseS3Events(%s): %v", m.Data, err)
		}
		ev := evs[0]
		if !ev.IsCreate() || ev.Bucket != bucket || ev.Source != "minio:s3" {
			t.Errorf("event %+v", ev)
		}
		r := raw.Records[0]
		if dec, err := url.QueryUnescape(r.S3.Object.Key); err != nil || dec != ev.Key || r.EventVersion != "2.0" ||
			strings.ContainsAny(r.S3.Object.Key, " /") || raw.Key != bucket+"/"+ev.Key {
			t.Errorf("event not in MinIO's native format: version %q, key %q, wrapper key %q (decoded %q)",
				r.EventVersion, r.S3.Object.Key, raw.Key, ev.Key)
		}
		seen[ev.Key] = true
	}
	for _, s := range samples {
		for c := range s.data {
			if !seen[s.key(c)] {
				t.Errorf("no event for %s", s.key(c))
			}
		}
	}
	// Spot-check the raw encodings of a space, a '+' and a non-ASCII letter.
	var all []byte
	for _, m := range msgs {
		all = append(all, m.Data...)
	}
	for _, want := range []string{`"key":"incoming%2Fplate+1%2Fs00_blue.png"`, `"key":"incoming%2Frun%2B2+%C3%A9%2Fs01_red.png"`} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("no event with %s", want)
		}
	}
}

// minioService is an embedded JetStream, a real MinIO notifying it natively, and one consumer
// replica reading and writing the MinIO bucket.
type minioService struct {
	bucket, subject string
	cfg             inference.Config
	ns              *natsembed.Server
	js              jetstream.JetStream
	srv             *minio.Server
	store           *objstore.Bucket
	svc             *inference.Service

	mu      sync.Mutex
	events  map[string]int       // label events per plate/sample
	firstEv map[string]time.Time // when the first label event of a plate/sample arrived
}

// startMinIOService sets everything up, loads the model at location and runs the consumer until
// the test ends.
// setupOption adjusts the MinIO options (NATSURL and Subject are set already) and the consumer
// configuration before they are used.
type setupOption func(*minio.Options, *inference.Config)

func startMinIOService(t testing.TB, loader model.Loader, location string, opts ...setupOption) *minioService {
	t.Helper()
	return startS3Service(t, "minio", loader, location, opts...)
}

// startS3Service is startMinIOService with the S3 server chosen: "minio", or "s3local" (the
// project's in-process server, for comparisons).
func startS3Service(t testing.TB, backend string, loader model.Loader, location string, opts ...setupOption) *minioService {
	t.Helper()
	e := &minioService{bucket: "hpa", subject: "s3.events.minio", events: map[string]int{}, firstEv: map[string]time.Time{}}
	ctx := context.Background()
	ns, err := natsembed.Start(natsembed.Options{DataDir: filepath.Join(t.TempDir(), "nats"), JetStream: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ns.Shutdown() })
	e.ns = ns
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	cfg := inference.DefaultConfig()
	// MinIO's JetStream publisher needs the stream before it starts; the service uses it as is.
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: cfg.EventsStream, Subjects: cfg.EventsSubjects,
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	var endpoint, region, ak, sk string
	switch backend {
	case "minio":
		mo := minio.Options{NATSURL: ns.ClientURL(), Subject: e.subject}
		for _, f := range opts {
			f(&mo, &inference.Config{})
		}
		e.srv = minio.StartOptions(t, mo)
		e.srv.CreateBucket(t, e.bucket)
		e.srv.NotifyNATS(t, e.bucket, cfg.UploadPrefix, "s3:ObjectCreated:*")
		endpoint, region, ak, sk = e.srv.Endpoint, e.srv.Region, e.srv.AccessKey, e.srv.SecretKey
	case "s3local":
		region, ak, sk = "us-east-1", "AKIAS3LOCALCOMPARE", "s3local-compare-secret"
		ls, err := s3local.New(s3local.Options{Dir: filepath.Join(t.TempDir(), "s3"), AccessKey: ak, SecretKey: sk,
			Buckets: []string{e.bucket}, Publisher: bus.JetStreamPublisher{JS: e.js},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := ls.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ls.Close(context.Background()) })
		endpoint = ls.Endpoint()
	default:
		t.Fatalf("unknown S3 backend %q", backend)
	}
	store, err := objstore.Open(context.Background(), objstore.Config{Endpoint: endpoint, Region: region, PathStyle: true,
		Bucket: e.bucket, AccessKey: ak, SecretKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	e.store = store

	cfg.Bucket = e.bucket
	cfg.MaxBatch = 4
	cfg.MaxBatchDelay = 5 * time.Millisecond
	cfg.FetchWorkers, cfg.WriteWorkers, cfg.EventWorkers = 2, 2, 4
	cfg.AckWait = 5 * time.Second
	cfg.Backoff = 20 * time.Millisecond
	cfg.CSVInterval = 50 * time.Millisecond
	cfg.SweepInterval = time.Hour
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() && os.Getenv("HPA_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, f := range opts {
		f(&minio.Options{}, &cfg)
	}
	e.cfg = cfg
	if e.svc, err = inference.New(nc, e.store, loader, cfg); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Load(ctx, location); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancel")
		}
	})
	sub, err := nc.Subscribe(cfg.LabelsSubject+".>", func(m *nats.Msg) {
		var ev struct {
			Plate    string `json:"plate"`
			SampleID string `json:"sample_id"`
		}
		if json.Unmarshal(m.Data, &ev) == nil {
			now := time.Now()
			k := ev.Plate + "/" + ev.SampleID
			e.mu.Lock()
			if e.events[k]++; e.events[k] == 1 {
				e.firstEv[k] = now
			}
			e.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	waitUntil(t, 10*time.Second, "service consumers", func() bool {
		_, err := e.js.Consumer(ctx, cfg.ReadyStream, cfg.LabelConsumer)
		return err == nil
	})
	return e
}

// waitLabels waits for every sample's label and returns them by plate/id.
func (e *minioService) waitLabels(t testing.TB, samples []minioSample, timeout time.Duration) map[string]labels.Label {
	t.Helper()
	out := map[string]labels.Label{}
	for _, s := range samples {
		key := e.cfg.LabelsPrefix + s.plate + "/" + s.id + ".json"
		var got []byte
		waitUntil(t, timeout, "label "+key, func() bool {
			var err error
			got, err = e.store.Get(context.Background(), key, 0)
			return err == nil
		})
		l, err := labels.ParseLabel(got)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		out[s.plate+"/"+s.id] = l
	}
	return out
}

// labelEvents returns the label events seen so far per plate/sample.
func (e *minioService) labelEvents() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.events)
}

// upload puts every channel of the samples into MinIO through the S3 API, in shuffled order,
// from three concurrent uploaders (like several microscopes writing to one bucket).
func (e *minioService) upload(t testing.TB, samples []minioSample) {
	t.Helper()
	type upload struct {
		key  string
		data []byte
	}
	var uploads []upload
	for _, s := range samples {
		for c := range s.data {
			uploads = append(uploads, upload{s.key(c), s.data[c]})
		}
	}
	rand.New(rand.NewPCG(42, uint64(len(uploads)))).Shuffle(len(uploads), func(i, j int) { uploads[i], uploads[j] = uploads[j], uploads[i] })
	var wg sync.WaitGroup
	errs := make(chan error, len(uploads))
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(uploads); i += 3 {
				if err := e.store.Put(context.Background(), uploads[i].key, uploads[i].data, "image/png"); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// streamMessages reads every message of a stream.
func streamMessages(t *testing.T, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		if m, err := st.GetMsg(ctx, seq); err == nil {
			out = append(out, m)
		}
	}
	return out
}

func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			var more string
			for _, d := range detail {
				more += "\n" + d()
			}
			t.Fatalf("timed out after %s waiting for %s%s", timeout, what, more)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tinyModelSet exports two randomly initialized seresnext_tiny members at size px with 8 TTA
// views and returns the manifest path.
func tinyModelSet(t *testing.T, size int) string {
	t.Helper()
	spec, err := model.Preset("seresnext_tiny")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var members []model.Member
	for i := range 2 {
		name := filepath.Join(dir, fmt.Sprintf("fold%d.onnx", i))
		var buf bytes.Buffer
		if err := onnx.Export(&buf, spec, model.InitWeights(spec, int64(i+1)), onnx.ExportOptions{InputSize: size}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		sum, err := model.FileSHA256(name)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, model.Member{File: filepath.Base(name), SHA256: sum, Fold: i})
	}
	path, err := model.WriteManifest(dir, &model.Manifest{
		Schema: model.ManifestSchema, Name: "minio-ort", Version: "v1", Arch: spec, InputSize: size,
		ChannelOrder: []string{"red", "green", "blue", "yellow"}, Normalization: model.DefaultNormalization(spec.InChans),
		ClassNames: labels.ClassNames[:], InputName: "input", OutputName: "logits", TTAViews: 8,
		Thresholds: model.Thresholds{Mode: "uniform", Uniform: 0.5}, Members: members,
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// ortOptions keeps ONNX Runtime to the two cores of the test machines.
var ortOptions = ort.Options{IntraThreads: 2, InterThreads: 1, MaxBatch: 4}

func loadORT(path string) (*ort.Ensemble, error) { return ort.Load(path, ortOptions) }

// TestMinIOWithONNXRuntime is the same chain with every component real: MinIO and its native
// notifications, JetStream, the consumer and an ONNX Runtime ensemble (two members, 8 TTA views).
// Each label's probabilities match the ensemble run directly on the uploaded images.
func TestMinIOWithONNXRuntime(t *testing.T) {
	const size = 64
	manifest := tinyModelSet(t, size)
	ref, err := loadORT(manifest)
	if err != nil {
		var le *ort.LibraryError
		if errors.As(err, &le) && os.Getenv("CI") == "" {
			t.Skipf("ONNX Runtime not installed (scripts/setup.sh): %v", err)
		}
		t.Fatal(err)
	}
	defer ref.Close()
	e := startMinIOService(t, func(ctx context.Context, loc string) (model.Predictor, io.Closer, error) {
		p, err := loadORT(loc)
		if err != nil {
			return nil, nil, err
		}
		return p, p, nil
	}, manifest)

	var samples []minioSample
	for i := range 5 {
		s := minioSample{plate: "ort plate", id: fmt.Sprintf("o%d", i)}
		for c := range s.data {
			s.data[c] = grayPNG(t, size, uint64(1000+i*4+c))
		}
		samples = append(samples, s)
	}
	e.upload(t, samples)
	for _, s := range samples {
		key := e.cfg.LabelsPrefix + s.plate + "/" + s.id + ".json"
		var got []byte
		waitUntil(t, 30*time.Second, "label "+key, func() bool {
			var err error
			got, err = e.store.Get(context.Background(), key, 0)
			return err == nil
		})
		l, err := labels.ParseLabel(got)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if l.Model != ref.Info() || l.Model.TTAViews != 8 || l.Model.Members != 2 {
			t.Errorf("%s: model %+v, want %+v", key, l.Model, ref.Info())
		}
		img := pipeline.Image4{ID: s.id, W: size, H: size}
		for c, b := range s.data {
			if img.Planes[c], err = pipeline.DecodeChannel(b, s.id, pipeline.Channel(c), pipeline.DecodeOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		want, err := ref.Predict(context.Background(), []pipeline.Image4{img})
		if err != nil {
			t.Fatal(err)
		}
		for k, cp := range l.Probabilities {
			if d := math.Abs(float64(cp.P) - want[0][k]); d > 1e-5 {
				t.Errorf("%s class %d: p=%v, ensemble says %v", key, k, cp.P, want[0][k])
			}
		}
	}
	waitUntil(t, 10*time.Second, "ready stream drained", func() bool {
		st, err := e.js.Stream(context.Background(), e.cfg.ReadyStream)
		if err != nil {
			return false
		}
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	})
	for _, s := range samples {
		if n := e.labelEvents()[s.plate+"/"+s.id]; n != 1 {
			t.Errorf("%s: %d label events", s.id, n)
		}
	}
}

// TestMinIOQueueDirSurvivesNATSOutage: with MinIO's notification queue directory set (the
// deployment setting for "nothing lost"), objects uploaded while NATS is down are announced once
// it is back, and every sample is labeled exactly once.
func TestMinIOQueueDirSurvivesNATSOutage(t *testing.T) {
	dm := &digestModel{samples: map[string]int{}}
	queue := t.TempDir()
	e := startMinIOService(t, func(ctx context.Context, loc string) (model.Predictor, io.Closer, error) {
		return dm, dm, nil
	}, "digest", func(o *minio.Options, _ *inference.Config) { o.QueueDir = queue })

	mk := func(id string, seed uint64) minioSample {
		s := minioSample{plate: "outage plate", id: id}
		for c := range s.data {
			s.data[c] = grayPNG(t, 64, seed*4+uint64(c))
		}
		return s
	}
	before := []minioSample{mk("a0", 1), mk("a1", 2)}
	e.upload(t, before)
	e.waitLabels(t, before, 30*time.Second)

	// NATS goes down; uploads go on (MinIO queues their events on disk).
	port, dir := e.ns.Port(), e.ns.DataDir()
	e.ns.Shutdown()
	during := []minioSample{mk("b0", 3), mk("b1", 4), mk("b2", 5)}
	e.upload(t, during)
	queued, err := filepath.Glob(filepath.Join(queue, "*"))
	if err != nil || len(queued) == 0 {
		t.Errorf("MinIO queued no events in %s during the outage (%v)", queue, err)
	}
	ns, err := natsembed.Start(natsembed.Options{DataDir: dir, JetStream: true, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	e.ns = ns

	got := e.waitLabels(t, during, 30*time.Second)
	for _, s := range during {
		if want := s.want(t); !bytes.Equal(mustMarshal(t, got[s.plate+"/"+s.id]), want) {
			t.Errorf("%s: label differs from the expected one", s.id)
		}
	}
	waitUntil(t, 10*time.Second, "ready stream drained", func() bool {
		st, err := e.js.Stream(context.Background(), e.cfg.ReadyStream)
		if err != nil {
			return false
		}
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	})
	dm.mu.Lock()
	defer dm.mu.Unlock()
	for _, s := range append(before, during...) {
		if n := dm.samples[s.id]; n != 1 {
			t.Errorf("%s predicted %d times", s.id, n)
		}
	}
}

// TestMinIORestartMidLoad: MinIO goes down while the consumer holds fetched samples and a batch
// in the model, stays down for a second while the consumer's fetches and label writes fail, and
// comes back; every sample, before and after the outage, gets its exact label, transient S3
// errors were counted, and none is dead-lettered.
func TestMinIORestartMidLoad(t *testing.T) {
	dm := &digestModel{samples: map[string]int{}, gate: make(chan struct{}), held: make(chan struct{})}
	e := startMinIOService(t, func(ctx context.Context, loc string) (model.Predictor, io.Closer, error) {
		return dm, dm, nil
	}, "digest", func(_ *minio.Options, c *inference.Config) {
		c.Backoff = 100 * time.Millisecond // 8 deliveries span ~13 s, far more than the outage
	})
	ctx := context.Background()
	mk := func(id string, seed uint64) minioSample {
		s := minioSample{plate: "restart plate", id: id}
		for c := range s.data {
			s.data[c] = grayPNG(t, 64, seed*4+uint64(c))
		}
		return s
	}
	var before, after []minioSample
	for i := range 12 {
		before = append(before, mk(fmt.Sprintf("a%02d", i), uint64(10+i)))
	}
	for i := range 4 {
		after = append(after, mk(fmt.Sprintf("b%02d", i), uint64(50+i)))
	}
	e.upload(t, before)
	// Every event of the first batch is on the stream (MinIO sends them asynchronously and drops
	// those still queued in memory when it stops) and a batch is in the model: MinIO goes down.
	waitUntil(t, 20*time.Second, "events of the first batch", func() bool {
		return len(streamMessages(t, e.js, e.cfg.EventsStream)) >= 4*len(before)
	})
	select {
	case <-dm.held:
	case <-time.After(20 * time.Second):
		t.Fatal("no batch reached the model")
	}
	if err := e.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	close(dm.gate) // the held batch's label writes now fail, as do the other fetches
	time.Sleep(time.Second)
	if n := len(e.labelEvents()); n != 0 {
		t.Fatalf("%d labels written while MinIO was down", n)
	}
	if err := e.srv.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.AwaitNotifications(ctx, e.bucket, e.cfg.UploadPrefix, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	e.upload(t, after)
	all := append(before, after...)
	got := e.waitLabels(t, all, 30*time.Second)
	for _, s := range all {
		if !bytes.Equal(mustMarshal(t, got[s.plate+"/"+s.id]), s.want(t)) {
			t.Errorf("%s: label differs from the expected one", s.id)
		}
	}
	waitUntil(t, 10*time.Second, "ready stream drained", func() bool {
		st, err := e.js.Stream(ctx, e.cfg.ReadyStream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if dl := streamMessages(t, e.js, e.cfg.DLQStream); len(dl) != 0 {
		t.Errorf("%d dead letters, first: %s", len(dl), dl[0].Data)
	}
	if n := metricValue(t, e.svc, `hpa_inference_errors_total{kind="s3"}`); n < 1 {
		t.Errorf("no S3 errors counted during the outage (%v)", n)
	}
}

// metricValue reads one sample (name with labels, as exposed) from the service's /metrics.
func metricValue(t *testing.T, svc *inference.Service, series string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	svc.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

func mustMarshal(t *testing.T, l labels.Label) []byte {
	t.Helper()
	b, err := labels.MarshalLabel(l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkMinIOEndToEnd measures the service on a real MinIO and, in the same run, on the
// project's in-process S3 server (internal/local/s3local): b.N samples (4 x 64 px PNG each) uploaded by
// 4 concurrent clients per backend. It reports MinIO's samples/s from the first upload to the last
// label event, the latency from a sample's last channel PUT to its label event (p50, p95), and
// the throughput ratio MinIO / s3local. The model is the cheap digest model, so the numbers are
// the S3 + NATS + assembly + decode + write path.
// Run: go test -run '^$' -bench MinIOEndToEnd -benchtime 200x ./consumers/inference
func BenchmarkMinIOEndToEnd(b *testing.B) {
	b.StopTimer()
	minioRate, p50, p95 := endToEnd(b, "minio")
	localRate, _, _ := endToEnd(b, "s3local")
	b.ReportMetric(minioRate, "samples/s")
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p95, "p95-ms")
	b.ReportMetric(localRate, "s3local-samples/s")
	b.ReportMetric(minioRate/localRate, "minio/s3local")
	b.ReportMetric(0, "ns/op")
}

func endToEnd(b *testing.B, backend string) (rate, p50, p95 float64) {
	dm := &digestModel{samples: map[string]int{}}
	e := startS3Service(b, backend, func(ctx context.Context, loc string) (model.Predictor, io.Closer, error) {
		return dm, dm, nil
	}, "digest")
	samples := make([]minioSample, b.N)
	for i := range samples {
		samples[i] = minioSample{plate: "bench plate", id: fmt.Sprintf("b%05d", i)}
		for c := range samples[i].data {
			samples[i].data[c] = grayPNG(b, 64, uint64(i*4+c+7))
		}
	}
	lastPut := make([]time.Time, b.N)
	b.StartTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += 4 {
				s := samples[i]
				for _, c := range []int{2, 0, 3, 1} {
					if err := e.store.Put(context.Background(), s.key(c), s.data[c], "image/png"); err != nil {
						errs <- err
						return
					}
				}
				lastPut[i] = time.Now()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	waitUntil(b, 5*time.Minute, backend+": all labels", func() bool { return len(e.labelEvents()) >= b.N })
	elapsed := time.Since(start)
	b.StopTimer()
	e.mu.Lock()
	lat := make([]float64, 0, b.N)
	for i, s := range samples {
		lat = append(lat, float64(e.firstEv[s.plate+"/"+s.id].Sub(lastPut[i]).Microseconds())/1000)
	}
	e.mu.Unlock()
	sort.Float64s(lat)
	return float64(b.N) / elapsed.Seconds(), lat[len(lat)/2], lat[len(lat)*95/100]
}
