package training

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/runs"
)

func testConfig(e *testEnv, t testing.TB) Config {
	c := DefaultConfig()
	c.MinNew = 10
	c.Quiet = 300 * time.Millisecond
	c.Poll = 100 * time.Millisecond
	c.Settings = testSettings()
	c.CacheDir = filepath.Join(e.dir, "coord")
	return c
}

func startCoordinator(t testing.TB, e *testEnv, cfg Config) (*Coordinator, context.CancelFunc) {
	t.Helper()
	return startCoordinatorWith(t, e, cfg, nil)
}

func startCoordinatorWith(t testing.TB, e *testEnv, cfg Config, set func(*Coordinator)) (*Coordinator, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := NewCoordinator(ctx, cfg, e.nc, e.js, e.store, e.log)
	if err != nil {
		t.Fatal(err)
	}
	c.Metrics = NewMetrics()
	if set != nil {
		set(c)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return c, stop
}

func startWorker(t testing.TB, e *testEnv, name string) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := NewWorker(ctx, WorkerConfig{Name: name, CacheDir: filepath.Join(e.dir, name), Torch: torchLib(t), Workers: 1, AckWait: 3 * time.Second}, e.js, e.store, e.log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func (e *testEnv) kvGet(t testing.TB, bucket, key string) []byte {
	t.Helper()
	kv, err := e.js.KeyValue(context.Background(), bucket)
	if err != nil {
		return nil
	}
	en, err := kv.Get(context.Background(), key)
	if err != nil {
		return nil
	}
	return en.Value()
}

func (e *testEnv) runRecords(t testing.TB) []*runs.Run {
	t.Helper()
	objs, err := e.store.List(context.Background(), "training/runs/")
	if err != nil {
		t.Fatal(err)
	}
	var out []*runs.Run
	for _, o := range objs {
		if strings.Count(strings.TrimPrefix(o.Key, "training/runs/"), "/") != 0 {
			continue
		}
		b, err := e.store.Get(context.Background(), o.Key, 0)
		if err != nil {
			t.Fatal(err)
		}
		r, err := runs.ParseRun(b, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func (e *testEnv) decisions(t testing.TB) []*runs.Decision {
	t.Helper()
	objs, err := e.store.List(context.Background(), "models/decisions/")
	if err != nil {
		t.Fatal(err)
	}
	var out []*runs.Decision
	for _, o := range objs {
		b, _ := e.store.Get(context.Background(), o.Key, 0)
		d, err := runs.ParseDecision(b, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// A bad label file gets an error record next to it and a dead letter; a valid file beside it
// enters the registry; nothing starts from the bad one.
func TestBadLabelFiles(t *testing.T) {
	e := newEnv(t)
	data := synthData(t, 6, 3)
	e.uploadImages(t, data, "training/images/")
	cfg := testConfig(e, t)
	cfg.MinNew = 1000 // no run
	startCoordinator(t, e, cfg)
	good, _ := os.ReadFile(filepath.Join(data, "train.csv"))
	e.put(t, "training/labels/bad.csv", []byte("Id,Target\nnosuch,1\n"+strings.Split(string(good), "\n")[1]+"\n"+strings.Split(string(good), "\n")[1]+"\n"))
	e.put(t, "training/labels/good.csv", good)
	var rec LabelFileError
	waitFor(t, 20*time.Second, "error record", func() bool {
		b, err := e.store.Get(context.Background(), "training/labels/bad.csv.error.json", 0)
		return err == nil && json.Unmarshal(b, &rec) == nil
	})
	if rec.Schema != "hpa.error/v1" || rec.Kind != "labels" || len(rec.Rows) != 2 ||
		!strings.Contains(rec.Rows[0].Reason, "missing images") || rec.Rows[0].Line != 2 || !strings.Contains(rec.Rows[1].Reason, "Id repeated") {
		t.Errorf("record %+v", rec)
	}
	// The dead letter names the object.
	cons, err := e.js.OrderedConsumer(context.Background(), bus.DLQStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var dl bus.DeadLetter
	if err := json.Unmarshal(msg.Data(), &dl); err != nil || dl.Object != "training/labels/bad.csv" || dl.Kind != "labels" {
		t.Errorf("dead letter %s", msg.Data())
	}
	var reg Registry
	waitFor(t, 20*time.Second, "registry with the good file", func() bool {
		b := e.kvGet(t, bus.DatasetsBucket, registryKey)
		return b != nil && json.Unmarshal(b, &reg) == nil && reg.Files == 2
	})
	if reg.Samples != 6 || reg.Rejected != 1 || reg.NewSamples != 6 || !strings.HasPrefix(reg.Digest, "sha256:") {
		t.Errorf("registry %+v", reg)
	}
	if _, err := e.store.Get(context.Background(), "training/labels/good.csv.error.json", 0); err == nil {
		t.Error("error record for the good file")
	}
	time.Sleep(500 * time.Millisecond)
	if r := e.runRecords(t); len(r) != 0 {
		t.Errorf("%d runs started", len(r))
	}
}

// Label files in a burst start exactly one run after the quiet period; the worker trains both
// folds; the merged candidate is promoted (no production yet): pointer, KV fact, promotion message,
// decision record, run record done.
func TestRunEndToEnd(t *testing.T) {
	lib := torchLib(t)
	_ = lib
	e := newEnv(t)
	data := synthData(t, 24, 4)
	e.uploadImages(t, data, "training/images/")
	promoted, err := e.nc.SubscribeSync(bus.PromotedSubject)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(e, t)
	cfg.Quiet = 2 * time.Second // the burst below is 10 uploads 50 ms apart
	cfg.Relabel, cfg.RelabelDelay = true, 100*time.Millisecond
	relabeled := make(chan bus.Promotion, 4)
	co, _ := startCoordinatorWith(t, e, cfg, func(c *Coordinator) {
		c.Relabeler = RelabelFunc(func(_ context.Context, p bus.Promotion) error { relabeled <- p; return nil })
	})
	startWorker(t, e, "w1")
	csv, _ := os.ReadFile(filepath.Join(data, "train.csv"))
	lines := strings.Split(strings.TrimSpace(string(csv)), "\n")
	// Ten uploads in a burst: one run.
	for i := 0; i < 10; i++ {
		part := lines[0] + "\n" + strings.Join(lines[1+i*2:min(len(lines), 3+i*2+2)], "\n") + "\n"
		if i == 9 {
			part = string(csv)
		}
		e.put(t, "training/labels/burst-"+string(rune('a'+i))+".csv", []byte(part))
		time.Sleep(50 * time.Millisecond)
	}
	lastUpload := time.Now()
	var cur bus.Promotion
	waitFor(t, 4*time.Minute, "promotion", func() bool {
		b := e.kvGet(t, bus.ModelsBucket, bus.CurrentModelKey)
		if b == nil {
			return false
		}
		cur = bus.ParsePromotion(b)
		return true
	})
	rs := e.runRecords(t)
	if len(rs) != 1 {
		t.Fatalf("%d runs, want 1", len(rs))
	}
	r := rs[0]
	waitFor(t, 10*time.Second, "run done", func() bool { r = e.runRecords(t)[0]; return r.State == runs.RunDone })
	if r.Samples != 24 || r.Done() != 2 || r.MacroF1 == nil || r.Decision == "" || r.Candidate != cur.Version {
		t.Errorf("run %+v", r)
	}
	if quiet := r.Created.Sub(lastUpload); quiet < cfg.Quiet-50*time.Millisecond {
		t.Errorf("run started %s after the last upload, before the %s quiet period", quiet, cfg.Quiet)
	}
	if cur.Location != "s3://hpa/models/"+r.Candidate+"/" || !strings.HasPrefix(cur.ManifestDigest, "sha256:") || cur.DatasetDigest != r.DatasetDigest {
		t.Errorf("current %+v", cur)
	}
	// The promotion names the digest labels will carry (model.Manifest.Digest).
	mb, _ := e.store.Get(context.Background(), "models/"+r.Candidate+"/manifest.json", 0)
	if mf, err := model.ParseManifest(mb, "manifest.json"); err != nil {
		t.Error(err)
	} else if d, _ := mf.Digest(); d != cur.ManifestDigest {
		t.Errorf("promotion digest %s, manifest digest %s", cur.ManifestDigest, d)
	}
	ptr, err := e.store.Get(context.Background(), "models/current.json", 0)
	if err != nil || bus.ParsePromotion(ptr).Version != cur.Version {
		t.Errorf("pointer %s %v", ptr, err)
	}
	if m, err := promoted.NextMsg(5 * time.Second); err != nil || bus.ParsePromotion(m.Data).Location != cur.Location {
		t.Errorf("promotion message %v", err)
	}
	select {
	case p := <-relabeled:
		if p.Version != cur.Version || p.ManifestDigest != cur.ManifestDigest {
			t.Errorf("relabel asked for %+v", p)
		}
	case <-time.After(10 * time.Second):
		t.Error("no relabel after the promotion")
	}
	ds := e.decisions(t)
	if len(ds) != 1 || ds[0].Action != runs.ActionPromote || ds[0].RunID != r.ID || ds[0].By != "coordinator" {
		t.Errorf("decisions %+v", ds)
	}
	for _, k := range []string{"manifest.json", "report.json", "members/fold0_cycle0.onnx", "members/fold1_cycle0.onnx"} {
		if _, err := e.store.Get(context.Background(), "models/"+r.Candidate+"/"+k, 0); err != nil {
			t.Errorf("model set: %v", err)
		}
	}
	if _, err := e.store.Get(context.Background(), SnapshotKey("datasets/", r.DatasetDigest), 0); err != nil {
		t.Errorf("snapshot: %v", err)
	}
	// The same data does not start another run; the lock is free.
	time.Sleep(time.Second)
	if n := len(e.runRecords(t)); n != 1 {
		t.Errorf("%d runs after the first", n)
	}
	if b := e.kvGet(t, bus.TrainingBucket, activeKey); b != nil {
		t.Errorf("lock still held by %s", b)
	}
	m := co.Metrics
	if value(m.labelFiles.WithLabelValues("valid")) != 10 || value(m.runs.WithLabelValues("started")) != 1 ||
		value(m.runs.WithLabelValues(runs.RunDone)) != 1 || value(m.decisions.WithLabelValues(runs.ActionPromote)) != 1 {
		t.Errorf("metrics: files %v, started %v, done %v, promoted %v", value(m.labelFiles.WithLabelValues("valid")),
			value(m.runs.WithLabelValues("started")), value(m.runs.WithLabelValues(runs.RunDone)),
			value(m.decisions.WithLabelValues(runs.ActionPromote)))
	}
	_ = errors.New
}

// The coordinator is stopped once a run is queued; a worker trains every fold and stops; a new
// coordinator (no worker alive any more) merges, decides and promotes without training again.
// Label files uploaded while the run is in progress go to the next run.
func TestCoordinatorRestartAfterFolds(t *testing.T) {
	torchLib(t)
	e := newEnv(t)
	ctx := context.Background()
	data := synthData(t, 24, 6)
	e.uploadImages(t, data, "training/images/")
	csv, _ := os.ReadFile(filepath.Join(data, "train.csv"))
	lines := strings.Split(strings.TrimSpace(string(csv)), "\n")
	cfg := testConfig(e, t)
	_, stopCoord := startCoordinator(t, e, cfg)
	e.put(t, "training/labels/first.csv", []byte(strings.Join(lines[:21], "\n")+"\n"))
	var runID string
	waitFor(t, 30*time.Second, "run queued", func() bool {
		b := e.kvGet(t, bus.TrainingBucket, activeKey)
		runID = string(b)
		return b != nil
	})
	waitFor(t, 30*time.Second, "fold jobs queued", func() bool {
		st, err := e.js.Stream(ctx, bus.TrainJobsStream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 2
	})
	stopCoord()
	// Uploads during the run: not in this run's snapshot.
	e.put(t, "training/labels/second.csv", []byte(lines[0]+"\n"+strings.Join(lines[21:], "\n")+"\n"))
	stopWorker := startWorker(t, e, "w1")
	waitFor(t, 3*time.Minute, "both folds done", func() bool {
		for k := range 2 {
			var fs FoldState
			b := e.kvGet(t, bus.TrainingBucket, foldKey(runID, k))
			if b == nil || json.Unmarshal(b, &fs) != nil || fs.State != runs.FoldDone {
				return false
			}
		}
		return true
	})
	stopWorker()
	if cur := e.kvGet(t, bus.ModelsBucket, bus.CurrentModelKey); cur != nil {
		t.Fatalf("promoted without a coordinator: %s", cur)
	}
	cfg2 := cfg
	cfg2.MinNew = 1000 // the second file alone must not start a run here
	startCoordinator(t, e, cfg2)
	var cur bus.Promotion
	waitFor(t, time.Minute, "promotion after the restart", func() bool {
		b := e.kvGet(t, bus.ModelsBucket, bus.CurrentModelKey)
		if b != nil {
			cur = bus.ParsePromotion(b)
		}
		return b != nil
	})
	if cur.Version != runID {
		t.Errorf("promoted %s, want %s", cur.Version, runID)
	}
	var r *runs.Run
	waitFor(t, 10*time.Second, "run done", func() bool {
		rs := e.runRecords(t)
		if len(rs) != 1 {
			return false
		}
		r = rs[0]
		return r.State == runs.RunDone
	})
	if r.Samples != 20 {
		t.Errorf("run snapshot has %d samples, want the 20 of the first file", r.Samples)
	}
	for _, f := range r.Folds {
		if f.Attempts != 1 || f.Worker != "w1" {
			t.Errorf("fold %d: %d attempts on %s", f.Fold, f.Attempts, f.Worker)
		}
	}
	// The registry now has the second file's samples, new since the production dataset.
	var reg Registry
	waitFor(t, 10*time.Second, "registry after the run", func() bool {
		b := e.kvGet(t, bus.DatasetsBucket, registryKey)
		return b != nil && json.Unmarshal(b, &reg) == nil && reg.Samples == 24 && reg.ProductionDataset == r.DatasetDigest
	})
	if reg.NewSamples != 4 {
		t.Errorf("registry %+v: want 4 new", reg)
	}
	_ = ctx
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
