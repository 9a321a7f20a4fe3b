package s3local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/local/natsembed"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

const testStream = "S3_EVENTS"

type testBus struct {
	srv *natsembed.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	dir string
}

// startBus runs an embedded JetStream server (on port, 0 = random) with the event stream.
func startBus(t *testing.T, dir string, port int) *testBus {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Options{DataDir: dir, JetStream: true, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.EnsureEventsStream(ctxT(t), js, bus.EventsStreamConfig{Name: testStream, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	b := &testBus{srv: srv, nc: nc, js: js, dir: dir}
	t.Cleanup(func() { nc.Close(); srv.Shutdown() })
	return b
}

// messages returns every message of the event stream.
func (b *testBus) messages(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := ctxT(t)
	st, err := b.js.Stream(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func parseOne(t *testing.T, m *jetstream.RawStreamMsg) bus.ObjectEvent {
	t.Helper()
	evs, err := bus.ParseS3Events(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("%d events in one message", len(evs))
	}
	return evs[0]
}

func TestEventsOnJetStream(t *testing.T) {
	b := startBus(t, t.TempDir(), 0)
	s := startServer(t, Options{Buckets: []string{"plates"}, Publisher: bus.JetStreamPublisher{JS: b.js}, Region: "local-1"})
	c := newClient(s.Endpoint(), testAK, testSK)
	ctx := ctxT(t)
	key := "incoming/plate 1/X_blue.png"
	body := []byte("not really a png")
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("plates"), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	// The PUT was answered after the PubAck: the event is in the stream now.
	msgs := b.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages after PUT", len(msgs))
	}
	m := msgs[0]
	if m.Subject != "s3.events.plates" || m.Header.Get(jetstream.MsgIDHeader) == "" {
		t.Fatalf("subject %s, msg id %q", m.Subject, m.Header.Get(jetstream.MsgIDHeader))
	}
	var raw struct {
		Records []struct {
			EventVersion string `json:"eventVersion"`
			EventName    string `json:"eventName"`
			S3           struct {
				Object struct {
					Key string `json:"key"`
				} `json:"object"`
			} `json:"s3"`
		}
	}
	if err := json.Unmarshal(m.Data, &raw); err != nil {
		t.Fatal(err)
	}
	r := raw.Records[0]
	if r.EventVersion != "2.1" || r.EventName != "ObjectCreated:Put" || r.S3.Object.Key != "incoming/plate+1/X_blue.png" {
		t.Fatalf("record %+v", r)
	}
	ev := parseOne(t, m)
	if ev.Bucket != "plates" || ev.Key != key || ev.Size != int64(len(body)) || ev.ETag != md5hex(body) || !ev.IsCreate() || ev.Region != "local-1" || ev.Sequencer == "" {
		t.Fatalf("event %+v", ev)
	}
	km, _ := bus.NewKeyMapper("incoming/", "")
	if sk, ok, err := km.Map(ev.Key); err != nil || !ok || sk.Plate != "plate 1" || sk.ID != "X" || sk.Channel != pipeline.Blue {
		t.Fatalf("mapped %+v %v", sk, ok)
	}

	// Copy and multipart completion are announced too; deletes and refused writes are not.
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("plates"), Key: aws.String("copies/X_blue.png"), CopySource: aws.String("plates/incoming/plate%201/X_blue.png")}); err != nil {
		t.Fatal(err)
	}
	cr, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("plates"), Key: aws.String("mp/ü+%.png")})
	if err != nil {
		t.Fatal(err)
	}
	up, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("plates"), Key: aws.String("mp/ü+%.png"), UploadId: cr.UploadId, PartNumber: aws.Int32(1), Body: strings.NewReader("one part")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("plates"), Key: aws.String("mp/ü+%.png"), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: up.ETag}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("plates"), Key: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
	msgs = b.messages(t)
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	cp, mp := parseOne(t, msgs[1]), parseOne(t, msgs[2])
	if cp.EventName != bus.ObjectCreatedCopy || cp.Key != "copies/X_blue.png" {
		t.Fatalf("copy event %+v", cp)
	}
	if mp.EventName != bus.ObjectCreatedCompleteMultipartUpload || mp.Key != "mp/ü+%.png" || !strings.HasSuffix(mp.ETag, "-1") {
		t.Fatalf("multipart event %+v", mp)
	}
	if bus.CompareSequencer(ev.Sequencer, cp.Sequencer) >= 0 || bus.CompareSequencer(cp.Sequencer, mp.Sequencer) >= 0 {
		t.Fatalf("sequencers not increasing: %s %s %s", ev.Sequencer, cp.Sequencer, mp.Sequencer)
	}
	if s.PendingEvents() != 0 || s.PublishedEvents() != 3 {
		t.Fatalf("pending %d published %d", s.PendingEvents(), s.PublishedEvents())
	}
}

// flakyPublisher fails while down is set; with publishThenFail it publishes and then reports a
// failure (as if the server crashed between the PubAck and clearing the intent).
type flakyPublisher struct {
	next            bus.Publisher
	down            atomic.Bool
	publishThenFail atomic.Bool
	failFirst       atomic.Int64
	calls           atomic.Int64
}

var errBusDown = errors.New("bus down (test)")

func (p *flakyPublisher) Publish(ctx context.Context, subject string, data []byte, msgID string) error {
	p.calls.Add(1)
	if p.failFirst.Add(-1) >= 0 || p.down.Load() {
		return errBusDown
	}
	if err := p.next.Publish(ctx, subject, data, msgID); err != nil {
		return err
	}
	if p.publishThenFail.Load() {
		return errBusDown
	}
	return nil
}

func TestCrashRecoveryExactlyOnce(t *testing.T) {
	b := startBus(t, t.TempDir(), 0)
	dir := t.TempDir()
	pub := &flakyPublisher{next: bus.JetStreamPublisher{JS: b.js}}
	pub.down.Store(true)
	ctx := ctxT(t)

	// 1. Intent written and object committed, publish never happened: the PUT answers 503.
	s1, err := New(Options{Dir: dir, AccessKey: testAK, SecretKey: testSK, Buckets: []string{"plates"}, Publisher: pub, RetryInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Start(); err != nil {
		t.Fatal(err)
	}
	c := newClient(s1.Endpoint(), testAK, testSK, noRetry)
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("plates"), Key: aws.String("in/p 1/A_red.png"), Body: strings.NewReader("A")})
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != 503 || apiCode(err) != "ServiceUnavailable" {
		t.Fatalf("PUT with the bus down: %v", err)
	}
	if s1.PendingEvents() != 1 || len(b.messages(t)) != 0 {
		t.Fatalf("pending %d, messages %d", s1.PendingEvents(), len(b.messages(t)))
	}
	// 2. Published, but "crashed" before the intent was cleared.
	pub.down.Store(false)
	pub.publishThenFail.Store(true)
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("plates"), Key: aws.String("in/p 1/B_red.png"), Body: strings.NewReader("B")})
	if !errors.As(err, &re) || re.HTTPStatusCode() != 503 {
		t.Fatalf("PUT with a lost ack: %v", err)
	}
	if s1.PendingEvents() != 2 || len(b.messages(t)) != 1 {
		t.Fatalf("pending %d, messages %d", s1.PendingEvents(), len(b.messages(t)))
	}
	// 3. An intent whose object never became visible (crash between journal and commit).
	ghost := &intent{Bucket: "plates", Key: "in/p 1/ghost_red.png", Version: "ffffffffffffffffffffffffffffffff",
		Subject: bus.EventSubject("", "plates"), MsgID: "s3local:plates:ghost", Event: json.RawMessage(`{"Records":[]}`), Created: time.Now()}
	if err := s1.journal.add(ghost); err != nil {
		t.Fatal(err)
	}
	closeServer(t, s1) // the "crash": pending intents stay on disk

	// Restart on the same directory with a working bus: pending events are republished.
	s2, err := New(Options{Dir: dir, AccessKey: testAK, SecretKey: testSK, Publisher: bus.JetStreamPublisher{JS: b.js}, RetryInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if s2.PendingEvents() != 3 {
		t.Fatalf("journal after restart: %d", s2.PendingEvents())
	}
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	defer closeServer(t, s2)
	if s2.PendingEvents() != 0 {
		t.Fatalf("pending after start: %d", s2.PendingEvents())
	}
	msgs := b.messages(t)
	if len(msgs) != 2 {
		t.Fatalf("%d messages after recovery, want 2 (A once, B once, no ghost)", len(msgs))
	}
	seen := map[string]int{}
	for _, m := range msgs {
		seen[parseOne(t, m).Key]++
	}
	if seen["in/p 1/A_red.png"] != 1 || seen["in/p 1/B_red.png"] != 1 {
		t.Fatalf("events per key: %v", seen)
	}
	// Both objects are there.
	c2 := newClient(s2.Endpoint(), testAK, testSK)
	for _, k := range []string{"in/p 1/A_red.png", "in/p 1/B_red.png"} {
		if _, err := c2.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("plates"), Key: aws.String(k)}); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	// A third restart publishes nothing more.
	closeServer(t, s2)
	s3srv := startServer(t, Options{Dir: dir, Publisher: bus.JetStreamPublisher{JS: b.js}})
	if s3srv.PendingEvents() != 0 || len(b.messages(t)) != 2 {
		t.Fatalf("third start: pending %d, messages %d", s3srv.PendingEvents(), len(b.messages(t)))
	}
}

// The bus fails the first two publishes: the SDK sees 503 twice, retries, and the third attempt
// succeeds. Exactly one event announces the object (the superseded attempts' intents are dropped).
func TestClientRetriesOn503(t *testing.T) {
	b := startBus(t, t.TempDir(), 0)
	pub := &flakyPublisher{next: bus.JetStreamPublisher{JS: b.js}}
	pub.failFirst.Store(2)
	s := startServer(t, Options{Buckets: []string{"plates"}, Publisher: pub, RetryInterval: time.Hour})
	c := newClient(s.Endpoint(), testAK, testSK, func(o *s3.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 3
			so.MaxBackoff = 10 * time.Millisecond
		})
	})
	ctx := ctxT(t)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("plates"), Key: aws.String("k"), Body: strings.NewReader("v")}); err != nil {
		t.Fatal(err)
	}
	if n := pub.calls.Load(); n != 3 {
		t.Fatalf("publisher called %d times, want 3", n)
	}
	if s.PendingEvents() != 2 {
		t.Fatalf("pending %d before the retry loop, want the 2 failed attempts", s.PendingEvents())
	}
	if _, err := s.RepublishPending(ctx); err != nil {
		t.Fatal(err)
	}
	if s.PendingEvents() != 0 || len(b.messages(t)) != 1 || pub.calls.Load() != 3 {
		t.Fatalf("pending %d, messages %d, calls %d", s.PendingEvents(), len(b.messages(t)), pub.calls.Load())
	}
}

// A real JetStream outage: the NATS server stops, PUTs fail with 503, the server comes back on
// the same port and store, and the background loop delivers the pending event.
func TestJetStreamOutage(t *testing.T) {
	dir := t.TempDir()
	b := startBus(t, dir, 0)
	port := b.srv.Port()
	s := startServer(t, Options{Buckets: []string{"plates"}, Publisher: bus.JetStreamPublisher{JS: b.js}, PublishTimeout: 300 * time.Millisecond, RetryInterval: 100 * time.Millisecond})
	c := newClient(s.Endpoint(), testAK, testSK, noRetry)
	ctx := ctxT(t)
	b.srv.Shutdown()
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("plates"), Key: aws.String("during outage.png"), Body: strings.NewReader("x")})
	if apiCode(err) != "ServiceUnavailable" {
		t.Fatalf("PUT during outage: %v", err)
	}
	srv2, err := natsembed.Start(natsembed.Options{DataDir: dir, JetStream: true, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Shutdown()
	deadline := time.Now().Add(20 * time.Second)
	for s.PendingEvents() != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if s.PendingEvents() != 0 {
		t.Fatal("pending event not delivered after the bus came back")
	}
	msgs := b.messages(t)
	if len(msgs) != 1 || parseOne(t, msgs[0]).Key != "during outage.png" {
		t.Fatalf("messages after outage: %d", len(msgs))
	}
}

// With the bus still down, Start tries one pending event and leaves the rest to the background
// loop instead of waiting a publish timeout per event.
func TestStartWithBusDown(t *testing.T) {
	dir := t.TempDir()
	pub := &flakyPublisher{}
	pub.down.Store(true)
	s1 := startServer(t, Options{Dir: dir, Buckets: []string{"plates"}, Publisher: pub, RetryInterval: time.Hour})
	c := newClient(s1.Endpoint(), testAK, testSK, noRetry)
	for _, k := range []string{"a", "b", "c"} {
		if _, err := c.PutObject(ctxT(t), &s3.PutObjectInput{Bucket: aws.String("plates"), Key: aws.String(k), Body: strings.NewReader(k)}); apiCode(err) != "ServiceUnavailable" {
			t.Fatalf("%s: %v", k, err)
		}
	}
	closeServer(t, s1)
	before := pub.calls.Load()
	s2 := startServer(t, Options{Dir: dir, Publisher: pub, RetryInterval: time.Hour})
	if got := pub.calls.Load() - before; got != 1 {
		t.Fatalf("Start made %d publish attempts, want 1", got)
	}
	if s2.PendingEvents() != 3 {
		t.Fatalf("pending %d", s2.PendingEvents())
	}
	// The next round (the background loop's job) tries them all again.
	if n, err := s2.RepublishPending(ctxT(t)); n != 3 || !errors.Is(err, errBusDown) {
		t.Fatalf("republish with the bus down: %d %v", n, err)
	}
}
