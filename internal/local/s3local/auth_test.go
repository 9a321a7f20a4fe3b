package s3local

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestBadSignatureAndAnonymous(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}})
	ctx := ctxT(t)
	wrongSecret := newClient(s.Endpoint(), testAK, testSK+"x", noRetry)
	_, err := wrongSecret.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String("k"), Body: strings.NewReader("x")})
	if apiCode(err) != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: %v", err)
	}
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != 403 {
		t.Fatalf("wrong secret status: %v", err)
	}
	wrongKey := newClient(s.Endpoint(), "AKIAOTHER", testSK, noRetry)
	if _, err := wrongKey.ListBuckets(ctx, &s3.ListBucketsInput{}); apiCode(err) != "InvalidAccessKeyId" {
		t.Fatalf("wrong key: %v", err)
	}
	// Plain HTTP without credentials.
	resp, err := http.Get(s.Endpoint() + "/b01/k")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), "<Code>AccessDenied</Code>") || !strings.Contains(string(b), "<RequestId>") {
		t.Fatalf("anonymous: %d %s", resp.StatusCode, b)
	}
	// Nothing was written by the refused requests.
	c := newClient(s.Endpoint(), testAK, testSK)
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b01")})
	if err != nil || len(out.Contents) != 0 {
		t.Fatalf("list: %v %v", out, err)
	}
}

// A body that does not match the signed x-amz-content-sha256 is refused.
func TestPayloadHashMismatch(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}})
	tamper := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut {
				b, _ := io.ReadAll(r.Body)
				b[0] ^= 1
				r.Body = io.NopCloser(bytes.NewReader(b))
			}
			next.ServeHTTP(w, r)
		})
	}
	ts := httptest.NewServer(tamper(s))
	defer ts.Close()
	c := newClient(ts.URL, testAK, testSK, noRetry)
	_, err := c.PutObject(ctxT(t), &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String("k"), Body: strings.NewReader("payload")})
	if code := apiCode(err); code != "XAmzContentSHA256Mismatch" && code != "BadDigest" {
		t.Fatalf("tampered body: %v", err)
	}
	if _, e := s.store.head("b01", "k"); e == nil {
		t.Fatal("tampered object stored")
	}
}

func TestPresignedURL(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}})
	c := newClient(s.Endpoint(), testAK, testSK)
	ctx := ctxT(t)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String("dir/a b.txt"), Body: strings.NewReader("presigned!")}); err != nil {
		t.Fatal(err)
	}
	ps := s3.NewPresignClient(c)
	req, err := ps.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String("dir/a b.txt")}, s3.WithPresignExpires(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(req.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "presigned!" {
		t.Fatalf("presigned get: %d %s", resp.StatusCode, b)
	}
	resp, err = http.Get(strings.Replace(req.URL, "X-Amz-Signature=", "X-Amz-Signature=0", 1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("tampered presigned URL: %d", resp.StatusCode)
	}
	// Expired: the server clock moves past the expiry.
	s.opts.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	resp, err = http.Get(req.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), "expired") {
		t.Fatalf("expired presigned URL: %d %s", resp.StatusCode, b)
	}
}

// The AWS documentation's signed streaming upload example (sigv4-streaming): 66560 bytes of 'a'
// in chunks of 65536, 1024 and 0, with the published seed and chunk signatures.
const (
	awsExampleAK    = "AKIAIOSFODNN7EXAMPLE"
	awsExampleSK    = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	awsExampleSeed  = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
	awsExampleSig1  = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
	awsExampleSig2  = "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
	awsExampleFinal = "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
)

func awsExampleRequest(corrupt int) *http.Request {
	var body bytes.Buffer
	for i, ch := range []struct {
		n   int
		sig string
	}{{65536, awsExampleSig1}, {1024, awsExampleSig2}, {0, awsExampleFinal}} {
		body.WriteString(strconv.FormatInt(int64(ch.n), 16) + ";chunk-signature=" + ch.sig + "\r\n")
		data := bytes.Repeat([]byte("a"), ch.n)
		if corrupt == i+1 && ch.n > 0 {
			data[5] = 'b'
		}
		body.Write(data)
		body.WriteString("\r\n")
	}
	r := httptest.NewRequest(http.MethodPut, "http://s3.amazonaws.com/examplebucket/chunkObject.txt", bytes.NewReader(body.Bytes()))
	r.Host = "s3.amazonaws.com"
	r.Header.Set("X-Amz-Date", "20130524T000000Z")
	r.Header.Set("X-Amz-Storage-Class", "REDUCED_REDUNDANCY")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+awsExampleAK+"/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature="+awsExampleSeed)
	r.Header.Set("X-Amz-Content-Sha256", streamingSignedPayload)
	r.Header.Set("Content-Encoding", "aws-chunked")
	r.Header.Set("X-Amz-Decoded-Content-Length", "66560")
	r.Header.Set("Content-Length", strconv.Itoa(body.Len()))
	r.ContentLength = int64(body.Len())
	return r
}

func TestAWSStreamingSignatureVector(t *testing.T) {
	if body := awsExampleRequest(0); body.ContentLength != 66824 {
		t.Fatalf("example body is %d bytes, AWS says 66824", body.ContentLength)
	}
	s, err := New(Options{Dir: t.TempDir(), AccessKey: awsExampleAK, SecretKey: awsExampleSK, Buckets: []string{"examplebucket"},
		Now: func() time.Time { return time.Date(2013, 5, 24, 0, 1, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	w := httptest.NewRecorder()
	s.ServeHTTP(w, awsExampleRequest(0))
	if w.Code != 200 {
		t.Fatalf("AWS example upload: %d %s", w.Code, w.Body)
	}
	m, e := s.store.head("examplebucket", "chunkObject.txt")
	if e != nil || m.Size != 66560 || m.ETag != md5hex(bytes.Repeat([]byte("a"), 66560)) {
		t.Fatalf("stored %+v %v", m, e)
	}
	// Corrupting either data chunk breaks its chunk signature; nothing is stored.
	for _, corrupt := range []int{1, 2} {
		w := httptest.NewRecorder()
		r := awsExampleRequest(corrupt)
		before, _ := s.store.head("examplebucket", "chunkObject.txt")
		s.ServeHTTP(w, r)
		if w.Code != 403 || !strings.Contains(w.Body.String(), "SignatureDoesNotMatch") {
			t.Fatalf("corrupt chunk %d: %d %s", corrupt, w.Code, w.Body)
		}
		after, _ := s.store.head("examplebucket", "chunkObject.txt")
		if after.Version != before.Version {
			t.Fatalf("corrupt chunk %d replaced the object", corrupt)
		}
	}
	// The seed signature itself: a different secret fails before any chunk is read.
	s.opts.SecretKey = "other"
	w = httptest.NewRecorder()
	s.ServeHTTP(w, awsExampleRequest(0))
	if w.Code != 403 {
		t.Fatalf("wrong secret: %d", w.Code)
	}
}

// signedChunkBody frames data as a signed aws-chunked body with an optional signed trailer,
// continuing the signature chain from seed.
func signedChunkBody(key []byte, amzDate, scope, seed string, data []byte, chunk int, trailer map[string]string, minioStyle bool) []byte {
	var b bytes.Buffer
	prev := seed
	sign := func(sum string) string {
		sig := hex.EncodeToString(hmacSHA256(key, "AWS4-HMAC-SHA256-PAYLOAD\n"+amzDate+"\n"+scope+"\n"+prev+"\n"+emptySHA256+"\n"+sum))
		prev = sig
		return sig
	}
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		b.WriteString(fmt.Sprintf("%x;chunk-signature=%s\r\n", end-off, sign(sha256Hex(string(data[off:end])))))
		b.Write(data[off:end])
		b.WriteString("\r\n")
	}
	b.WriteString("0;chunk-signature=" + sign(emptySHA256) + "\r\n")
	if trailer == nil {
		b.WriteString("\r\n")
		return b.Bytes()
	}
	var tr strings.Builder
	for k, v := range trailer {
		tr.WriteString(k + ":" + v + "\n")
		if minioStyle {
			b.WriteString(k + ":" + v + "\n")
		} else {
			b.WriteString(k + ":" + v + "\r\n")
		}
	}
	tsig := hex.EncodeToString(hmacSHA256(key, "AWS4-HMAC-SHA256-TRAILER\n"+amzDate+"\n"+scope+"\n"+prev+"\n"+sha256Hex(tr.String())))
	if minioStyle {
		// minio-go: trailer lines end in "\n", then "\r\n" before the signature.
		b.WriteString("\r\n")
	}
	b.WriteString("x-amz-trailer-signature:" + tsig + "\r\n\r\n")
	return b.Bytes()
}

// signRequest signs r (header auth) with the test keys and the given payload hash.
func signRequest(r *http.Request, payloadHash string, now time.Time) (key []byte, amzDate, scope, seed string) {
	amzDate = now.UTC().Format(amzDateLayout)
	date := amzDate[:8]
	scope = date + "/us-east-1/s3/aws4_request"
	r.Header.Set("X-Amz-Date", amzDate)
	r.Header.Set("X-Amz-Content-Sha256", payloadHash)
	signed := []string{"host", "x-amz-content-sha256", "x-amz-date"}
	if r.Header.Get("X-Amz-Decoded-Content-Length") != "" {
		signed = append(signed, "x-amz-decoded-content-length")
	}
	if r.Header.Get("X-Amz-Trailer") != "" {
		signed = append(signed, "x-amz-trailer")
	}
	key = signingKey(testSK, date, "us-east-1", "s3")
	sts, _ := stringToSign(r, awsURIEncode(r.URL.Path, true), signed, payloadHash, amzDate, scope)
	seed = hex.EncodeToString(hmacSHA256(key, sts))
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+testAK+"/"+scope+",SignedHeaders="+strings.Join(signed, ";")+",Signature="+seed)
	return
}

func TestSignedChunkedWithTrailer(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}})
	data := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80000 bytes
	crc := (&payload{}).sumFor("crc32", data)
	for _, tc := range []struct {
		name      string
		trailer   map[string]string
		tamperSig bool
		minio     bool
		wantCode  int
	}{
		{"trailer ok", map[string]string{"x-amz-checksum-crc32": crc}, false, false, 200},
		{"minio-go framing", map[string]string{"x-amz-checksum-crc32": crc}, false, true, 200},
		{"bad checksum", map[string]string{"x-amz-checksum-crc32": "AAAAAA=="}, false, false, 400},
		{"bad trailer signature", map[string]string{"x-amz-checksum-crc32": crc}, true, false, 403},
		{"minio-go bad trailer signature", map[string]string{"x-amz-checksum-crc32": crc}, true, true, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodPut, s.Endpoint()+"/b01/chunked/"+strings.ReplaceAll(tc.name, " ", "_"), nil)
			r.Header.Set("Content-Encoding", "aws-chunked")
			r.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
			r.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
			r.Host = r.URL.Host
			key, amzDate, scope, seed := signRequest(r, streamingSignedTrailer, time.Now())
			body := signedChunkBody(key, amzDate, scope, seed, data, 8192, tc.trailer, tc.minio)
			if tc.tamperSig {
				i := bytes.LastIndex(body, []byte("x-amz-trailer-signature:")) + len("x-amz-trailer-signature:")
				body[i] ^= 1
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d: %s", resp.StatusCode, msg)
			}
			_, e := s.store.head("b01", "chunked/"+strings.ReplaceAll(tc.name, " ", "_"))
			if (e == nil) != (tc.wantCode == 200) {
				t.Fatalf("stored=%v for status %d", e == nil, tc.wantCode)
			}
		})
	}
}

// Over HTTPS the SDK streams PutObject as STREAMING-UNSIGNED-PAYLOAD-TRAILER (aws-chunked with a
// CRC32 trailer); the server decodes and verifies it.
func TestSDKUnsignedTrailerOverTLS(t *testing.T) {
	s, err := New(Options{Dir: t.TempDir(), AccessKey: testAK, SecretKey: testSK, Buckets: []string{"b01"}})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			seen = append(seen, r.Header.Get("X-Amz-Content-Sha256")+" "+r.Header.Get("Content-Encoding"))
		}
		s.ServeHTTP(w, r)
	}))
	defer ts.Close()
	c := newClient(ts.URL, testAK, testSK, func(o *s3.Options) {
		o.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	})
	ctx := ctxT(t)
	data := bytes.Repeat([]byte("trailer "), 40000) // 320000 bytes: several 64 KiB chunks
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String("tls obj"), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || !strings.HasPrefix(seen[0], streamingUnsignedTrailer) || !strings.Contains(seen[0], "aws-chunked") {
		t.Fatalf("SDK sent %q, want %s aws-chunked", seen, streamingUnsignedTrailer)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String("tls obj")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes back", len(got))
	}
	if out.ContentEncoding != nil && strings.Contains(*out.ContentEncoding, "aws-chunked") {
		t.Fatal("aws-chunked leaked into the stored Content-Encoding")
	}
}

// Over plain HTTP the SDK signs the SHA-256 of the body and sends a CRC32 header; GetObject with
// checksum mode gets the stored checksum back and the SDK validates it.
func TestSDKPlainHTTPChecksums(t *testing.T) {
	var mu sync.Mutex
	var sent []http.Header
	record := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut {
				mu.Lock()
				sent = append(sent, r.Header.Clone())
				mu.Unlock()
			}
			next.ServeHTTP(w, r)
		})
	}
	s := startServer(t, Options{Buckets: []string{"b01"}, Middleware: record})
	var hdr string
	c := newClient(s.Endpoint(), testAK, testSK)
	ctx := ctxT(t)
	data := []byte(strings.Repeat("x", 100000))
	put, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String("k"), Body: bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	if put.ChecksumCRC32 == nil {
		t.Fatal("no CRC32 echoed")
	}
	// What the current SDK sends over plain HTTP: the body's SHA-256 (signed), a CRC32 header,
	// no aws-chunked framing.
	mu.Lock()
	h := sent[0]
	mu.Unlock()
	if h.Get("X-Amz-Content-Sha256") != sha256Hex(string(data)) || h.Get("X-Amz-Checksum-Crc32") == "" || h.Get("Content-Encoding") != "" {
		t.Fatalf("SDK PutObject over http sent sha256=%q crc32=%q encoding=%q", h.Get("X-Amz-Content-Sha256"), h.Get("X-Amz-Checksum-Crc32"), h.Get("Content-Encoding"))
	}
	m, _ := s.store.head("b01", "k")
	hdr = m.Checksums["crc32"]
	if hdr == "" || hdr != *put.ChecksumCRC32 || hdr != (&payload{}).sumFor("crc32", data) {
		t.Fatalf("stored crc32 %q, put said %q", hdr, *put.ChecksumCRC32)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String("k"), ChecksumMode: "ENABLED"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(out.Body); err != nil {
		t.Fatalf("validated read: %v", err)
	}
	out.Body.Close()
	if out.ChecksumCRC32 == nil || *out.ChecksumCRC32 != hdr {
		t.Fatalf("GET checksum %v", out.ChecksumCRC32)
	}
}

// The AWS documentation's Signature Version 2 example (GET /photos/puppy.jpg of bucket johnsmith),
// addressed path-style.
func TestSigV2Vector(t *testing.T) {
	s, err := New(Options{Dir: t.TempDir(), AccessKey: awsExampleAK, SecretKey: awsExampleSK,
		Now:    func() time.Time { return time.Date(2007, 3, 27, 19, 40, 0, 0, time.UTC) },
		Limits: Limits{AllowSigV2: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	for _, tc := range []struct {
		sig  string
		code string
	}{{"bWq2s1WEIj+Ydj0vQ697zp+IXMU=", "NoSuchBucket"}, {"cWq2s1WEIj+Ydj0vQ697zp+IXMU=", "SignatureDoesNotMatch"}} {
		r := httptest.NewRequest(http.MethodGet, "/johnsmith/photos/puppy.jpg", nil)
		r.Header.Set("Date", "Tue, 27 Mar 2007 19:36:42 +0000")
		r.Header.Set("Authorization", "AWS "+awsExampleAK+":"+tc.sig)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if !strings.Contains(w.Body.String(), "<Code>"+tc.code+"</Code>") {
			t.Fatalf("signature %s: %d %s", tc.sig, w.Code, w.Body)
		}
	}
}
