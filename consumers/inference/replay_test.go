package inference

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/producers/replay"
)

// offPublisher loses every event while drop is set (a bucket without notifications, or uploads
// made before the service existed).
type offPublisher struct {
	next bus.Publisher
	drop *atomic.Bool
}

func (d offPublisher) Publish(ctx context.Context, subject string, data []byte, msgID string) error {
	if d.drop.Load() {
		return nil
	}
	return d.next.Publish(ctx, subject, data, msgID)
}

func (e *testEnv) replay(o replay.Options) replay.Summary {
	e.t.Helper()
	o.NC, o.Store = e.nc, e.store
	o.Logger, o.Progress = slog.New(slog.NewTextHandler(io.Discard, nil)), replay.ProgressOff
	if o.Source == "" {
		o.Source = "s3://" + testBucket + "/incoming/"
	}
	sum, err := replay.Run(context.Background(), o)
	if err != nil {
		e.t.Fatal(err)
	}
	return sum
}

// The replay path end to end: a plate uploaded while no events reached NATS is labeled by a
// replay; after a promotion, an only-stale replay relabels it and nothing else; a forced replay
// makes the consumer label everything again.
func TestReplayLabelsOldPlatesAndOnlyStale(t *testing.T) {
	var drop atomic.Bool
	drop.Store(true)
	e := newEnvWith(t, nil, func(p bus.Publisher) bus.Publisher { return offPublisher{p, &drop} })
	old := makePlate("old", 3, 32, 11)
	for _, k := range old.shuffledKeys(1) {
		e.put(k, old.files[k])
	}
	a, b := newFakeModel("A", 0.1), newFakeModel("B", 0.7)
	svc, _ := e.startService(testConfig(), loaderOf(map[string]*fakeModel{"A": a, "B": b}), "A")
	time.Sleep(200 * time.Millisecond)
	if n := len(e.labels.snapshot()); n != 0 {
		t.Fatalf("%d labels without events", n)
	}
	sum := e.replay(replay.Options{ModelDigest: a.info.ManifestDigest})
	if sum.Published != 3 {
		t.Fatalf("replay: %v", sum)
	}
	waitFor(t, 30*time.Second, "replayed plate labeled", func() bool { return len(e.labels.snapshot()) == 3 })
	for _, id := range old.ids {
		e.checkLabel("old", id, old.imgs[id], a)
	}
	// Up to date: nothing to publish.
	if sum := e.replay(replay.Options{ModelDigest: a.info.ManifestDigest}); sum.Published != 0 || sum.UpToDate != 3 {
		t.Fatalf("second replay: %v", sum)
	}
	// Promote B; a new plate arrives live and is labeled by B.
	if err := svc.Load(context.Background(), "B"); err != nil {
		t.Fatal(err)
	}
	drop.Store(false)
	fresh := makePlate("new", 2, 32, 12)
	for _, k := range fresh.shuffledKeys(2) {
		e.put(k, fresh.files[k])
	}
	waitFor(t, 30*time.Second, "live plate labeled", func() bool { return len(e.labels.snapshot()) == 5 })
	sum = e.replay(replay.Options{ModelDigest: b.info.ManifestDigest})
	if sum.Published != 3 || sum.UpToDate != 2 {
		t.Fatalf("only-stale after promotion: %v", sum)
	}
	waitFor(t, 30*time.Second, "old plate relabeled", func() bool {
		snap := e.labels.snapshot()
		for _, id := range old.ids {
			if snap["old/"+id] != 2 {
				return false
			}
		}
		return true
	})
	for _, id := range old.ids {
		e.checkLabel("old", id, old.imgs[id], b)
	}
	for _, id := range fresh.ids {
		if n := e.labels.snapshot()["new/"+id]; n != 1 {
			t.Errorf("new/%s labeled %d times", id, n)
		}
	}
	// Forced: every sample goes through the model again; labels are identical, so none is rewritten.
	before := counter(t, svc, "hpa_inference_samples_unchanged_total", nil)
	if sum := e.replay(replay.Options{Force: true}); sum.Published != 5 {
		t.Fatalf("forced replay: %v", sum)
	}
	waitFor(t, 30*time.Second, "forced relabel", func() bool {
		return counter(t, svc, "hpa_inference_samples_unchanged_total", nil)-before == 5
	})
}

// Live uploads are served before replayed samples: with a long replay backlog queued, a live
// sample is labeled while most of the backlog is still waiting.
func TestLiveServedBeforeReplay(t *testing.T) {
	e := newEnv(t, nil)
	m := newFakeModel("A", 0.2)
	m.delay = 40 * time.Millisecond // per batch
	cfg := testConfig()
	svc, _ := e.startService(cfg, loaderOf(map[string]*fakeModel{"A": m}), "A")
	const backlog = 120
	// The backlog: labeled once live (so the objects exist), then replayed with --force.
	bulk := makePlate("bulk", backlog, 16, 21)
	for _, k := range bulk.shuffledKeys(3) {
		e.put(k, bulk.files[k])
	}
	waitFor(t, 60*time.Second, "bulk labeled", func() bool { return len(e.labels.snapshot()) == backlog })
	before := counter(t, svc, "hpa_inference_samples_unchanged_total", nil)
	if sum := e.replay(replay.Options{Force: true, Source: "s3://" + testBucket + "/incoming/bulk/"}); sum.Published != backlog {
		t.Fatalf("replay: %v", sum)
	}
	waitFor(t, 10*time.Second, "replay started", func() bool {
		return counter(t, svc, "hpa_inference_samples_unchanged_total", nil)-before >= 4
	})
	live := makePlate("live", 1, 16, 22)
	t0 := time.Now()
	for k, v := range live.files {
		e.put(k, v)
	}
	waitFor(t, 30*time.Second, "live labeled", func() bool { return e.labels.snapshot()["live/"+live.ids[0]] == 1 })
	lat := time.Since(t0)
	done := counter(t, svc, "hpa_inference_samples_unchanged_total", nil) - before
	t.Logf("live sample labeled in %v with %v of %d replayed samples done", lat, done, backlog)
	if done > backlog/2 {
		t.Fatalf("live sample waited for %v of %d replayed samples", done, backlog)
	}
}

// An events stream that already captures the replay subjects ("s3.>") leaves no room for the
// replay streams: the consumer runs without the replay path, and replayed events arrive (and are
// labeled) through the events stream.
func TestReplayPathOffWhenEventsStreamCapturesIt(t *testing.T) {
	var drop atomic.Bool
	drop.Store(true)
	e := newEnvWith(t, nil, func(p bus.Publisher) bus.Publisher { return offPublisher{p, &drop} })
	ctx := context.Background()
	st, err := e.js.Stream(ctx, "S3_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	sc := st.CachedInfo().Config
	sc.Subjects = []string{"s3.>"}
	if _, err := e.js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	old := makePlate("old", 2, 32, 13)
	for _, k := range old.shuffledKeys(1) {
		e.put(k, old.files[k])
	}
	a := newFakeModel("A", 0.1)
	e.startService(testConfig(), loaderOf(map[string]*fakeModel{"A": a}), "A")
	if sum := e.replay(replay.Options{}); sum.Published != 2 {
		t.Fatalf("replay: %v", sum)
	}
	waitFor(t, 30*time.Second, "replayed plate labeled", func() bool { return len(e.labels.snapshot()) == 2 })
	if _, err := e.js.Stream(ctx, bus.ReplayStream); err == nil {
		t.Fatal("a replay stream was created beside an events stream capturing its subjects")
	}
}
