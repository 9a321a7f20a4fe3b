package s3local

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/local/natsembed"
)

func benchServer(b *testing.B, pub bus.Publisher) (*Server, *s3.Client) {
	b.Helper()
	s, err := New(Options{Dir: b.TempDir(), AccessKey: testAK, SecretKey: testSK, Buckets: []string{"bench"}, Publisher: pub})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(context.Background()) })
	return s, newClient(s.Endpoint(), testAK, testSK)
}

// BenchmarkPutGet1MiB: SDK PutObject and GetObject of 1 MiB objects over loopback HTTP.
func BenchmarkPutGet1MiB(b *testing.B) {
	_, c := benchServer(b, nil)
	data := randomBytes(1<<20, 7)
	ctx := context.Background()
	b.SetBytes(2 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := "k" + strconv.Itoa(i%16)
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bench"), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			b.Fatal(err)
		}
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bench"), Key: aws.String(key)})
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, out.Body)
		out.Body.Close()
	}
}

// BenchmarkEventOverhead compares small PUTs without events and with journaled JetStream events
// (intent fsync + PubAck wait); it reports both latencies and their ratio.
func BenchmarkEventOverhead(b *testing.B) {
	busDir := b.TempDir()
	bs := startBenchBus(b, busDir)
	_, plain := benchServer(b, nil)
	_, evented := benchServer(b, bus.JetStreamPublisher{JS: bs})
	data := []byte("small object")
	ctx := context.Background()
	var tPlain, tEvents time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := "in/plate/S" + strconv.Itoa(i) + "_red.png"
		t0 := time.Now()
		if _, err := plain.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bench"), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := evented.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bench"), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			b.Fatal(err)
		}
		tPlain += t1.Sub(t0)
		tEvents += time.Since(t1)
	}
	b.ReportMetric(float64(tPlain.Nanoseconds())/float64(b.N), "ns/put-plain")
	b.ReportMetric(float64(tEvents.Nanoseconds())/float64(b.N), "ns/put-events")
	b.ReportMetric(float64(tEvents)/float64(tPlain), "events/plain-x")
}

func startBenchBus(b *testing.B, dir string) jetstream.JetStream {
	b.Helper()
	srv, err := natsembed.Start(natsembed.Options{DataDir: dir, JetStream: true})
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bus.EnsureEventsStream(context.Background(), js, bus.EventsStreamConfig{Name: testStream, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close(); srv.Shutdown() })
	return js
}

// BenchmarkListObjectsV2: the SDK's paginated ListObjectsV2 of 5,000 keys (pages of 1,000), as a
// replay lists a bucket; objects/s.
func BenchmarkListObjectsV2(b *testing.B) {
	_, c := benchServer(b, nil)
	ctx := context.Background()
	const n = 5000
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := w; i < n; i += 8 {
				key := "incoming/plate" + strconv.Itoa(i/500) + "/" + strconv.FormatInt(int64(1e9+i), 16) + "_red.png"
				if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bench"), Key: aws.String(key), Body: bytes.NewReader([]byte("x"))}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	var listed int
	t0 := time.Now()
	for b.Loop() {
		p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String("bench"), Prefix: aws.String("incoming/")})
		got := 0
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				b.Fatal(err)
			}
			got += len(page.Contents)
		}
		if got != n {
			b.Fatalf("listed %d of %d", got, n)
		}
		listed += got
	}
	b.ReportMetric(float64(listed)/time.Since(t0).Seconds(), "objects/s")
}
