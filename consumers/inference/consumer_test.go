package inference

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/testenv"
)

func TestBatcherTritonSemantics(t *testing.T) {
	s := &Service{cfg: Config{MaxBatch: 4, MaxBatchDelay: 30 * time.Millisecond}, m: newMetrics()}
	in := make(chan *job, 8) // buffered like the fetch->batch channel
	out := make(chan []*job)
	go s.batcher(in, out)
	// A full batch leaves at once.
	go func() {
		for range 4 {
			in <- &job{}
		}
	}()
	select {
	case b := <-out:
		if len(b) != 4 {
			t.Fatalf("full batch of %d", len(b))
		}
	case <-time.After(25 * time.Millisecond):
		t.Fatal("full batch waited for the delay")
	}
	// A partial batch leaves after the delay.
	t0 := time.Now()
	in <- &job{}
	b := <-out
	if len(b) != 1 || time.Since(t0) < 25*time.Millisecond {
		t.Fatalf("partial batch of %d after %s", len(b), time.Since(t0))
	}
	// While the model is busy (nobody reads out), a due batch keeps growing up to MaxBatch.
	for range 6 {
		in <- &job{}
		time.Sleep(15 * time.Millisecond)
	}
	b = <-out
	if len(b) != 4 {
		t.Fatalf("due batch grew to %d, want 4", len(b))
	}
	b = <-out
	if len(b) != 2 {
		t.Fatalf("rest batch %d, want 2", len(b))
	}
	close(in)
	if _, ok := <-out; ok {
		t.Fatal("out not closed")
	}
}

// Channels uploaded in random order, concurrently, to a bucket watched by two replicas: every
// sample is labeled exactly once, labels are right, the plate CSV lists every sample.
func TestTwoReplicasRandomOrderExactlyOnce(t *testing.T) {
	e := newEnv(t, nil)
	model := newFakeModel("A", 0.1)
	models := map[string]*fakeModel{"A": model}
	cfg := testConfig()
	s1, _ := e.startService(cfg, loaderOf(models), "A")
	s2, _ := e.startService(cfg, loaderOf(models), "A")

	plates := []*sampleSet{makePlate("plate 1", 10, 64, 1), makePlate("p2", 6, 64, 2)}
	// Real HPA images as channels of two more samples.
	real := realPlate(t, "real", 2)
	plates = append(plates, real)
	var keys []string
	files := map[string][]byte{}
	for i, p := range plates {
		for _, k := range p.shuffledKeys(uint64(i)) {
			keys = append(keys, k)
			files[k] = p.files[k]
		}
	}
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	var wg sync.WaitGroup
	work := make(chan string)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				e.put(k, files[k])
			}
		}()
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()

	total := 0
	for _, p := range plates {
		total += len(p.ids)
	}
	waitFor(t, 60*time.Second, "all labels", func() bool { return len(e.labels.snapshot()) == total })
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show up
	for k, n := range e.labels.snapshot() {
		if n != 1 {
			t.Errorf("%s labeled %d times", k, n)
		}
	}
	if got := counter(t, s1, "hpa_inference_samples_labeled_total", nil) + counter(t, s2, "hpa_inference_samples_labeled_total", nil); got != float64(total) {
		t.Errorf("label writes %v, want %d", got, total)
	}
	for _, p := range plates {
		for _, id := range p.ids {
			l := e.checkLabel(p.plate, id, p.imgs[id], model)
			if len(l.Sources) != 4 || l.Sources[1].Name != id+"_green.png" {
				t.Errorf("sources %+v", l.Sources)
			}
		}
		// The CSV converges to the full plate.
		waitFor(t, 20*time.Second, "plate CSV "+p.plate, func() bool {
			b, err := e.get("labels/" + p.plate + "/submission.csv")
			if err != nil {
				return false
			}
			rows, err := labels.ReadSubmission(bytes.NewReader(b))
			return err == nil && len(rows) == len(p.ids)
		})
	}
	if model.samples.Load() != int64(total) {
		t.Errorf("model saw %d samples, want %d", model.samples.Load(), total)
	}
	if s1.m == nil || counter(t, s1, "hpa_inference_batch_size", nil)+counter(t, s2, "hpa_inference_batch_size", nil) == 0 {
		t.Error("no batches observed")
	}
}

// realPlate builds n samples whose four channels are real HPA PNGs from the committed fixture.
func realPlate(t *testing.T, plate string, n int) *sampleSet {
	t.Helper()
	dir := filepath.Join(testenv.HPAFixture(t), "train_sample")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".png") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) < 4*n {
		t.Fatalf("need %d real images, have %d in %s", 4*n, len(names), dir)
	}
	s := &sampleSet{plate: plate, files: map[string][]byte{}, imgs: map[string]pipeline.Image4{}}
	for i := range n {
		id := "real" + string(rune('a'+i))
		s.ids = append(s.ids, id)
		img := pipeline.Image4{ID: id}
		for c, ch := range pipeline.ChannelNames {
			b, err := os.ReadFile(filepath.Join(dir, names[i*4+c]))
			if err != nil {
				t.Fatal(err)
			}
			s.files["incoming/"+plate+"/"+id+"_"+ch+".png"] = b
			p, err := pipeline.DecodeChannel(b, names[i*4+c], pipeline.Channel(c), pipeline.DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			img.Planes[c], img.W, img.H = p, p.W, p.H
		}
		s.imgs[id] = img
	}
	return s
}

// Poison inputs get an error record and a dead letter each; good samples keep flowing.
func TestPoisonInputs(t *testing.T) {
	e := newEnv(t, nil)
	model := newFakeModel("A", 0.2)
	cfg := testConfig()
	cfg.MaxObjectBytes = 60_000
	svc, _ := e.startService(cfg, loaderOf(map[string]*fakeModel{"A": model}), "A")

	good := makePlate("pz", 4, 64, 9)
	for _, k := range good.shuffledKeys(1) {
		e.put(k, good.files[k])
	}
	up := func(id string, chans [4][]byte) {
		for c, b := range chans {
			if b != nil {
				e.put("incoming/pz/"+id+"_"+pipeline.ChannelNames[c]+".png", b)
			}
		}
	}
	ok := pngGray(64, 64, 1)
	corrupt := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0x42}, 100)...)
	up("corrupt", [4][]byte{ok, corrupt, ok, ok})
	up("text", [4][]byte{ok, ok, []byte("hello, this is not an image\n"), ok})
	up("mismatch", [4][]byte{ok, ok, ok, pngGray(32, 32, 2)})
	up("huge", [4][]byte{ok, pngGray(400, 400, 3), ok, ok})
	// Missing object: three real uploads and an event for a fourth object that does not exist.
	up("missing", [4][]byte{ok, ok, ok, nil})
	ev, err := bus.EncodeS3Events(bus.S3EventOptions{Region: "us-east-1"}, bus.ObjectEvent{Bucket: testBucket,
		Key: "incoming/pz/missing_yellow.png", Size: 10, ETag: "abc", EventName: bus.ObjectCreatedPut, EventTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(context.Background(), "s3.events."+testBucket, ev); err != nil {
		t.Fatal(err)
	}
	// An unparsable event and one for another bucket.
	if _, err := e.js.Publish(context.Background(), "s3.events."+testBucket, []byte("{not json")); err != nil {
		t.Fatal(err)
	}

	wantKinds := map[string]string{"corrupt": "", "text": "unsupported", "mismatch": "size_mismatch", "huge": "too_large", "missing": "missing_channel"}
	for id, kind := range wantKinds {
		var rec labels.ErrorRecord
		waitFor(t, 30*time.Second, "error record "+id, func() bool {
			b, err := e.get("labels/pz/" + id + ".error.json")
			if err != nil {
				return false
			}
			rec, err = labels.ParseErrorRecord(b)
			return err == nil
		})
		if kind != "" && rec.Kind != kind {
			t.Errorf("%s: kind %q, want %q (%s)", id, rec.Kind, kind, rec.Reason)
		}
		if rec.Kind == "" || rec.Reason == "" || !strings.HasPrefix(rec.Object, "incoming/pz/"+id+"_") || rec.Model == nil {
			t.Errorf("%s: record %+v", id, rec)
		}
		if _, err := e.get("labels/pz/" + id + ".json"); err == nil {
			t.Errorf("%s: poison sample got a label", id)
		}
	}
	waitFor(t, 30*time.Second, "good labels", func() bool { return len(e.labels.snapshot()) == len(good.ids) })
	for _, id := range good.ids {
		e.checkLabel("pz", id, good.imgs[id], model)
	}
	var dl map[string]string
	waitFor(t, 10*time.Second, "dead letters", func() bool {
		dl = map[string]string{}
		for _, m := range e.dlq(cfg.DLQStream) {
			var body struct {
				SampleID string `json:"sample_id"`
				Kind     string `json:"kind"`
			}
			_ = json.Unmarshal(m.Data, &body)
			dl[body.SampleID] = m.Header.Get("Hpa-Error-Kind")
		}
		return len(dl) == len(wantKinds)+1 // + the unparsable event (no sample id)
	})
	for id := range wantKinds {
		if dl[id] == "" {
			t.Errorf("no dead letter for %s", id)
		}
	}
	if dl[""] != "event" {
		t.Errorf("unparsable event dead letter kind %q", dl[""])
	}
	// Poison samples are terminated, not redelivered: the work queue drains.
	waitFor(t, 10*time.Second, "ready stream drained", func() bool {
		st, err := e.js.Stream(context.Background(), cfg.ReadyStream)
		if err != nil {
			return false
		}
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	})
	if got := counter(t, svc, "hpa_inference_errors_total", map[string]string{"kind": "too_large"}); got != 1 {
		t.Errorf("too_large errors %v", got)
	}
}

// Relabeling is idempotent: replayed events, re-uploads of the same bytes and a repeated
// sample-ready message never rewrite a label of the same model digest.
func TestIdempotentRelabel(t *testing.T) {
	e := newEnv(t, nil)
	model := newFakeModel("A", 0.3)
	loader := loaderOf(map[string]*fakeModel{"A": model})
	cfg := testConfig()
	svc, stop := e.startService(cfg, loader, "A")
	p := makePlate("pi", 3, 64, 5)
	for _, k := range p.shuffledKeys(2) {
		e.put(k, p.files[k])
	}
	waitFor(t, 30*time.Second, "labels", func() bool { return len(e.labels.snapshot()) == 3 })
	before := map[string][]byte{}
	for _, id := range p.ids {
		b, err := e.get("labels/pi/" + id + ".json")
		if err != nil {
			t.Fatal(err)
		}
		before[id] = b
	}
	// Same bytes uploaded again: new events, same content: no new label.
	for _, k := range p.shuffledKeys(3) {
		e.put(k, p.files[k])
	}
	// A ready message published again outside dedup (new msg id): the writer finds the label.
	rm := bus.SampleReady{Plate: "pi", ID: p.ids[0], Content: "x"}
	for c, ch := range pipeline.ChannelNames {
		rm.Objects[c] = bus.ObjectRef{Key: "incoming/pi/" + p.ids[0] + "_" + ch + ".png"}
	}
	b, _ := json.Marshal(rm)
	if _, err := e.js.Publish(context.Background(), cfg.ReadySubject+".pi", b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "unchanged", func() bool { return counter(t, svc, "hpa_inference_samples_unchanged_total", nil) >= 1 })
	time.Sleep(300 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// A new replica with a fresh events consumer replays the whole event stream.
	cfg2 := cfg
	cfg2.EventsConsumer = "replay"
	svc2, _ := e.startService(cfg2, loader, "A")
	waitFor(t, 20*time.Second, "replay", func() bool {
		c, err := e.js.Consumer(context.Background(), cfg.EventsStream, "replay")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	time.Sleep(300 * time.Millisecond)
	for k, n := range e.labels.snapshot() {
		if n != 1 {
			t.Errorf("%s labeled %d times", k, n)
		}
	}
	if got := counter(t, svc, "hpa_inference_samples_labeled_total", nil) + counter(t, svc2, "hpa_inference_samples_labeled_total", nil); got != 3 {
		t.Errorf("label writes %v, want 3", got)
	}
	for _, id := range p.ids {
		b, err := e.get("labels/pi/" + id + ".json")
		if err != nil || !bytes.Equal(b, before[id]) {
			t.Errorf("label %s changed", id)
		}
	}
	// New content for a channel: the sample is labeled again.
	e.put("incoming/pi/"+p.ids[1]+"_green.png", pngGray(64, 64, 777))
	waitFor(t, 20*time.Second, "relabel after new content", func() bool { return e.labels.snapshot()["pi/"+p.ids[1]] == 2 })
}

// A promotion loads the new set beside the old and swaps between batches: no sample is dropped
// or labeled twice, the old set is closed only after its last batch, and a failed load keeps the
// serving set.
func TestHotReload(t *testing.T) {
	e := newEnv(t, nil)
	a, b := newFakeModel("A", 0.4), newFakeModel("B", 0.9)
	a.delay = 30 * time.Millisecond
	models := map[string]*fakeModel{"A": a, "B": b}
	cfg := testConfig()
	cfg.MaxBatch = 2
	svc, _ := e.startService(cfg, loaderOf(models), "A")
	p := makePlate("ph", 16, 64, 6)
	keys := p.shuffledKeys(5)
	for i, k := range keys {
		e.put(k, p.files[k])
		if i == len(keys)/2 {
			if err := e.nc.Publish(cfg.PromotedSubject, []byte(`{"location":"B"}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 30*time.Second, "all labels", func() bool { return len(e.labels.snapshot()) == len(p.ids) })
	time.Sleep(200 * time.Millisecond)
	for k, n := range e.labels.snapshot() {
		if n != 1 {
			t.Errorf("%s labeled %d times", k, n)
		}
	}
	info, _ := svc.Model()
	if info.ManifestDigest != "sha256:B" {
		t.Fatalf("serving %s after promotion", info.ManifestDigest)
	}
	waitFor(t, 5*time.Second, "old set closed", func() bool { return a.closed.Load() })
	if a.closedWhileBusy.Load() || a.usedAfterClose.Load() {
		t.Error("old model closed while a batch used it")
	}
	nA, nB := 0, 0
	for _, id := range p.ids {
		lb, err := e.get("labels/ph/" + id + ".json")
		if err != nil {
			t.Fatal(err)
		}
		l, _ := labels.ParseLabel(lb)
		m := a
		if l.Model.ManifestDigest == "sha256:B" {
			m, nB = b, nB+1
		} else {
			nA++
		}
		e.checkLabel("ph", id, p.imgs[id], m)
	}
	if nB == 0 {
		t.Errorf("no sample labeled by the promoted set (A %d, B %d)", nA, nB)
	}
	// A failed load keeps B serving and is counted.
	if err := svc.Load(context.Background(), "nope"); err == nil {
		t.Fatal("loading a missing set must fail")
	}
	if info, _ := svc.Model(); info.ManifestDigest != "sha256:B" || b.closed.Load() {
		t.Fatal("failed load disturbed the serving set")
	}
	if got := counter(t, svc, "hpa_inference_model_reloads_total", map[string]string{"result": "failed"}); got != 1 {
		t.Errorf("failed reloads %v", got)
	}
	// The model pointer object triggers a reload too.
	c := newFakeModel("C", 0.5)
	models["C"] = c
	svc.cfg.ModelPointer = "models/current"
	e.put("models/current", []byte("C\n"))
	svc.checkPointer(context.Background())
	if info, _ := svc.Model(); info.ManifestDigest != "sha256:C" {
		t.Fatalf("pointer reload: serving %s", info.ManifestDigest)
	}
}

// 20% of S3 requests fail before reaching the store: 15% with an error, 2% hang for seconds
// (past the consumer's per-call timeout), 3% answer 503 after a delay. Every sample is still
// labeled, exactly once.
func TestFaultyS3(t *testing.T) {
	var n atomic.Int64
	var failed atomic.Int64
	mw := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i := n.Add(1)
			x := (i * 2654435761) % 100 // deterministic spread
			switch {
			case x < 15:
				failed.Add(1)
				_, _ = io.Copy(io.Discard, r.Body)
				http.Error(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected</Message></Error>`, http.StatusInternalServerError)
				return
			case x < 17:
				// Hangs past the consumer's per-call timeout (and the client gives up).
				failed.Add(1)
				select {
				case <-r.Context().Done():
				case <-time.After(3 * time.Second):
				}
				http.Error(w, "hung", http.StatusServiceUnavailable)
				return
			case x < 20:
				failed.Add(1)
				time.Sleep(200 * time.Millisecond)
				_, _ = io.Copy(io.Discard, r.Body)
				http.Error(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>`, http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, mw)
	model := newFakeModel("A", 0.6)
	cfg := testConfig()
	cfg.OpTimeout = 500 * time.Millisecond
	models := map[string]*fakeModel{"A": model}
	svcA, _ := e.startService(cfg, loaderOf(models), "A")
	svcB, _ := e.startService(cfg, loaderOf(models), "A")
	p := makePlate("pf", 16, 64, 8)
	for _, k := range p.shuffledKeys(9) {
		e.put(k, p.files[k])
	}
	deadline := time.Now().Add(90 * time.Second)
	for len(e.labels.snapshot()) < len(p.ids) {
		if time.Now().After(deadline) {
			naks := counter(t, svcA, "hpa_inference_naks_total", nil) + counter(t, svcB, "hpa_inference_naks_total", nil)
			t.Fatalf("timed out after 90s: %d of %d samples labeled, %d dead letters, %.0f redeliveries, %d of %d S3 requests failed",
				len(e.labels.snapshot()), len(p.ids), len(e.dlq("HPA_DLQ")), naks, failed.Load(), n.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range p.ids {
		e.checkLabel("pf", id, p.imgs[id], model)
	}
	if failed.Load() == 0 {
		t.Fatal("no request failed: the fault injection did not run")
	}
	t.Logf("%d of %d S3 requests failed", failed.Load(), n.Load())
}

// Incomplete samples older than the configured age are reported once.
func TestIncompleteSweep(t *testing.T) {
	e := newEnv(t, nil)
	cfg := testConfig()
	cfg.IncompleteAge = time.Minute
	svc, _ := e.startService(cfg, loaderOf(map[string]*fakeModel{"A": newFakeModel("A", 0)}), "A")
	ok := pngGray(64, 64, 1)
	e.put("incoming/pq/lonely_red.png", ok)
	e.put("incoming/pq/lonely_blue.png", ok)
	waitFor(t, 10*time.Second, "events applied", func() bool {
		return counter(t, svc, "hpa_inference_s3_events_total", map[string]string{"result": "channel"}) == 2
	})
	if err := svc.SweepOnce(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.get("labels/pq/lonely.error.json"); err == nil {
		t.Fatal("reported before the age")
	}
	for range 2 {
		if err := svc.SweepOnce(context.Background(), time.Now().Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := e.get("labels/pq/lonely.error.json")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := labels.ParseErrorRecord(b)
	if err != nil || rec.Kind != "missing_channel" || !strings.Contains(rec.Reason, "green, yellow") {
		t.Fatalf("record %+v %v", rec, err)
	}
	if got := counter(t, svc, "hpa_inference_samples_incomplete_total", nil); got != 1 {
		t.Errorf("incomplete reported %v times", got)
	}
}

func TestHealthEndpoints(t *testing.T) {
	e := newEnv(t, nil)
	svc, err := New(e.nc, e.store, loaderOf(map[string]*fakeModel{"A": newFakeModel("A", 0)}), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "no model") {
		t.Errorf("readyz before load: %d %q", code, body)
	}
	if err := svc.Load(context.Background(), "A"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz after load: %d", code)
	}
	_, body := get("/metrics")
	if !strings.Contains(body, `hpa_inference_model_info{digest="sha256:A",name="A",version="1"} 1`) {
		t.Errorf("metrics lack model info:\n%.2000s", body)
	}
	if strings.Contains(body, testSK) {
		t.Error("secret in metrics")
	}
	if _, err := New(e.nc, e.store, nil, Config{LabelsPrefix: "incoming/x/", UploadPrefix: "incoming/"}); err == nil {
		t.Error("overlapping prefixes must be refused")
	}
}

// A model failure is transient: the batch is retried with backoff and every sample is labeled.
func TestModelFailureRetried(t *testing.T) {
	e := newEnv(t, nil)
	model := newFakeModel("A", 0.25)
	model.failNext.Store(2)
	svc, _ := e.startService(testConfig(), loaderOf(map[string]*fakeModel{"A": model}), "A")
	p := makePlate("pm", 3, 64, 31)
	for _, k := range p.shuffledKeys(1) {
		e.put(k, p.files[k])
	}
	waitFor(t, 30*time.Second, "labels after model failures", func() bool { return len(e.labels.snapshot()) == len(p.ids) })
	for _, id := range p.ids {
		e.checkLabel("pm", id, p.imgs[id], model)
	}
	if got := counter(t, svc, "hpa_inference_errors_total", map[string]string{"kind": "inference"}); got < 1 {
		t.Errorf("model failures not counted: %v", got)
	}
	if got := counter(t, svc, "hpa_inference_naks_total", nil); got < 1 {
		t.Errorf("no redelivery after a model failure: %v", got)
	}
}

// A batch that runs longer than AckWait is kept alive by InProgress heartbeats: the other replica
// never gets its messages, the model runs each sample once.
func TestHeartbeatsKeepLongBatches(t *testing.T) {
	e := newEnv(t, nil)
	slow := newFakeModel("A", 0.35)
	slow.delay = 2500 * time.Millisecond
	cfg := testConfig()
	cfg.AckWait = time.Second
	cfg.MaxBatch = 4
	cfg.MaxBatchDelay = 300 * time.Millisecond
	models := map[string]*fakeModel{"A": slow}
	e.startService(cfg, loaderOf(models), "A")
	e.startService(cfg, loaderOf(models), "A")
	p := makePlate("pl", 3, 64, 41)
	for _, k := range p.shuffledKeys(2) {
		e.put(k, p.files[k])
	}
	waitFor(t, 30*time.Second, "labels of slow batches", func() bool { return len(e.labels.snapshot()) == len(p.ids) })
	time.Sleep(1500 * time.Millisecond) // a redelivery would show up as a second run
	if got := slow.samples.Load(); got != int64(len(p.ids)) {
		t.Errorf("model ran %d samples for %d (redelivered during a long batch)", got, len(p.ids))
	}
	for k, n := range e.labels.snapshot() {
		if n != 1 {
			t.Errorf("%s labeled %d times", k, n)
		}
	}
}

// MaxAckPending bounds the samples in flight across replicas (backpressure): a slow model never
// has more than MaxAckPending sample-ready messages outstanding, and all samples get labeled.
func TestBackpressureMaxAckPending(t *testing.T) {
	e := newEnv(t, nil)
	slow := newFakeModel("A", 0.45)
	slow.delay = 100 * time.Millisecond
	cfg := testConfig()
	cfg.MaxAckPending = 3
	cfg.MaxBatch = 2
	models := map[string]*fakeModel{"A": slow}
	e.startService(cfg, loaderOf(models), "A")
	e.startService(cfg, loaderOf(models), "A")
	p := makePlate("pb", 10, 64, 51)
	for _, k := range p.shuffledKeys(3) {
		e.put(k, p.files[k])
	}
	cons, err := e.js.Consumer(context.Background(), cfg.ReadyStream, cfg.LabelConsumer)
	if err != nil {
		t.Fatal(err)
	}
	maxPending, sawWaiting := 0, false
	waitFor(t, 60*time.Second, "labels under backpressure", func() bool {
		if info, err := cons.Info(context.Background()); err == nil {
			maxPending = max(maxPending, info.NumAckPending)
			sawWaiting = sawWaiting || info.NumPending > 0
		}
		return len(e.labels.snapshot()) == len(p.ids)
	})
	if maxPending > cfg.MaxAckPending {
		t.Errorf("%d messages outstanding, MaxAckPending %d", maxPending, cfg.MaxAckPending)
	}
	if !sawWaiting {
		t.Log("the stream never held waiting samples (load too light to show backpressure)")
	}
}
