package replay

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
)

// BenchmarkReplayPublish lists and publishes a bucket of 20,000 channel objects (5,000 samples)
// from the in-process S3 server to JetStream (--force: no label checks), and beside it, in the
// same run, publishes the same number of messages of the same size with raw asynchronous
// JetStream publishes: objects/s of both and their ratio. Goal: >= 20,000 objects/s.
func BenchmarkReplayPublish(b *testing.B) {
	e := newEnv(b)
	const samples = 5000
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < samples; i += 16 {
				for _, c := range []string{"red", "green", "blue", "yellow"} {
					key := fmt.Sprintf("incoming/plate%02d/%08x-0000-0000-0000-000000000000_%s.png", i/500, i, c)
					if err := e.store.Put(ctx, key, []byte("x"), "image/png"); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	o := e.opts("s3://plates/incoming/")
	o.Force, o.CheckpointEvery = true, time.Second
	// One warm-up run creates the streams.
	if _, err := Run(ctx, o); err != nil {
		b.Fatal(err)
	}
	var replayRate, rawRate, listRate float64
	var size int
	for b.Loop() {
		t0 := time.Now()
		sum, err := Run(ctx, o)
		if err != nil || sum.Published != samples {
			b.Fatalf("%+v, %v", sum, err)
		}
		replayRate = float64(sum.Listed) / time.Since(t0).Seconds()
		// The listing alone: what the S3 server serves.
		t0 = time.Now()
		var listed int
		for _, err := range e.store.ObjectsAfter(ctx, "incoming/", "") {
			if err != nil {
				b.Fatal(err)
			}
			listed++
		}
		listRate = float64(listed) / time.Since(t0).Seconds()
		// Raw: the same messages (one per sample, the replay's size) published async to a stream.
		_, msgs := e.replayed()
		size = len(msgs[len(msgs)-1].Data)
		data := msgs[len(msgs)-1].Data
		js, _ := jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(4096))
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage}); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		for i := range samples {
			if _, err := js.PublishAsync("raw.plates", data, jetstream.WithMsgID(fmt.Sprintf("raw-%d-%d", time.Now().UnixNano(), i))); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
		rawRate = float64(samples*4) / time.Since(t0).Seconds()
	}
	b.ReportMetric(replayRate, "objects/s")
	b.ReportMetric(rawRate, "raw-objects/s")
	b.ReportMetric(replayRate/rawRate, "ratio")
	b.ReportMetric(listRate, "list-objects/s")
	b.Logf("replay: %.0f objects/s listed and published (%d-byte messages, 4 objects each); raw JetStream async publish of the same messages: %.0f objects/s; ratio %.2f (goal >= 20000 objects/s); the S3 listing alone: %.0f objects/s",
		replayRate, size, rawRate, replayRate/rawRate, listRate)
	_ = bus.ReplayStream
}
