package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

// testServer starts the in-process S3 server with one bucket and returns a Config for it.
func testServer(t *testing.T, bucket string) Config {
	t.Helper()
	srv := servers.S3(t, s3local.Options{AccessKey: "ak", SecretKey: "secretsecret", Buckets: []string{bucket}})
	return Config{Endpoint: srv.Endpoint(), Region: "us-east-1", PathStyle: true, Bucket: bucket, AccessKey: "ak", SecretKey: "secretsecret"}
}

func TestBucketRoundTripAndErrors(t *testing.T) {
	ctx := context.Background()
	b, err := Open(ctx, testServer(t, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "p/a.json", []byte(`{"a":1}`), "application/json"); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "p/b.bin", bytes.Repeat([]byte("x"), 100), "application/octet-stream"); err != nil {
		t.Fatal(err)
	}
	got, err := b.Get(ctx, "p/a.json", 0)
	if err != nil || string(got) != `{"a":1}` {
		t.Fatalf("get: %q %v", got, err)
	}
	if _, err := b.Get(ctx, "p/b.bin", 99); !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrNotFound) {
		t.Errorf("over the limit: %v", err)
	}
	var oe *Error
	if _, err := b.Get(ctx, "p/missing", 0); !errors.Is(err, ErrNotFound) || !errors.As(err, &oe) || oe.Key != "p/missing" || oe.Bucket != "data" {
		t.Errorf("missing: %v", err)
	}
	objs, err := b.List(ctx, "p/")
	if err != nil || len(objs) != 2 || objs[0].Key != "p/a.json" || objs[1].Size != 100 || objs[0].ETag == "" {
		t.Errorf("list: %+v %v", objs, err)
	}
	// Streaming: put from a reader, open, list a page at a time.
	if err := b.PutReader(ctx, "p/c.txt", strings.NewReader("streamed"), 8, "text/plain"); err != nil {
		t.Fatal(err)
	}
	rc, oi, err := b.Open(ctx, "p/c.txt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if string(body) != "streamed" || oi.Size != 8 || oi.ETag == "" {
		t.Errorf("open: %q %+v", body, oi)
	}
	if _, _, err := b.Open(ctx, "p/none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("open missing: %v", err)
	}
	var seen []string
	for oi, err := range b.Objects(ctx, "p/") {
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, oi.Key)
		if len(seen) == 2 {
			break // stopping early is fine
		}
	}
	if strings.Join(seen, ",") != "p/a.json,p/b.bin" {
		t.Errorf("objects %v", seen)
	}
	if err := b.Delete(ctx, "p/a.json"); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "p/a.json"); err != nil {
		t.Errorf("deleting a missing object: %v", err)
	}
	if _, err := Open(ctx, Config{}); !errors.Is(err, ErrNoBucket) {
		t.Errorf("no bucket: %v", err)
	}
}

// A server that never answers: WithTimeout turns the hang into an error within the limit.
func TestWithTimeoutBoundsHungCalls(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer hung.Close()
	defer close(release)
	ctx := context.Background()
	b, err := Open(ctx, Config{Endpoint: hung.URL, PathStyle: true, Bucket: "data", AccessKey: "ak", SecretKey: "sk"})
	if err != nil {
		t.Fatal(err)
	}
	s := WithTimeout(b, 200*time.Millisecond)
	t0 := time.Now()
	if _, err := s.Get(ctx, "k", 0); err == nil {
		t.Fatal("a hung get succeeded")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("hung get took %s with a 200ms limit", d)
	}
	if WithTimeout(b, 0) != Store(b) {
		t.Error("a zero timeout must leave the store as it is")
	}
}

// Download streams: a member much larger than the copy buffer arrives intact, and the process
// allocates far less than the member's size while downloading it (the old model download read
// whole objects into memory).
func TestDownloadStreamsLargeObject(t *testing.T) {
	ctx := context.Background()
	cfg := testServer(t, "models")
	c, err := NewClient(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const size = 48 << 20
	const buffer = 64 << 10
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	want := sha256.Sum256(data)
	for key, body := range map[string][]byte{"set/v1/members/m0.onnx": data, "set/v1/manifest.json": []byte("{}")} {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("models"), Key: aws.String(key),
			Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body)))}); err != nil {
			t.Fatal(err)
		}
	}
	data = nil
	dir := t.TempDir()
	u, _ := ParseURL("s3://models/set/v1/")
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n, err := Download(ctx, c, u, dir, WithBufferSize(buffer))
	runtime.ReadMemStats(&after)
	if err != nil || n != 2 {
		t.Fatalf("downloaded %d, %v", n, err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("downloaded %d MiB through a %d KiB buffer; allocated %.1f MiB meanwhile (server included)", size>>20, buffer>>10, float64(alloc)/(1<<20))
	if alloc > size/4 {
		t.Errorf("allocated %d bytes downloading a %d-byte object: not streaming", alloc, size)
	}
	f, err := os.Open(filepath.Join(dir, "members", "m0.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Error("downloaded member differs from the uploaded one")
	}
	if _, err := os.Stat(filepath.Join(dir, "members", "m0.onnx.part")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
}
