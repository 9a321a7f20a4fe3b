package s3local

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// FuzzUnsignedChunked: the aws-chunked decoder never panics, fails only with an S3 error, and
// what it accepts has exactly the announced decoded length.
func FuzzUnsignedChunked(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"), 5)
	f.Add([]byte("3;ext=1\r\nabc\r\n0\r\n\r\n"), 3)
	f.Add([]byte("ffffffffffffffff\r\n"), 1)
	f.Add([]byte("2\r\nab0\r\n\r\n"), 2)
	f.Fuzz(func(t *testing.T, body []byte, decoded int) {
		if decoded < 0 {
			decoded = -decoded
		}
		r := httptest.NewRequest(http.MethodPut, "/b/k", bytes.NewReader(body))
		r.Header.Set("X-Amz-Content-Sha256", streamingUnsignedTrailer)
		r.Header.Set("Content-Encoding", "aws-chunked")
		r.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
		r.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(decoded))
		p, e := newPayload(r, &auth{payloadHash: streamingUnsignedTrailer}, 1<<20)
		if e != nil {
			return
		}
		out, err := io.ReadAll(p)
		if err != nil {
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("untyped error %T %v", err, err)
			}
			return
		}
		if len(out) != decoded {
			t.Fatalf("accepted %d bytes, announced %d", len(out), decoded)
		}
	})
}
