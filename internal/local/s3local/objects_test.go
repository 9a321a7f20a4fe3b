package s3local

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/hpa-plates/hpa/internal/bus"
)

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func md5hex(b []byte) string {
	h := md5.Sum(b)
	return hex.EncodeToString(h[:])
}

func TestBucketsAndObjects(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"plates"}})
	c := newClient(s.Endpoint(), testAK, testSK)
	ctx := ctxT(t)

	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("results")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("results")}); apiCode(err) != "BucketAlreadyOwnedByYou" {
		t.Fatalf("second create: %v", err)
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("Bad_Name")}); apiCode(err) != "InvalidBucketName" {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("plates")}); err != nil {
		t.Fatal(err)
	}
	_, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("nope")})
	var nf *types.NotFound
	if !errors.As(err, &nf) {
		t.Fatalf("head missing bucket: %v", err)
	}
	lb, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range lb.Buckets {
		names = append(names, *b.Name)
	}
	if strings.Join(names, ",") != "plates,results" {
		t.Fatalf("buckets %v", names)
	}
	loc, err := c.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String("plates")})
	if err != nil || loc.LocationConstraint != "" {
		t.Fatalf("location %v %v", loc, err)
	}

	body := []byte("hello, plate 1")
	key := "incoming/plate 1/X_blue.png"
	put, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("plates"), Key: aws.String(key), Body: bytes.NewReader(body),
		ContentType: aws.String("image/png"), Metadata: map[string]string{"stain": "DAPI"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if *put.ETag != `"`+md5hex(body)+`"` {
		t.Fatalf("etag %s", *put.ETag)
	}
	get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("plates"), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(get.Body)
	get.Body.Close()
	if !bytes.Equal(got, body) || *get.ContentType != "image/png" || get.Metadata["stain"] != "DAPI" || *get.ETag != *put.ETag || *get.ContentLength != int64(len(body)) {
		t.Fatalf("get: %q %v %v %v", got, *get.ContentType, get.Metadata, *get.ETag)
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("plates"), Key: aws.String(key)})
	if err != nil || *head.ContentLength != int64(len(body)) || head.LastModified == nil {
		t.Fatalf("head %+v %v", head, err)
	}

	// Ranges.
	for _, c2 := range []struct {
		rng, want, cr string
	}{
		{"bytes=0-4", "hello", "bytes 0-4/14"},
		{"bytes=7-", "plate 1", "bytes 7-13/14"},
		{"bytes=-3", "e 1", "bytes 11-13/14"},
		{"bytes=10-100", "te 1", "bytes 10-13/14"},
	} {
		r, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("plates"), Key: aws.String(key), Range: aws.String(c2.rng)})
		if err != nil {
			t.Fatalf("%s: %v", c2.rng, err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if string(b) != c2.want || *r.ContentRange != c2.cr {
			t.Fatalf("range %s: %q %s", c2.rng, b, *r.ContentRange)
		}
	}
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("plates"), Key: aws.String(key), Range: aws.String("bytes=14-")})
	if apiCode(err) != "InvalidRange" {
		t.Fatalf("unsatisfiable range: %v", err)
	}

	// Errors.
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("plates"), Key: aws.String("missing")})
	var nsk *types.NoSuchKey
	if !errors.As(err, &nsk) {
		t.Fatalf("missing key: %v", err)
	}
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("nope"), Key: aws.String("k")})
	if apiCode(err) != "NoSuchBucket" {
		t.Fatalf("missing bucket: %v", err)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("nope"), Key: aws.String("k"), Body: strings.NewReader("x")})
	if apiCode(err) != "NoSuchBucket" {
		t.Fatalf("put to missing bucket: %v", err)
	}

	// Copy (keeps metadata), then copy with REPLACE.
	cp, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("results"), Key: aws.String("copy of X.png"), CopySource: aws.String("plates/" + strings.ReplaceAll(key, " ", "%20"))})
	if err != nil {
		t.Fatal(err)
	}
	if *cp.CopyObjectResult.ETag != *put.ETag {
		t.Fatalf("copy etag %s", *cp.CopyObjectResult.ETag)
	}
	h2, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("results"), Key: aws.String("copy of X.png")})
	if err != nil || h2.Metadata["stain"] != "DAPI" || *h2.ContentType != "image/png" {
		t.Fatalf("copied head %+v %v", h2, err)
	}
	_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("results"), Key: aws.String("copy of X.png"), CopySource: aws.String("results/copy%20of%20X.png")})
	if apiCode(err) != "InvalidRequest" {
		t.Fatalf("copy onto itself: %v", err)
	}
	_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("results"), Key: aws.String("copy of X.png"), CopySource: aws.String("results/copy%20of%20X.png"),
		MetadataDirective: types.MetadataDirectiveReplace, ContentType: aws.String("text/plain")})
	if err != nil {
		t.Fatal(err)
	}
	h3, _ := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("results"), Key: aws.String("copy of X.png")})
	if *h3.ContentType != "text/plain" || len(h3.Metadata) != 0 {
		t.Fatalf("replaced metadata %v %v", *h3.ContentType, h3.Metadata)
	}
	_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("results"), Key: aws.String("x"), CopySource: aws.String("plates/missing")})
	if apiCode(err) != "NoSuchKey" {
		t.Fatalf("copy missing: %v", err)
	}

	// Delete; deleting again is fine; bucket with objects cannot be deleted.
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("results")}); apiCode(err) != "BucketNotEmpty" {
		t.Fatalf("delete non-empty bucket: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("results"), Key: aws.String("copy of X.png")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("results"), Key: aws.String("copy of X.png")}); !errors.As(err, &nf) {
		t.Fatalf("deleted object still there: %v", err)
	}
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("results")}); err != nil {
		t.Fatal(err)
	}
}

func TestOddKeysAndCollidingPaths(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}})
	c := newClient(s.Endpoint(), testAK, testSK)
	ctx := ctxT(t)
	keys := []string{"a", "a/b", "a/b/c", "a//b", "a/", "dir/", "sp ace+plus%percent", "unicodé/細胞_red.png", "q?x=1&y=#frag", "~!*'();:@$,[]", "tab\there", strings.Repeat("k", MaxKeyLength)}
	for i, k := range keys {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String(k), Body: strings.NewReader(fmt.Sprint(i))}); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	for i, k := range keys {
		r, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String(k)})
		if err != nil {
			t.Fatalf("get %q: %v", k, err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if string(b) != fmt.Sprint(i) {
			t.Fatalf("key %q holds %q, want %d", k, b, i)
		}
	}
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b01")})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, o := range out.Contents {
		listed = append(listed, *o.Key)
	}
	want := append([]string(nil), keys...)
	sort.Strings(want)
	if strings.Join(listed, "|") != strings.Join(want, "|") {
		t.Fatalf("listed %q\nwant   %q", listed, want)
	}
}

func TestBadKeysRefused(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}})
	c := newClient(s.Endpoint(), testAK, testSK, noRetry)
	ctx := ctxT(t)
	for _, k := range []string{"../escape", "a/../../etc/passwd", "a/./b", "..", "nul\x00byte", `back\slash`, strings.Repeat("k", MaxKeyLength+1)} {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String(k), Body: strings.NewReader("x")})
		code := apiCode(err)
		if code != "InvalidArgument" && code != "KeyTooLongError" {
			t.Errorf("put %q: got %v, want InvalidArgument/KeyTooLongError", k, err)
		}
	}
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b01")})
	if err != nil || len(out.Contents) != 0 {
		t.Fatalf("refused keys were stored: %v %v", out.Contents, err)
	}
}

func TestListObjects(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}})
	c := newClient(s.Endpoint(), testAK, testSK)
	ctx := ctxT(t)
	var keys []string
	for p := 0; p < 3; p++ {
		for i := 0; i < 4; i++ {
			keys = append(keys, fmt.Sprintf("in/plate %d/S%d_red.png", p, i))
		}
	}
	keys = append(keys, "in/top.txt", "in/z+z.txt", "other/x", "root.txt")
	for _, k := range keys {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
			t.Fatal(err)
		}
	}
	// Paginate everything 5 at a time.
	var all []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String("b01"), MaxKeys: aws.Int32(5)})
	pages := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.Contents) > 5 || *page.KeyCount != int32(len(page.Contents)) {
			t.Fatalf("page of %d (KeyCount %d)", len(page.Contents), *page.KeyCount)
		}
		for _, o := range page.Contents {
			all = append(all, *o.Key)
			if *o.Size != int64(len(*o.Key)) || *o.ETag != `"`+md5hex([]byte(*o.Key))+`"` {
				t.Fatalf("listed %s size %d etag %s", *o.Key, *o.Size, *o.ETag)
			}
		}
	}
	sort.Strings(keys)
	if strings.Join(all, "|") != strings.Join(keys, "|") || pages != 4 {
		t.Fatalf("paginated %d pages %q", pages, all)
	}
	// Delimiter with prefix, paginated by 2: common prefixes count towards max-keys.
	var objs, cps []string
	p = s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String("b01"), Prefix: aws.String("in/"), Delimiter: aws.String("/"), MaxKeys: aws.Int32(2)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			objs = append(objs, *o.Key)
		}
		for _, cp := range page.CommonPrefixes {
			cps = append(cps, *cp.Prefix)
		}
	}
	if strings.Join(cps, "|") != "in/plate 0/|in/plate 1/|in/plate 2/" || strings.Join(objs, "|") != "in/top.txt|in/z+z.txt" {
		t.Fatalf("delimited: %q %q", cps, objs)
	}
	// Start-after, and the URL encoding the aws cli asks for.
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b01"), StartAfter: aws.String("in/z+z.txt"), EncodingType: types.EncodingTypeUrl})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 2 || *out.Contents[0].Key != "other/x" || *out.Contents[1].Key != "root.txt" || *out.StartAfter != "in/z%2Bz.txt" {
		t.Fatalf("start-after: %v", out.Contents)
	}
	// With encoding-type=url keys come form-encoded (as S3 and MinIO do; boto3 and mc decode them).
	out, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b01"), Prefix: aws.String("in/plate 1/"), EncodingType: types.EncodingTypeUrl, MaxKeys: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 1 || *out.Contents[0].Key != "in/plate+1/S0_red.png" || !*out.IsTruncated || *out.Prefix != "in/plate+1/" {
		t.Fatalf("url-encoded listing: %q %v", *out.Contents[0].Key, *out.IsTruncated)
	}
	// max-keys=0, bad max-keys, bad token.
	out, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b01"), MaxKeys: aws.Int32(0)})
	if err != nil || len(out.Contents) != 0 {
		t.Fatalf("max-keys 0: %v %v", out, err)
	}
	_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b01"), ContinuationToken: aws.String("not-a-token")})
	if apiCode(err) != "InvalidArgument" {
		t.Fatalf("bad token: %v", err)
	}
	_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b01"), MaxKeys: aws.Int32(-1)})
	if apiCode(err) != "InvalidArgument" {
		t.Fatalf("negative max-keys: %v", err)
	}
	// v1 with marker.
	v1, err := c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("b01"), Marker: aws.String("other/x")})
	if err != nil || len(v1.Contents) != 1 || *v1.Contents[0].Key != "root.txt" {
		t.Fatalf("v1: %v %v", v1, err)
	}
	v1, err = c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("b01"), Delimiter: aws.String("/"), MaxKeys: aws.Int32(1)})
	if err != nil || len(v1.CommonPrefixes) != 1 || !*v1.IsTruncated || *v1.NextMarker != "in/" {
		t.Fatalf("v1 delimited: %+v %v", v1, err)
	}
	v1, err = c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("b01"), Delimiter: aws.String("/"), Marker: aws.String("in/")})
	if err != nil || len(v1.CommonPrefixes) != 1 || *v1.CommonPrefixes[0].Prefix != "other/" || len(v1.Contents) != 1 {
		t.Fatalf("v1 after common prefix: %+v %v", v1, err)
	}
	// DeleteObjects.
	del, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String("b01"), Delete: &types.Delete{Objects: []types.ObjectIdentifier{{Key: aws.String("root.txt")}, {Key: aws.String("other/x")}, {Key: aws.String("../bad")}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(del.Deleted) != 2 || len(del.Errors) != 1 || *del.Errors[0].Code != "InvalidArgument" {
		t.Fatalf("delete objects: %+v", del)
	}
	out, _ = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b01"), Prefix: aws.String("o")})
	if len(out.Contents) != 0 {
		t.Fatal("DeleteObjects left objects")
	}
}

// Conditional writes: If-None-Match "*" creates only, If-Match replaces only the given version;
// a refused write publishes no event.
func TestConditionalWrites(t *testing.T) {
	b := startBus(t, t.TempDir(), 0)
	s := startServer(t, Options{Buckets: []string{"b01"}, Publisher: bus.JetStreamPublisher{JS: b.js}})
	c := newClient(s.Endpoint(), testAK, testSK, noRetry)
	ctx := ctxT(t)
	put := func(body string, mod func(*s3.PutObjectInput)) (*s3.PutObjectOutput, error) {
		in := &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String("labels/S1.json"), Body: strings.NewReader(body)}
		mod(in)
		return c.PutObject(ctx, in)
	}
	first, err := put("v1", func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := put("v2", func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }); apiCode(err) != "PreconditionFailed" {
		t.Fatalf("second create-only write: %v", err)
	}
	if _, err := put("v2", func(in *s3.PutObjectInput) { in.IfMatch = aws.String(`"0123"`) }); apiCode(err) != "PreconditionFailed" {
		t.Fatalf("If-Match with a stale etag: %v", err)
	}
	if _, err := put("v2", func(in *s3.PutObjectInput) { in.IfMatch = first.ETag }); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String("labels/S1.json")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(got) != "v2" {
		t.Fatalf("content %q", got)
	}
	if n := len(b.messages(t)); n != 2 || s.PendingEvents() != 0 {
		t.Fatalf("%d events (want 2: the two successful writes), %d pending", n, s.PendingEvents())
	}
}

func TestConditionalReadsAndMisc(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}})
	c := newClient(s.Endpoint(), testAK, testSK, noRetry)
	ctx := ctxT(t)
	put, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String("k"), Body: strings.NewReader("data"),
		ContentDisposition: aws.String("inline"), CacheControl: aws.String("no-cache")})
	if err != nil {
		t.Fatal(err)
	}
	// If-None-Match with the current ETag: 304 (the SDK reports it as an error with status 304).
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String("k"), IfNoneMatch: put.ETag})
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != 304 {
		t.Fatalf("If-None-Match: %v", err)
	}
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String("k"), IfMatch: aws.String(`"nope"`)}); apiCode(err) != "PreconditionFailed" {
		t.Fatalf("If-Match: %v", err)
	}
	h, _ := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b01"), Key: aws.String("k")})
	later := h.LastModified.Add(time.Hour)
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String("k"), IfModifiedSince: &later})
	if !errors.As(err, &re) || re.HTTPStatusCode() != 304 {
		t.Fatalf("If-Modified-Since: %v", err)
	}
	earlier := h.LastModified.Add(-time.Hour)
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String("k"), IfUnmodifiedSince: &earlier}); apiCode(err) != "PreconditionFailed" {
		t.Fatalf("If-Unmodified-Since: %v", err)
	}
	// Stored headers and response-* overrides.
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String("k"), ResponseContentType: aws.String("text/x-override")})
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	if *out.ContentType != "text/x-override" || *out.ContentDisposition != "inline" || *out.CacheControl != "no-cache" {
		t.Fatalf("headers %v %v %v", *out.ContentType, *out.ContentDisposition, *out.CacheControl)
	}
	// Versioning is reported as never enabled; unsupported sub-resources answer NotImplemented.
	v, err := c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String("b01")})
	if err != nil || v.Status != "" {
		t.Fatalf("versioning %v %v", v, err)
	}
	if _, err := c.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String("b01")}); apiCode(err) != "NotImplemented" {
		t.Fatalf("policy: %v", err)
	}
	if _, err := c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String("b01"), Key: aws.String("k")}); apiCode(err) != "NotImplemented" {
		t.Fatalf("tagging: %v", err)
	}
	// A failed HEAD has no body; a wrong method on the service answers MethodNotAllowed.
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b01"), Key: aws.String("missing")}); !errors.As(err, &re) || re.HTTPStatusCode() != 404 {
		t.Fatalf("head missing: %v", err)
	}
	r, _ := http.NewRequest(http.MethodDelete, s.Endpoint()+"/", nil)
	r.Host = r.URL.Host
	signRequest(r, emptySHA256, time.Now())
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 405 || !strings.Contains(string(body), "MethodNotAllowed") {
		t.Fatalf("DELETE /: %d %s", resp.StatusCode, body)
	}
}
