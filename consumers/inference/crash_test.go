package inference

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/local/natsembed"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// blockingModel never finishes a batch until released: a replica that dies mid-batch.
type blockingModel struct {
	*fakeModel
	entered chan struct{}
	release chan struct{}
}

func (m *blockingModel) Predict(ctx context.Context, batch []pipeline.Image4) ([][]float64, error) {
	select {
	case m.entered <- struct{}{}:
	default:
	}
	<-m.release
	return nil, errors.New("replica was killed")
}

// A replica whose connection dies in the middle of a batch (as with SIGKILL: nothing acked, no
// drain) loses nothing: after AckWait the other replica labels every sample exactly once, with
// the bytes a clean run gives.
func TestReplicaKilledMidBatch(t *testing.T) {
	e := newEnv(t, nil)
	good := newFakeModel("A", 0.7)
	dead := &blockingModel{fakeModel: newFakeModel("A", 0.7), entered: make(chan struct{}, 1), release: make(chan struct{})}
	t.Cleanup(func() { close(dead.release) })

	// The doomed replica has its own connection so it can be cut.
	ncDead, err := nats.Connect(e.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	svcDead, err := New(ncDead, e.store, func(ctx context.Context, loc string) (model.Predictor, io.Closer, error) {
		return dead, dead, nil
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := svcDead.Load(context.Background(), "A"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = svcDead.Run(ctx) }()
	waitFor(t, 10*time.Second, "doomed replica consumers", func() bool {
		_, err := e.js.Consumer(context.Background(), cfg.ReadyStream, cfg.LabelConsumer)
		return err == nil
	})
	p := makePlate("pk", 8, 64, 12)
	for _, k := range p.shuffledKeys(4) {
		e.put(k, p.files[k])
	}
	select {
	case <-dead.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the doomed replica never started a batch")
	}
	ncDead.Close() // the crash: no acks, no naks, no drain

	svc, _ := e.startService(cfg, loaderOf(map[string]*fakeModel{"A": good}), "A")
	waitFor(t, 60*time.Second, "all labels after the crash", func() bool { return len(e.labels.snapshot()) == len(p.ids) })
	time.Sleep(200 * time.Millisecond)
	for k, n := range e.labels.snapshot() {
		if n != 1 {
			t.Errorf("%s labeled %d times", k, n)
		}
	}
	for _, id := range p.ids {
		e.checkLabel("pk", id, p.imgs[id], good)
	}
	if got := counter(t, svc, "hpa_inference_samples_labeled_total", nil); got != float64(len(p.ids)) {
		t.Errorf("label writes %v", got)
	}
}

// The NATS server restarts in the middle of a load (same store, same port): nothing is lost.
func TestNATSRestartMidLoad(t *testing.T) {
	e := newEnv(t, nil)
	model := newFakeModel("A", 0.8)
	cfg := testConfig()
	e.startService(cfg, loaderOf(map[string]*fakeModel{"A": model}), "A")
	p := makePlate("pn", 12, 64, 13)
	keys := p.shuffledKeys(6)
	port, dir := e.ns.Port(), e.ns.DataDir()
	for i, k := range keys {
		if i == len(keys)/2 {
			e.ns.Shutdown()
			time.Sleep(300 * time.Millisecond)
			ns, err := natsembed.Start(natsembed.Options{DataDir: dir, Port: port, JetStream: true})
			if err != nil {
				t.Fatal(err)
			}
			e.ns = ns
			t.Cleanup(ns.Shutdown)
			waitFor(t, 20*time.Second, "client reconnect", e.nc.IsConnected)
		}
		e.put(k, p.files[k]) // s3local answers 503 while the bus is away; put retries
	}
	waitFor(t, 90*time.Second, "all labels after the restart", func() bool { return len(e.labels.snapshot()) == len(p.ids) })
	for _, id := range p.ids {
		e.checkLabel("pn", id, p.imgs[id], model)
	}
	// Labels are the same bytes a second time around (deterministic JSON).
	b1, _ := e.get("labels/pn/" + p.ids[0] + ".json")
	l, _ := labels.ParseLabel(b1)
	b2, _ := labels.MarshalLabel(l)
	if !bytes.Equal(b1, b2) {
		t.Error("label bytes not canonical")
	}
}
