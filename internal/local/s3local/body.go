package s3local

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Checksum algorithms of the x-amz-checksum-* headers and trailers.
var checksumAlgorithms = map[string]func() hash.Hash{
	"crc32":     func() hash.Hash { return crc32.NewIEEE() },
	"crc32c":    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
	"crc64nvme": func() hash.Hash { return crc64.New(crc64NVME) },
	"sha1":      sha1.New,
	"sha256":    sha256.New,
}

var crc64NVME = crc64.MakeTable(0x9a6c9329ac4bc9b5)

const checksumHeaderPrefix = "x-amz-checksum-"

// payload reads a request body as the client framed and signed it, and hashes what it delivers.
type payload struct {
	src      io.Reader // decoded bytes
	md5      hash.Hash
	sha      hash.Hash // non-nil when a hex x-amz-content-sha256 must be checked
	wantSHA  string
	sums     map[string]hash.Hash // algorithm -> running checksum
	want     map[string]string    // algorithm -> base64 value from a header (or trailer)
	chunked  *chunkReader
	n        int64
	wantLen  int64 // -1 when unknown
	maxBytes int64
	done     bool
}

// newPayload wraps r.Body according to x-amz-content-sha256 and Content-Encoding.
func newPayload(r *http.Request, a *auth, maxBytes int64) (*payload, *APIError) {
	p := &payload{md5: md5.New(), sums: map[string]hash.Hash{}, want: map[string]string{}, wantLen: -1, maxBytes: maxBytes}
	for name := range r.Header {
		lname := strings.ToLower(name)
		alg, ok := strings.CutPrefix(lname, checksumHeaderPrefix)
		if !ok || alg == "mode" || alg == "algorithm" || alg == "type" {
			continue
		}
		mk, ok := checksumAlgorithms[alg]
		if !ok {
			return nil, errInvalidRequest("unsupported checksum header %s", name)
		}
		p.sums[alg] = mk()
		p.want[alg] = r.Header.Get(name)
	}
	if v := r.Header.Get("X-Amz-Sdk-Checksum-Algorithm"); v != "" {
		alg := strings.ToLower(v)
		mk, ok := checksumAlgorithms[alg]
		if !ok {
			return nil, errInvalidRequest("unsupported checksum algorithm %q", v)
		}
		if p.sums[alg] == nil {
			p.sums[alg] = mk()
		}
	}
	hashHdr := r.Header.Get(headerContentSHA256)
	if a != nil && a.payloadHash != "" {
		hashHdr = a.payloadHash
	}
	var body io.Reader = r.Body
	if r.Body == nil {
		body = http.NoBody
	}
	switch {
	case strings.HasPrefix(hashHdr, "STREAMING-"):
		signed := hashHdr == streamingSignedPayload || hashHdr == streamingSignedTrailer
		trailer := hashHdr == streamingSignedTrailer || hashHdr == streamingUnsignedTrailer
		if !signed && hashHdr != streamingUnsignedTrailer {
			return nil, errInvalidArgument("unsupported x-amz-content-sha256 %q", hashHdr)
		}
		if signed && (a == nil || a.signingKey == nil) {
			return nil, errAccessDenied("signed streaming upload without a verified signature")
		}
		dl := r.Header.Get(headerDecodedContentLength)
		n, err := strconv.ParseInt(dl, 10, 64)
		if err != nil || n < 0 {
			return nil, apiErr("MissingContentLength", http.StatusLengthRequired, "aws-chunked upload needs a valid x-amz-decoded-content-length (got %q)", dl)
		}
		p.wantLen = n
		cr := &chunkReader{br: bufio.NewReaderSize(body, 64<<10), signed: signed, trailer: trailer}
		if signed {
			cr.key, cr.prevSig, cr.amzDate, cr.scope = a.signingKey, a.signature, a.amzDate, a.scope
		}
		if trailer {
			for _, t := range strings.Split(r.Header.Get("X-Amz-Trailer"), ",") {
				t = strings.ToLower(strings.TrimSpace(t))
				if t == "" {
					continue
				}
				alg, ok := strings.CutPrefix(t, checksumHeaderPrefix)
				mk, known := checksumAlgorithms[alg]
				if !ok || !known {
					return nil, errInvalidRequest("unsupported trailer %q", t)
				}
				if p.sums[alg] == nil {
					p.sums[alg] = mk()
				}
				cr.declared = append(cr.declared, t)
			}
		}
		p.chunked = cr
		p.src = cr
	case hashHdr == "" || hashHdr == unsignedPayload:
		p.src = body
	default:
		if len(hashHdr) != 64 {
			return nil, errInvalidArgument("x-amz-content-sha256 %q is not a SHA-256", hashHdr)
		}
		if _, err := hex.DecodeString(hashHdr); err != nil {
			return nil, errInvalidArgument("x-amz-content-sha256 %q is not hex", hashHdr)
		}
		p.sha, p.wantSHA = sha256.New(), strings.ToLower(hashHdr)
		p.src = body
	}
	if p.wantLen < 0 && r.ContentLength >= 0 {
		p.wantLen = r.ContentLength
	}
	if p.wantLen > maxBytes {
		return nil, apiErr("EntityTooLarge", http.StatusBadRequest, "Your proposed upload exceeds the maximum allowed size (%d > %d bytes)", p.wantLen, maxBytes)
	}
	if md := r.Header.Get("Content-Md5"); md != "" {
		raw, err := base64.StdEncoding.DecodeString(md)
		if err != nil || len(raw) != md5.Size {
			return nil, apiErr("InvalidDigest", http.StatusBadRequest, "The Content-MD5 you specified is not valid.")
		}
		p.want["md5"] = md
	}
	return p, nil
}

func (p *payload) Read(b []byte) (int, error) {
	if p.done {
		return 0, io.EOF
	}
	n, err := p.src.Read(b)
	if n > 0 {
		p.n += int64(n)
		if p.n > p.maxBytes {
			return 0, apiErr("EntityTooLarge", http.StatusBadRequest, "upload exceeds the maximum allowed size of %d bytes", p.maxBytes)
		}
		p.md5.Write(b[:n])
		if p.sha != nil {
			p.sha.Write(b[:n])
		}
		for _, h := range p.sums {
			h.Write(b[:n])
		}
	}
	if err == io.EOF {
		if verr := p.finish(); verr != nil {
			return n, verr
		}
		p.done = true
	} else if err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			return n, ae
		}
		return n, apiErr("IncompleteBody", http.StatusBadRequest, "reading the request body: %v", err)
	}
	return n, err
}

// finish runs the end-of-body checks: length, payload SHA-256, trailers, checksums, Content-MD5.
func (p *payload) finish() *APIError {
	if p.wantLen >= 0 && p.n != p.wantLen {
		return apiErr("IncompleteBody", http.StatusBadRequest, "You did not provide the number of bytes specified (got %d of %d)", p.n, p.wantLen)
	}
	if p.sha != nil && hex.EncodeToString(p.sha.Sum(nil)) != p.wantSHA {
		return apiErr("XAmzContentSHA256Mismatch", http.StatusBadRequest, "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	if p.chunked != nil {
		for name, v := range p.chunked.trailers {
			alg := strings.TrimPrefix(name, checksumHeaderPrefix)
			p.want[alg] = v
		}
	}
	for alg, v := range p.want {
		var got []byte
		if alg == "md5" {
			got = p.md5.Sum(nil)
		} else {
			h := p.sums[alg]
			if h == nil {
				continue
			}
			got = h.Sum(nil)
		}
		if subtle.ConstantTimeCompare([]byte(base64.StdEncoding.EncodeToString(got)), []byte(v)) != 1 {
			return apiErr("BadDigest", http.StatusBadRequest, "The %s you specified did not match the calculated checksum.", strings.ToUpper(alg))
		}
	}
	return nil
}

// ETag is the hex MD5 of everything read (valid after EOF).
func (p *payload) ETag() string { return hex.EncodeToString(p.md5.Sum(nil)) }

// Checksums are the verified x-amz-checksum-* values (algorithm -> base64), valid after EOF.
func (p *payload) Checksums() map[string]string {
	out := map[string]string{}
	for alg, h := range p.sums {
		out[alg] = base64.StdEncoding.EncodeToString(h.Sum(nil))
	}
	return out
}

// chunkReader decodes an aws-chunked body, verifying chunk and trailer signatures when signed.
type chunkReader struct {
	br       *bufio.Reader
	signed   bool
	trailer  bool
	declared []string // trailer header names announced in x-amz-trailer
	key      []byte
	prevSig  string
	amzDate  string
	scope    string
	left     int64 // bytes left in the current chunk
	chunkSig string
	chunkSHA hash.Hash
	eof      bool
	trailers map[string]string
}

func chunkErr(format string, args ...any) *APIError {
	return apiErr("IncompleteBody", http.StatusBadRequest, "aws-chunked body: "+format, args...)
}

func (c *chunkReader) readLine() (string, *APIError) {
	var line []byte
	for {
		part, isPrefix, err := c.br.ReadLine()
		if err != nil {
			if err == io.EOF {
				return "", chunkErr("unexpected end of body")
			}
			return "", chunkErr("%v", err)
		}
		line = append(line, part...)
		if len(line) > 4096 {
			return "", chunkErr("header line too long")
		}
		if !isPrefix {
			return string(line), nil
		}
	}
}

func (c *chunkReader) Read(b []byte) (int, error) {
	for c.left == 0 {
		if c.eof {
			return 0, io.EOF
		}
		if err := c.nextChunk(); err != nil {
			return 0, err
		}
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.br.Read(b)
	c.left -= int64(n)
	if c.chunkSHA != nil {
		c.chunkSHA.Write(b[:n])
	}
	if err == io.EOF {
		return n, chunkErr("body ends inside a chunk")
	}
	if err != nil {
		return n, chunkErr("%v", err)
	}
	if c.left == 0 {
		if e := c.endChunk(); e != nil {
			return n, e
		}
	}
	return n, nil
}

// nextChunk reads a chunk header; a zero-length chunk ends the body (trailers follow).
func (c *chunkReader) nextChunk() *APIError {
	line, e := c.readLine()
	if e != nil {
		return e
	}
	sizeStr, ext, _ := strings.Cut(line, ";")
	size, err := strconv.ParseInt(strings.TrimSpace(sizeStr), 16, 64)
	if err != nil || size < 0 {
		return chunkErr("bad chunk size %q", sizeStr)
	}
	c.chunkSig = ""
	if c.signed {
		sig, ok := strings.CutPrefix(strings.TrimSpace(ext), "chunk-signature=")
		if !ok || len(sig) != 64 {
			return chunkErr("chunk without chunk-signature")
		}
		c.chunkSig = sig
		c.chunkSHA = sha256.New()
	}
	if size > 0 {
		c.left = size
		return nil
	}
	// Final chunk.
	if c.signed {
		if e := c.verifyChunk(emptySHA256); e != nil {
			return e
		}
	}
	c.eof = true
	return c.readTrailers()
}

func (c *chunkReader) endChunk() *APIError {
	if c.signed {
		if e := c.verifyChunk(hex.EncodeToString(c.chunkSHA.Sum(nil))); e != nil {
			return e
		}
	}
	line, e := c.readLine()
	if e != nil {
		return e
	}
	if line != "" {
		return chunkErr("chunk data not followed by CRLF")
	}
	return nil
}

func (c *chunkReader) verifyChunk(dataSHA string) *APIError {
	sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + c.amzDate + "\n" + c.scope + "\n" + c.prevSig + "\n" + emptySHA256 + "\n" + dataSHA
	want := hex.EncodeToString(hmacSHA256(c.key, sts))
	if subtle.ConstantTimeCompare([]byte(want), []byte(c.chunkSig)) != 1 {
		return errSignature("chunk signature does not match")
	}
	c.prevSig = want
	return nil
}

func (c *chunkReader) readTrailers() *APIError {
	c.trailers = map[string]string{}
	var signedPart bytes.Buffer
	trailerSig := ""
	signedTrailer := c.signed && c.trailer
	for {
		line, err := c.br.ReadString('\n')
		if err != nil && err != io.EOF {
			return chunkErr("%v", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			// A blank line ends the trailers. minio-go ends each trailer with "\n" and puts "\r\n"
			// before x-amz-trailer-signature, so with signed trailers only the blank line after
			// the signature is the end.
			if signedTrailer && trailerSig == "" && len(c.trailers) > 0 && err == nil {
				continue
			}
			break
		}
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			return chunkErr("malformed trailer %q", line)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		val = strings.TrimSpace(val)
		if name == "x-amz-trailer-signature" {
			trailerSig = val
		} else {
			if !c.trailer {
				return chunkErr("unexpected trailer %q", name)
			}
			c.trailers[name] = val
			signedPart.WriteString(name + ":" + val + "\n")
		}
		if err == io.EOF {
			break
		}
	}
	for _, d := range c.declared {
		if _, ok := c.trailers[d]; !ok {
			return chunkErr("declared trailer %s is missing", d)
		}
	}
	for name := range c.trailers {
		found := false
		for _, d := range c.declared {
			found = found || d == name
		}
		if !found {
			return chunkErr("trailer %s was not declared in x-amz-trailer", name)
		}
	}
	if c.signed && c.trailer {
		sts := "AWS4-HMAC-SHA256-TRAILER\n" + c.amzDate + "\n" + c.scope + "\n" + c.prevSig + "\n" + sha256Hex(signedPart.String())
		want := hex.EncodeToString(hmacSHA256(c.key, sts))
		if subtle.ConstantTimeCompare([]byte(want), []byte(trailerSig)) != 1 {
			return errSignature("trailer signature does not match")
		}
	}
	return nil
}

// sumFor computes the base64 checksum of data with a named algorithm (tests and diagnostics).
func (*payload) sumFor(alg string, data []byte) string {
	h := checksumAlgorithms[alg]()
	h.Write(data)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}
