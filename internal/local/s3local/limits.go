package s3local

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Limits closes the doors a bad or broken client could hold open. The zero value gives the
// defaults noted on each field.
type Limits struct {
	// HeaderTimeout bounds reading a request's headers; default 10s.
	HeaderTimeout time.Duration
	// BodyTimeout is the progress deadline of a request body and of a response: every read of the
	// body (and every write of the answer) must make progress within it, or the connection is cut.
	// A client declaring Content-Length 10 and sending nothing is answered or dropped after it.
	// Default 30s. Large uploads are not limited in total time, only in stalls.
	BodyTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long; default 60s.
	IdleTimeout time.Duration
	// MaxRequests is the number of requests served at once; a request beyond it is answered at
	// once with 503 SlowDown (clients retry). Default 1024.
	MaxRequests int
	// AllowSigV2 accepts AWS Signature Version 2 (Authorization "AWS key:sig" and presigned
	// ?AWSAccessKeyId=...&Signature=...) for old clients. Off by default: V2 signs no payload hash,
	// so a changed body goes unnoticed. V2 presigned URLs expire within MaxPresignV2 (7 days, as V4).
	AllowSigV2 bool
	// MultipartMaxAge expires multipart uploads initiated longer ago than this and frees their
	// staged parts (clients that died mid-upload); default 24h. Checked every MultipartMaxAge/4
	// (at most hourly, at least every second).
	MultipartMaxAge time.Duration
}

// maxPresignV2 is the longest validity of a V2 presigned URL (V4's maximum).
const maxPresignV2 = 7 * 24 * time.Hour

func (l *Limits) setDefaults() {
	if l.HeaderTimeout <= 0 {
		l.HeaderTimeout = 10 * time.Second
	}
	if l.BodyTimeout <= 0 {
		l.BodyTimeout = 30 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 60 * time.Second
	}
	if l.MaxRequests <= 0 {
		l.MaxRequests = 1024
	}
	if l.MultipartMaxAge <= 0 {
		l.MultipartMaxAge = 24 * time.Hour
	}
}

// httpServer is the http.Server Start serves h with: headers within HeaderTimeout, then a first
// body/response deadline that ServeHTTP extends on every read and write (progressReader,
// progressWriter).
func (l Limits) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.HeaderTimeout,
		ReadTimeout:       l.HeaderTimeout + l.BodyTimeout,
		WriteTimeout:      l.HeaderTimeout + l.BodyTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
}

// progressReader extends the connection's read deadline by timeout before every read of the body:
// a body that stops arriving fails its read after timeout, however large the body is.
type progressReader struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	failed  bool // a read failed other than at the end: nothing more will come
}

func (p *progressReader) Read(b []byte) (int, error) {
	_ = p.rc.SetReadDeadline(time.Now().Add(p.timeout)) // ErrNotSupported outside a real server
	n, err := p.ReadCloser.Read(b)
	if err != nil && err != io.EOF {
		p.failed = true
	}
	return n, err
}

// progressWriter extends the connection's write deadline by timeout before every write: a client
// that stops reading the answer is cut off after timeout; a slow but moving download is not.
type progressWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (p *progressWriter) WriteHeader(code int) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.timeout))
	p.ResponseWriter.WriteHeader(code)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.timeout))
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// acquire takes one of the MaxRequests slots; false when all are taken.
func (s *Server) acquire() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Server) release() { <-s.slots }

// sweepInterval is how often abandoned multipart uploads are looked for.
func (l Limits) sweepInterval() time.Duration {
	return min(max(l.MultipartMaxAge/4, time.Second), time.Hour)
}

// ExpireUploads removes the multipart uploads initiated more than MultipartMaxAge ago, with their
// staged parts, and returns how many it removed. The server runs it every sweepInterval.
func (s *Server) ExpireUploads() (int, error) {
	root := filepath.Join(s.store.dir, "uploads")
	ents, err := os.ReadDir(root)
	if err != nil {
		return 0, err
	}
	cutoff := s.now().Add(-s.opts.MultipartMaxAge)
	n := 0
	for _, e := range ents {
		if !e.IsDir() || !validUploadID(e.Name()) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		var u uploadRecord
		raw, err := os.ReadFile(filepath.Join(dir, "upload.json"))
		if err == nil {
			err = json.Unmarshal(raw, &u)
		}
		if err != nil {
			// A record that cannot be read: judge by the directory's age (a crash between mkdir and
			// the atomic write leaves such a directory).
			fi, serr := e.Info()
			if serr != nil {
				continue
			}
			u.Initiated = fi.ModTime()
		}
		if u.Initiated.After(cutoff) {
			continue
		}
		s.upMu.Lock() // not while a part is being renamed in or the upload completed
		err = os.RemoveAll(dir)
		s.upMu.Unlock()
		if err != nil {
			return n, err
		}
		n++
		s.logf("expired multipart upload %s of %s/%s (initiated %s, older than %s)", e.Name(), u.Bucket, u.Key, u.Initiated.Format(time.RFC3339), s.opts.MultipartMaxAge)
	}
	return n, nil
}

func (s *Server) expireLoop() {
	defer close(s.expireDone)
	t := time.NewTicker(s.opts.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if _, err := s.ExpireUploads(); err != nil {
				s.logf("expiring multipart uploads: %v", err)
			}
		}
	}
}
