package minio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/local/natsembed"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

// natsWithStream starts an embedded JetStream server with a limits stream on "<subject>".
func natsWithStream(t *testing.T, stream, subject string) (*natsembed.Server, jetstream.JetStream) {
	t.Helper()
	ns, _, js := servers.JetStream(t, "")
	if stream != "" {
		if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: stream, Subjects: []string{subject},
			Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
	}
	return ns, js
}

// A real MinIO publishes one JetStream message per created object, in its NATS format: the
// wrapper's Key is "<bucket>/<key>" unencoded, the record's key URL-encoded with '+' for spaces,
// eventVersion 2.0, no Nats-Msg-Id; bus.ParseS3Events decodes it back to the uploaded key.
// Objects outside the notification prefix publish nothing.
func TestNativeNATSNotifications(t *testing.T) {
	ns, js := natsWithStream(t, "EV", "ev.minio")
	srv := Start(t, ns.ClientURL(), "ev.minio")
	if srv.Version != Version {
		t.Logf("minio binary version %s, harness tested with %s", srv.Version, Version)
	}
	srv.CreateBucket(t, "plates")
	srv.CreateBucket(t, "plates") // idempotent
	srv.NotifyNATS(t, "plates", "incoming/", "s3:ObjectCreated:*")

	ctx := context.Background()
	cl := srv.Client()
	put := func(key, body string) {
		t.Helper()
		if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("plates"), Key: aws.String(key),
			Body: strings.NewReader(body)}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	put("other/ignored.png", "x")
	const key = "incoming/plate 1/X_blue.png"
	put(key, "hello minio")

	cons, err := js.OrderedConsumer(ctx, "EV", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	msg, err := cons.Next(jetstream.FetchContext(mctx))
	if err != nil {
		t.Fatalf("no event on the stream: %v\n%s", err, srv.Log())
	}
	data := msg.Data()
	for _, want := range []string{`"key":"incoming%2Fplate+1%2FX_blue.png"`, `"eventVersion":"2.0"`,
		`"Key":"plates/incoming/plate 1/X_blue.png"`, `"EventName":"s3:ObjectCreated:Put"`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("event lacks %s:\n%s", want, data)
		}
	}
	if id := msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
		t.Errorf("MinIO sent a Nats-Msg-Id %q; the consumer must not rely on either", id)
	}
	evs, err := bus.ParseS3Events(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Key != key || evs[0].Bucket != "plates" || !evs[0].IsCreate() ||
		evs[0].Size != int64(len("hello minio")) || evs[0].Source != "minio:s3" {
		t.Fatalf("parsed %+v", evs)
	}
	var wrap struct {
		Records []json.RawMessage
	}
	if err := json.Unmarshal(data, &wrap); err != nil || len(wrap.Records) != 1 {
		t.Fatalf("wrapper %v %d", err, len(wrap.Records))
	}
	// Nothing for the key outside the prefix.
	nctx, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if m, err := cons.Next(jetstream.FetchContext(nctx)); err == nil {
		t.Errorf("unexpected second event: %s", m.Data())
	}
	var he0 *Error
	if err := srv.Resume(); !errors.As(err, &he0) || !strings.Contains(err.Error(), "still running") {
		t.Errorf("Resume of a running server: %v", err)
	}
	// After a restart on the same address and data the object is there and notifications go on.
	t0 := time.Now()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %s", time.Since(t0).Round(time.Millisecond))
	if _, err := cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("plates"), Key: aws.String(key)}); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	lost, err := srv.AwaitNotifications(ctx, "plates", "incoming/", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d probe object(s) written right after the restart got no event", lost)
	// Skip the probes' own events.
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		if !bytes.Contains(m.Data(), []byte("hpa-probe-")) {
			t.Fatalf("unexpected event %s", m.Data())
		}
	}
	put("incoming/after restart.png", "again")
	rctx, cancel3 := context.WithTimeout(ctx, 20*time.Second)
	defer cancel3()
	msg, err = cons.Next(jetstream.FetchContext(rctx))
	if err != nil {
		t.Fatalf("no event after restart: %v\n%s", err, srv.Log())
	}
	if evs, err := bus.ParseS3Events(msg.Data()); err != nil || len(evs) != 1 || evs[0].Key != "incoming/after restart.png" {
		t.Fatalf("event after restart: %v %+v", err, evs)
	}
	// Configuration errors come back at once as *Error naming the bucket.
	var he *Error
	t0 = time.Now()
	if err := srv.NotifyNATSE(ctx, "no-such-bucket", "", "s3:ObjectCreated:*"); !errors.As(err, &he) || he.Op != "notify" ||
		!strings.Contains(err.Error(), "no-such-bucket") {
		t.Errorf("notify on a missing bucket: %v", err)
	}
	if d := time.Since(t0); d > notifyWait/2 {
		t.Errorf("a missing bucket was retried for %s", d)
	}
	if err := srv.NotifyNATSE(ctx, "plates", ""); !errors.As(err, &he) || he.Op != "notify" {
		t.Errorf("notify without events: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil { // idempotent
		t.Fatal(err)
	}
}

// Without a stream on the subject MinIO would drop every event: StartServer refuses to start.
func TestNoStreamIsAnError(t *testing.T) {
	bin, err := FindBinary()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	ns, _ := natsWithStream(t, "", "")
	_, err = StartServer(Options{Binary: bin, NATSURL: ns.ClientURL(), Subject: "nobody.listens", Dir: t.TempDir()})
	var he *Error
	if !errors.As(err, &he) || he.Op != "stream" || !strings.Contains(err.Error(), "nobody.listens") {
		t.Fatalf("got %v", err)
	}
}

func TestFindBinaryAndVersion(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "minio")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvBinary, notExec)
	if _, err := FindBinary(); !errors.Is(err, ErrNoBinary) || !strings.Contains(err.Error(), notExec) {
		t.Errorf("non-executable: %v", err)
	}
	t.Setenv(EnvBinary, filepath.Join(dir, "absent"))
	if _, err := FindBinary(); !errors.Is(err, ErrNoBinary) {
		t.Errorf("absent: %v", err)
	}
	t.Setenv(EnvBinary, "")
	t.Setenv("HPA_CACHE_DIR", dir)
	if _, err := FindBinary(); !errors.Is(err, ErrNoBinary) || !strings.Contains(err.Error(), filepath.Join(dir, "bin", "minio")) {
		t.Errorf("empty cache: %v", err)
	}
	// A Go binary that is not MinIO (this test) and a file that is not a Go binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var he *Error
	if _, err := BinaryVersion(self); !errors.As(err, &he) || he.Op != "binary" {
		t.Errorf("test binary: %v", err)
	}
	if _, err := BinaryVersion(notExec); !errors.As(err, &he) {
		t.Errorf("script: %v", err)
	}
	// Bad options never start a process.
	if _, err := StartServer(Options{Binary: self, Dir: dir}); !errors.As(err, &he) || he.Op != "options" {
		t.Errorf("missing NATS: %v", err)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, s := range []string{"abc", "defgh", "ijklmnop", "q"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatal(n, err)
		}
	}
	if got := b.String(); got != "jklmnopq" {
		t.Errorf("tail %q", got)
	}
}
