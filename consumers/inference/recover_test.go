package inference

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/bus"
)

// dropPublisher loses the events of keys containing a marker, as an object store that drops
// notifications does.
type dropPublisher struct {
	next   bus.Publisher
	marker string
}

func (p dropPublisher) Publish(ctx context.Context, subject string, data []byte, msgID string) error {
	if strings.Contains(string(data), p.marker) {
		return nil
	}
	return p.next.Publish(ctx, subject, data, msgID)
}

// A channel object whose event was lost is found by the sweep's reconciliation (producers/replay):
// the sample is labeled, not reported incomplete, and the label equals the one a normal upload
// gives.
func TestSweepRecoversLostEvent(t *testing.T) {
	e := newEnvWith(t, nil, func(p bus.Publisher) bus.Publisher { return dropPublisher{p, "lost_yellow"} })
	ctx := context.Background()

	cfg := testConfig()
	cfg.IncompleteAge = time.Minute
	m := newFakeModel("A", 0)
	svc, _ := e.startService(cfg, loaderOf(map[string]*fakeModel{"A": m}), "A")
	set := makePlate("rq", 1, 64, 5)
	id := set.ids[0]
	for _, k := range set.shuffledKeys(1) {
		e.put(strings.Replace(k, id, "lost", 1), set.files[k])
	}
	waitFor(t, 10*time.Second, "three channel events applied", func() bool {
		return counter(t, svc, "hpa_inference_s3_events_total", map[string]string{"result": "channel"}) == 3
	})
	if _, err := e.get("labels/rq/lost.json"); err == nil {
		t.Fatal("labeled without its yellow channel")
	}
	if err := svc.SweepOnce(ctx, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "label after recovery", func() bool {
		_, err := e.get("labels/rq/lost.json")
		return err == nil
	})
	img := set.imgs[id]
	img.ID = "lost"
	e.checkLabel("rq", "lost", img, m)
	if _, err := e.get("labels/rq/lost.error.json"); err == nil {
		t.Error("reported incomplete although recovered")
	}
	if got := counter(t, svc, "hpa_inference_s3_events_total", map[string]string{"result": "reconciled"}); got != 1 {
		t.Errorf("reconciled %v samples, want 1", got)
	}
	if got := counter(t, svc, "hpa_inference_samples_incomplete_total", nil); got != 0 {
		t.Errorf("incomplete reported %v times", got)
	}
}

// A sample whose events were all lost has no KV entry at all: only the sweep's reconciliation
// (the listing of the upload prefix) finds it, and it is labeled; a sample uploaded just now
// (younger than IncompleteAge/2) is left to the live path, and a labeled one is not published again.
func TestSweepLabelsSampleWithAllEventsLost(t *testing.T) {
	e := newEnvWith(t, nil, func(p bus.Publisher) bus.Publisher { return dropPublisher{p, "gone"} })
	ctx := context.Background()

	cfg := testConfig()
	cfg.IncompleteAge = time.Minute
	m := newFakeModel("A", 0)
	svc, _ := e.startService(cfg, loaderOf(map[string]*fakeModel{"A": m}), "A")
	set := makePlate("ra", 2, 64, 7)
	gone, live := set.ids[0], set.ids[1]
	for _, k := range set.shuffledKeys(1) {
		if strings.Contains(k, gone) {
			e.put(strings.Replace(k, gone, "gone", 1), set.files[k])
		} else {
			e.put(k, set.files[k])
		}
	}
	waitFor(t, 10*time.Second, "live sample labeled", func() bool {
		_, err := e.get("labels/ra/" + live + ".json")
		return err == nil
	})
	// As of now the lost sample is too young to be judged: nothing is published.
	if err := svc.SweepOnce(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := e.get("labels/ra/gone.json"); err == nil {
		t.Fatal("labeled although every event was lost and the sweep judged it too young")
	}
	if err := svc.SweepOnce(ctx, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "label of the sample whose events were all lost", func() bool {
		_, err := e.get("labels/ra/gone.json")
		return err == nil
	})
	img := set.imgs[gone]
	img.ID = "gone"
	e.checkLabel("ra", "gone", img, m)
	if got := counter(t, svc, "hpa_inference_s3_events_total", map[string]string{"result": "reconciled"}); got != 1 {
		t.Errorf("reconciled %v samples, want 1 (the labeled one must not be published again)", got)
	}
	// A second sweep finds every sample labeled: nothing more is published.
	if err := svc.SweepOnce(ctx, time.Now().Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, svc, "hpa_inference_s3_events_total", map[string]string{"result": "reconciled"}); got != 1 {
		t.Errorf("reconciled %v samples after a second sweep, want 1", got)
	}
	if _, err := e.get("labels/ra/gone.error.json"); err == nil {
		t.Error("error record for a sample that is complete in the bucket")
	}
}
