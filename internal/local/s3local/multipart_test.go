package s3local

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// multipartETag is S3's ETag of a multipart object: MD5 of the part MD5s, "-", part count.
func multipartETag(parts ...[]byte) string {
	h := md5.New()
	for _, p := range parts {
		s := md5.Sum(p)
		h.Write(s[:])
	}
	return hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(parts))
}

func TestMultipartUpload(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}})
	c := newClient(s.Endpoint(), testAK, testSK)
	ctx := ctxT(t)
	key := "big/plate 7/upload.bin"
	// Three parts, the first two of the 5 MiB minimum, uploaded out of order.
	parts := [][]byte{randomBytes(5<<20, 1), randomBytes(5<<20, 2), randomBytes(777_777, 3)}
	cr, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("b01"), Key: aws.String(key), ContentType: aws.String("application/x-test"), Metadata: map[string]string{"plate": "7"}})
	if err != nil {
		t.Fatal(err)
	}
	etags := make([]string, len(parts))
	for _, i := range []int{2, 0, 1} {
		up, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b01"), Key: aws.String(key), UploadId: cr.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(parts[i])})
		if err != nil {
			t.Fatal(err)
		}
		etags[i] = *up.ETag
		if etags[i] != `"`+md5hex(parts[i])+`"` {
			t.Fatalf("part %d etag %s", i+1, etags[i])
		}
	}
	// Re-uploading a part replaces it.
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b01"), Key: aws.String(key), UploadId: cr.UploadId, PartNumber: aws.Int32(3), Body: bytes.NewReader([]byte("short"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b01"), Key: aws.String(key), UploadId: cr.UploadId, PartNumber: aws.Int32(3), Body: bytes.NewReader(parts[2])}); err != nil {
		t.Fatal(err)
	}
	completed := func(idx ...int) *types.CompletedMultipartUpload {
		var cp []types.CompletedPart
		for _, i := range idx {
			cp = append(cp, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: aws.String(etags[i])})
		}
		return &types.CompletedMultipartUpload{Parts: cp}
	}
	// Bad completions leave the upload intact.
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("b01"), Key: aws.String(key), UploadId: cr.UploadId, MultipartUpload: completed(1, 0, 2)}); apiCode(err) != "InvalidPartOrder" {
		t.Fatalf("out of order: %v", err)
	}
	bad := completed(0, 1, 2)
	bad.Parts[1].ETag = aws.String(`"00000000000000000000000000000000"`)
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("b01"), Key: aws.String(key), UploadId: cr.UploadId, MultipartUpload: bad}); apiCode(err) != "InvalidPart" {
		t.Fatalf("wrong etag: %v", err)
	}
	done, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("b01"), Key: aws.String(key), UploadId: cr.UploadId, MultipartUpload: completed(0, 1, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if *done.ETag != `"`+multipartETag(parts...)+`"` {
		t.Fatalf("etag %s want %s", *done.ETag, multipartETag(parts...))
	}
	get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(get.Body)
	get.Body.Close()
	if !bytes.Equal(got, bytes.Join(parts, nil)) || *get.ContentType != "application/x-test" || get.Metadata["plate"] != "7" {
		t.Fatalf("multipart content: %d bytes, type %s, meta %v", len(got), *get.ContentType, get.Metadata)
	}
	// Range across a part boundary.
	r, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String(key), Range: aws.String("bytes=5242870-5242889")})
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !bytes.Equal(rb, bytes.Join(parts, nil)[5242870:5242890]) {
		t.Fatal("range across parts")
	}
	// The upload is gone.
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b01"), Key: aws.String(key), UploadId: cr.UploadId, PartNumber: aws.Int32(1), Body: strings.NewReader("x")}); apiCode(err) != "NoSuchUpload" {
		t.Fatalf("part after complete: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.store.dir, "uploads")); len(ents) != 0 {
		t.Fatalf("%d upload dirs left", len(ents))
	}
}

func TestMultipartErrorsAndAbort(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}})
	c := newClient(s.Endpoint(), testAK, testSK, noRetry)
	ctx := ctxT(t)
	cr, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("b01"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	var etags []string
	for i := 1; i <= 2; i++ {
		up, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b01"), Key: aws.String("k"), UploadId: cr.UploadId, PartNumber: aws.Int32(int32(i)), Body: strings.NewReader("tiny part")})
		if err != nil {
			t.Fatal(err)
		}
		etags = append(etags, *up.ETag)
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("b01"), Key: aws.String("k"), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: &etags[0]}, {PartNumber: aws.Int32(2), ETag: &etags[1]}}}})
	if apiCode(err) != "EntityTooSmall" {
		t.Fatalf("small part: %v", err)
	}
	for _, n := range []int32{0, 10001} {
		_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b01"), Key: aws.String("k"), UploadId: cr.UploadId, PartNumber: aws.Int32(n), Body: strings.NewReader("x")})
		if apiCode(err) != "InvalidArgument" {
			t.Fatalf("part number %d: %v", n, err)
		}
	}
	// Wrong key for the upload id, unknown upload id.
	_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b01"), Key: aws.String("other"), UploadId: cr.UploadId, PartNumber: aws.Int32(1), Body: strings.NewReader("x")})
	if apiCode(err) != "NoSuchUpload" {
		t.Fatalf("other key: %v", err)
	}
	_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b01"), Key: aws.String("k"), UploadId: aws.String("../../etc"), PartNumber: aws.Int32(1), Body: strings.NewReader("x")})
	if apiCode(err) != "NoSuchUpload" {
		t.Fatalf("bad upload id: %v", err)
	}
	if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("b01"), Key: aws.String("k"), UploadId: cr.UploadId}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("b01"), Key: aws.String("k"), UploadId: cr.UploadId}); apiCode(err) != "NoSuchUpload" {
		t.Fatalf("second abort: %v", err)
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b01"), Key: aws.String("k")}); err == nil {
		t.Fatal("aborted upload created an object")
	}
}
