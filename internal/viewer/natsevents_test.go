package viewer

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hpa-plates/hpa/internal/local/natsembed"
)

// NATSEvents turns the consumer's label-written events and dead letters into LabelEvents; other
// messages (bad JSON, dead letters without a sample) are ignored.
func TestNATSEvents(t *testing.T) {
	ns, err := natsembed.Start(natsembed.Options{DataDir: t.TempDir(), JetStream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	got := make(chan LabelEvent, 10)
	stop, err := NATSEvents{Conn: nc}.Subscribe(func(ev LabelEvent) { got <- ev })
	if err != nil {
		t.Fatal(err)
	}
	for subj, body := range map[string]string{
		"hpa.labels.p_1-abcd": `{"plate":"p 1","sample_id":"s1","key":"labels/p 1/s1.json","predicted":[0]}`,
		"hpa.labels.x":        `not json`,
		"hpa.dlq._":           `{"plate":"","sample_id":"","kind":"event"}`,
	} {
		if err := nc.Publish(subj, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	_ = nc.Flush()
	if err := nc.Publish("hpa.dlq.p_1-abcd", []byte(`{"plate":"p 1","sample_id":"s2","kind":"corrupt","reason":"bad"}`)); err != nil {
		t.Fatal(err)
	}
	// Labels and dead letters arrive on two subscriptions, each delivered on its own goroutine, so
	// their order between the two is not defined: each wanted event exactly once, in any order.
	want := map[LabelEvent]bool{{Kind: "label", Plate: "p 1", SampleID: "s1"}: true, {Kind: "error", Plate: "p 1", SampleID: "s2", ErrorKind: "corrupt"}: true}
	for range len(want) {
		select {
		case ev := <-got:
			if !want[ev] {
				t.Errorf("event %+v, want one of %+v (each once)", ev, want)
			}
			delete(want, ev)
		case <-time.After(5 * time.Second):
			t.Fatalf("no event for %+v", want)
		}
	}
	stop()
	_ = nc.Publish("hpa.labels.p", []byte(`{"plate":"p","sample_id":"s3"}`))
	_ = nc.Flush()
	select {
	case ev := <-got:
		t.Errorf("event after stop: %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}
