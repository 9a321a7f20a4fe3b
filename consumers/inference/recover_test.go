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

// A channel object whose event was lost is found by the incomplete-sample sweep next to the
// sample's other channels: the sample is labeled, not reported incomplete, and the label equals the
// one a normal upload gives.
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
	if got := counter(t, svc, "hpa_inference_s3_events_total", map[string]string{"result": "recovered"}); got != 1 {
		t.Errorf("recovered %v channels, want 1", got)
	}
	if got := counter(t, svc, "hpa_inference_samples_incomplete_total", nil); got != 0 {
		t.Errorf("incomplete reported %v times", got)
	}
}
