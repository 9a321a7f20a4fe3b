package s3local

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// dialRaw opens a raw TCP connection to the server and writes head (a request without its body, or
// a part of one).
func dialRaw(t *testing.T, s *Server, head string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.Endpoint(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	return c
}

// awaitAnswer waits (at most limit) for the server to answer on c or close it. It returns the
// status line ("" when the server closed the connection without one) and how long it took; a
// client-side timeout is a test failure: the server kept the connection open.
func awaitAnswer(t *testing.T, c net.Conn, start time.Time, limit time.Duration) (string, time.Duration) {
	t.Helper()
	c.SetReadDeadline(start.Add(limit))
	line, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("no answer and no close after %s: the server holds the stalled connection open", took.Round(time.Millisecond))
	}
	return strings.TrimSpace(line), took
}

const stalledPut = "PUT /b01/stalled HTTP/1.1\r\nHost: s3\r\nContent-Length: 10\r\n\r\n"

// The reproduction of the issue: an unauthenticated PUT declaring Content-Length 10 and sending no
// body is answered (or dropped) within BodyTimeout, not held forever; the same for a signed-less
// anonymous PUT whose body stops halfway, and for headers that never end.
func TestStalledRequestsCutOffWithinTimeout(t *testing.T) {
	const timeout = time.Second
	lim := Limits{HeaderTimeout: timeout, BodyTimeout: timeout}
	for _, tc := range []struct {
		name, head string
		anonymous  bool
	}{
		{"unauthenticated, no body", stalledPut, false},
		{"anonymous, half a body", "PUT /b01/half HTTP/1.1\r\nHost: s3\r\nContent-Length: 10\r\n\r\n12345", true},
		{"headers never end", "PUT /b01/slow HTTP/1.1\r\nHost: s3\r\nContent-Le", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{Buckets: []string{"b01"}, AllowAnonymous: tc.anonymous, Limits: lim})
			start := time.Now()
			c := dialRaw(t, s, tc.head)
			status, took := awaitAnswer(t, c, start, 4*timeout)
			t.Logf("answer %q after %s", status, took.Round(time.Millisecond))
			if took < timeout/2 {
				t.Errorf("answered after %s, before the client could have been judged stalled", took)
			}
			if status != "" && !strings.HasPrefix(status, "HTTP/1.1 4") && !strings.HasPrefix(status, "HTTP/1.1 5") {
				t.Errorf("stalled request answered %q", status)
			}
			if tc.anonymous {
				if _, err := os.Stat(filepath.Join(s.opts.Dir, "buckets")); err != nil {
					t.Fatal(err)
				}
				w := httptest.NewRecorder()
				s.ServeHTTP(w, httptest.NewRequest(http.MethodHead, "/b01/half", nil))
				if w.Code != http.StatusNotFound {
					t.Errorf("the half-sent object exists: HEAD %d", w.Code)
				}
			}
		})
	}
}

// 200 connections stalled in their body and 50 stalled in their headers do not keep a normal
// client from uploading meanwhile; every stalled one is cut off within the timeout, and the
// handler goroutines they held are gone afterwards.
func TestStalledConnectionsDoNotBlockUploads(t *testing.T) {
	const timeout = 8 * time.Second
	s := startServer(t, Options{Buckets: []string{"b01"}, Limits: Limits{HeaderTimeout: timeout, BodyTimeout: timeout}})
	base := runtime.NumGoroutine()
	start := time.Now()
	var conns []net.Conn
	for i := range 250 {
		head := stalledPut
		if i >= 200 {
			head = "PUT /b01/slow HTTP/1.1\r\nHost: s3\r\n"
		}
		conns = append(conns, dialRaw(t, s, head))
	}
	// Let the server read every stalled request's headers and block on its body.
	time.Sleep(300 * time.Millisecond)

	c := newClient(s.Endpoint(), testAK, testSK, noRetry)
	body := bytes.Repeat([]byte("hpa"), 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b01"), Key: aws.String("normal"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("a normal upload beside 250 stalled connections: %v", err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b01"), Key: aws.String("normal")})
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	// Done before any stalled connection could have been cut: the upload really ran beside them.
	if since := time.Since(start); since >= timeout {
		t.Fatalf("the normal upload ended %s after the stalled connections came (%s PUT+GET), not before their timeout %s", since, time.Since(t0), timeout)
	}
	if *out.ContentLength != int64(len(body)) {
		t.Errorf("GET: %d bytes", *out.ContentLength)
	}

	var wg sync.WaitGroup
	var late atomic.Int32
	for _, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn.SetReadDeadline(start.Add(timeout + 3*time.Second))
			if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					late.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := late.Load(); n > 0 {
		t.Fatalf("%d of 250 stalled connections neither answered nor closed %s after they stalled", n, timeout+3*time.Second)
	}
	for _, conn := range conns {
		conn.Close()
	}
	// No handler goroutine stays pinned by them.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+10 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+10 {
		t.Errorf("%d goroutines after the stalled connections were cut, %d before they came", n, base)
	}
}

// Beyond MaxRequests requests at once the answer is 503 SlowDown at once (SDKs retry it); the
// slots free up when the stalled requests are cut off.
func TestMaxRequestsSlowDown(t *testing.T) {
	const timeout = 4 * time.Second
	s := startServer(t, Options{Buckets: []string{"b01"}, Limits: Limits{HeaderTimeout: timeout, BodyTimeout: timeout, MaxRequests: 2}})
	start := time.Now()
	a, b := dialRaw(t, s, stalledPut), dialRaw(t, s, stalledPut)
	time.Sleep(200 * time.Millisecond)
	c := newClient(s.Endpoint(), testAK, testSK, noRetry)
	ctx := ctxT(t)
	_, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("b01")})
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusServiceUnavailable {
		t.Fatalf("third request with two slots taken: %v", err)
	}
	r, err := http.Get(s.Endpoint() + "/b01")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(buf.String(), "<Code>SlowDown</Code>") || r.Header.Get("Retry-After") == "" {
		t.Errorf("over the limit: %d %s %v", r.StatusCode, buf.String(), r.Header)
	}
	awaitAnswer(t, a, start, timeout+3*time.Second)
	awaitAnswer(t, b, start, timeout+3*time.Second)
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("b01")}); err != nil {
		t.Fatalf("after the stalled requests were cut: %v", err)
	}
}

// Signature V2 is refused by default (no payload integrity) and accepted with AllowSigV2; its
// presigned URLs then expire within 7 days.
func TestSigV2OffByDefault(t *testing.T) {
	at := time.Date(2007, 3, 27, 19, 40, 0, 0, time.UTC)
	for _, allow := range []bool{false, true} {
		s, err := New(Options{Dir: t.TempDir(), AccessKey: awsExampleAK, SecretKey: awsExampleSK,
			Now: func() time.Time { return at }, Limits: Limits{AllowSigV2: allow}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		r := httptest.NewRequest(http.MethodGet, "/johnsmith/photos/puppy.jpg", nil)
		r.Header.Set("Date", "Tue, 27 Mar 2007 19:36:42 +0000")
		r.Header.Set("Authorization", "AWS "+awsExampleAK+":bWq2s1WEIj+Ydj0vQ697zp+IXMU=")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		want := "<Code>NoSuchBucket</Code>" // authenticated: the bucket is what is missing
		if !allow {
			want = "Signature Version 2 is not accepted"
		}
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("allow_sigv2=%v: %d %s", allow, w.Code, w.Body)
		}
		// A presigned V2 URL: refused when off; when on, refused beyond 7 days whatever its signature.
		for _, exp := range []int64{at.Add(time.Hour).Unix(), at.Add(8 * 24 * time.Hour).Unix()} {
			r := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/johnsmith/photo?AWSAccessKeyId=%s&Expires=%d&Signature=x", awsExampleAK, exp), nil)
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			body := w.Body.String()
			switch {
			case !allow && !strings.Contains(body, "Signature Version 2 is not accepted"):
				t.Errorf("V2 presigned accepted by default: %s", body)
			case allow && exp > at.Add(maxPresignV2).Unix() && !strings.Contains(body, "at most 7 days"):
				t.Errorf("V2 presigned URL valid for 8 days: %s", body)
			case allow && exp < at.Add(maxPresignV2).Unix() && !strings.Contains(body, "SignatureDoesNotMatch"):
				t.Errorf("V2 presigned URL within 7 days: %s", body)
			}
		}
	}
}

// Abandoned multipart uploads expire after MultipartMaxAge with their staged parts; younger ones
// stay and complete normally. With a settable clock, then with the real background sweep.
func TestMultipartUploadsExpire(t *testing.T) {
	s := startServer(t, Options{Buckets: []string{"b01"}, MinPartSize: 1, Limits: Limits{MultipartMaxAge: time.Hour}})
	c := newClient(s.Endpoint(), testAK, testSK, noRetry, func(o *s3.Options) {
		o.Retryer = aws.NopRetryer{}
	})
	ctx := ctxT(t)
	create := func(key string) (string, string) {
		up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("b01"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b01"), Key: aws.String(key), UploadId: up.UploadId,
			PartNumber: aws.Int32(1), Body: bytes.NewReader(bytes.Repeat([]byte(key), 1000))})
		if err != nil {
			t.Fatal(err)
		}
		return *up.UploadId, *p.ETag
	}
	oldID, _ := create("old")
	youngID, youngETag := create("young")
	if n := stagedParts(t, s); n != 2 {
		t.Fatalf("%d staged parts, want 2", n)
	}
	// Make "old" 70 minutes old (as if created then: the SDK signs with the real clock), "young" 30.
	for id, age := range map[string]time.Duration{oldID: 70 * time.Minute, youngID: 30 * time.Minute} {
		rec := filepath.Join(s.uploadDir(id), "upload.json")
		raw, err := os.ReadFile(rec)
		if err != nil {
			t.Fatal(err)
		}
		var u uploadRecord
		if err := json.Unmarshal(raw, &u); err != nil {
			t.Fatal(err)
		}
		u.Initiated = time.Now().Add(-age)
		raw, _ = json.Marshal(u)
		if err := os.WriteFile(rec, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.ExpireUploads()
	if err != nil || n != 1 {
		t.Fatalf("expired %d (%v), want 1", n, err)
	}
	if n := stagedParts(t, s); n != 1 {
		t.Errorf("%d staged parts after expiry, want 1", n)
	}
	_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b01"), Key: aws.String("old"), UploadId: aws.String(oldID),
		PartNumber: aws.Int32(2), Body: bytes.NewReader([]byte("late"))})
	var nsu *types.NoSuchUpload
	if !errors.As(err, &nsu) && !strings.Contains(fmt.Sprint(err), "NoSuchUpload") {
		t.Errorf("part of an expired upload: %v", err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("b01"), Key: aws.String("young"), UploadId: aws.String(youngID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: aws.String(youngETag)}}}}); err != nil {
		t.Fatalf("completing the young upload: %v", err)
	}

	// The background sweep, on the real clock.
	s2 := startServer(t, Options{Buckets: []string{"b01"}, Limits: Limits{MultipartMaxAge: 1500 * time.Millisecond}})
	c2 := newClient(s2.Endpoint(), testAK, testSK, noRetry)
	up, err := c2.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("b01"), Key: aws.String("abandoned")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b01"), Key: aws.String("abandoned"), UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(make([]byte, 4096))}); err != nil {
		t.Fatal(err)
	}
	if n := stagedParts(t, s2); n != 1 {
		t.Fatalf("%d staged parts, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for stagedParts(t, s2) != 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := stagedParts(t, s2); n != 0 {
		t.Fatalf("the abandoned upload's part is still staged %s after its max age", 5*time.Second)
	}
}

// stagedParts counts the part files of all multipart uploads of s.
func stagedParts(t *testing.T, s *Server) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(s.store.dir, "uploads", "*", "part-*.data"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}
