package s3local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := ctxT(t)
	s1 := startServer(t, Options{Dir: dir, Buckets: []string{"plates"}})
	c := newClient(s1.Endpoint(), testAK, testSK)
	objs := map[string]string{"a": "file a", "a/b": "file under a", "a/b/": "dir marker", "x y/z+w%.png": "odd"}
	for k, v := range objs {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("plates"), Key: aws.String(k), Body: strings.NewReader(v), ContentType: aws.String("text/plain"), Metadata: map[string]string{"k": "v"}}); err != nil {
			t.Fatal(err)
		}
	}
	// Overwrite one object: only the newest content survives on disk.
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("plates"), Key: aws.String("a"), Body: strings.NewReader("file a v2")}); err != nil {
		t.Fatal(err)
	}
	objs["a"] = "file a v2"
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("made-later")}); err != nil {
		t.Fatal(err)
	}
	cr, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("plates"), Key: aws.String("mp")})
	if err != nil {
		t.Fatal(err)
	}
	up, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("plates"), Key: aws.String("mp"), UploadId: cr.UploadId, PartNumber: aws.Int32(1), Body: strings.NewReader("part one")})
	if err != nil {
		t.Fatal(err)
	}
	before := lastModified(t, c, "plates", "a/b")
	closeServer(t, s1)
	// A leftover of an interrupted write: a version file no sidecar points at.
	h := keyHash("a")
	orphan := filepath.Join(dir, "buckets", "plates", "objects", h[:2], h+".deadbeef.data")
	if err := os.WriteFile(orphan, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}

	s2 := startServer(t, Options{Dir: dir})
	c2 := newClient(s2.Endpoint(), testAK, testSK)
	for k, v := range objs {
		out, err := c2.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("plates"), Key: aws.String(k)})
		if err != nil {
			t.Fatalf("%q after restart: %v", k, err)
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if string(b) != v {
			t.Fatalf("%q = %q after restart, want %q", k, b, v)
		}
	}
	if !lastModified(t, c2, "plates", "a/b").Equal(before) {
		t.Fatal("Last-Modified changed across restart")
	}
	if _, err := c2.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("made-later")}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("orphaned version file not cleaned up")
	}
	// Exactly one version file per object.
	files, _ := filepath.Glob(filepath.Join(dir, "buckets", "plates", "objects", "*", "*.data"))
	if len(files) != len(objs) {
		t.Fatalf("%d version files for %d objects", len(files), len(objs))
	}
	// The multipart upload begun before the restart completes after it.
	if _, err := c2.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("plates"), Key: aws.String("mp"), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: up.ETag}}}}); err != nil {
		t.Fatal(err)
	}
}

func lastModified(t *testing.T, c *s3.Client, b, k string) time.Time {
	t.Helper()
	out, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String(k)})
	if err != nil {
		t.Fatal(err)
	}
	return *out.LastModified
}

func TestCorruptStoreIsReported(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{Dir: dir, AccessKey: testAK, SecretKey: testSK, Buckets: []string{"plates"}})
	if err != nil {
		t.Fatal(err)
	}
	m := &objectMeta{Key: "k", Version: newID(16)}
	staged, _, e := s.store.stage(strings.NewReader("v"))
	if e != nil {
		t.Fatal(e)
	}
	if e := s.store.commit("plates", m, staged, nil); e != nil {
		t.Fatal(e)
	}
	meta, _ := s.store.objPaths("plates", "k", m.Version)
	if err := os.WriteFile(meta, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Dir: dir, AccessKey: testAK, SecretKey: testSK})
	var se *StoreError
	if !errors.As(err, &se) || se.Path != meta {
		t.Fatalf("corrupt sidecar: %v", err)
	}
	// A corrupt journal entry is reported with its file too.
	dir2 := t.TempDir()
	if _, err := New(Options{Dir: dir2, AccessKey: testAK, SecretKey: testSK}); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir2, "journal", "x.json")
	os.WriteFile(bad, []byte("[]"), 0o644)
	_, err = New(Options{Dir: dir2, AccessKey: testAK, SecretKey: testSK})
	if !errors.As(err, &se) || se.Path != bad {
		t.Fatalf("corrupt intent: %v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	for name, o := range map[string]Options{
		"no dir":      {AccessKey: "a", SecretKey: "b"},
		"no keys":     {Dir: t.TempDir()},
		"bad bucket":  {Dir: t.TempDir(), AccessKey: "a", SecretKey: "b", Buckets: []string{"UPPER"}},
		"bad prefix":  {Dir: t.TempDir(), AccessKey: "a", SecretKey: "b", EventSubjectPrefix: "s3.>"},
		"dir is file": {Dir: func() string { f := filepath.Join(t.TempDir(), "f"); os.WriteFile(f, nil, 0o644); return f }(), AccessKey: "a", SecretKey: "b"},
	} {
		if s, err := New(o); err == nil {
			s.Close(context.Background())
			t.Errorf("%s: accepted", name)
		}
	}
}

// Concurrent writers and readers of the same and different keys, under -race.
func TestConcurrentAccess(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}})
	c := newClient(s.Endpoint(), testAK, testSK)
	ctx := ctxT(t)
	const workers, rounds = 6, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*3)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				shared := bytes.Repeat([]byte{byte('a' + w)}, 1000+w)
				if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String("shared"), Body: bytes.NewReader(shared)}); err != nil {
					errs <- err
					return
				}
				own := fmt.Sprintf("w%d/r%d", w, r)
				if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String(own), Body: strings.NewReader(own)}); err != nil {
					errs <- err
					return
				}
				out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String("shared")})
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(out.Body)
				out.Body.Close()
				// Whatever version is read, it is one writer's complete content.
				if len(b) < 1000 || !bytes.Equal(b, bytes.Repeat(b[:1], len(b))) || len(b) != 1000+int(b[0]-'a') {
					errs <- fmt.Errorf("torn read of shared: %d bytes", len(b))
					return
				}
				if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b01"), Prefix: aws.String(fmt.Sprintf("w%d/", w))}); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b01")})
	if err != nil || int(*out.KeyCount) != workers*rounds+1 {
		t.Fatalf("listed %v, %v", out.KeyCount, err)
	}
	files, _ := filepath.Glob(filepath.Join(s.store.dir, "buckets", "b01", "objects", "*", "*.data"))
	if len(files) != workers*rounds+1 {
		t.Fatalf("%d version files, want %d", len(files), workers*rounds+1)
	}
}
