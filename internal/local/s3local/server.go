// Package s3local is an S3-compatible object server over real HTTP, persisting objects under a
// directory and announcing every created object on a message bus (JetStream) with a crash-safe
// write-ahead journal.
//
// It speaks the path-style REST API the AWS SDKs, the aws cli, boto3 and mc use: buckets (create,
// head, list, delete, location), objects (put, get with Range and conditions, head, delete, batch
// delete, copy), ListObjects v1/v2 (prefix, delimiter, continuation token, max-keys, start-after,
// encoding-type=url) and multipart uploads (create, upload part, complete, abort). Requests are
// authenticated with AWS Signature V4 (Authorization header or presigned URL) against one
// access/secret key pair; payloads may be signed (hex SHA-256, verified), UNSIGNED-PAYLOAD, or
// aws-chunked (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER], STREAMING-UNSIGNED-PAYLOAD-TRAILER),
// with chunk and trailer signatures and x-amz-checksum-* values verified. Errors are S3 XML
// error documents.
//
// Events: for every object created (PutObject, CopyObject, CompleteMultipartUpload) the server
// publishes an Amazon-format S3 event (eventVersion 2.1, URL-encoded key) to
// "<EventSubjectPrefix>.<bucket>" with a Nats-Msg-Id, and answers the request only after the bus
// acknowledged it. The order is: stage content, write an fsync'ed intent to the journal, commit
// the object, publish, clear the intent. After a crash, Start republishes pending intents (the
// message id makes a repeat harmless), so no object is ever left without its event. When the bus
// is unavailable the request fails with 503 ServiceUnavailable (clients retry) and a background
// loop keeps retrying the pending event.
//
// Limits (Options.Limits) close the doors of a bad client: headers within HeaderTimeout, every
// body read and answer write making progress within BodyTimeout (a declared body that never comes is
// cut off), idle keep-alives closed, at most MaxRequests requests at once (503 SlowDown beyond),
// Signature V2 refused unless AllowSigV2, and multipart uploads older than MultipartMaxAge expired
// with their staged parts.
package s3local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hpa-plates/hpa/internal/bus"
)

// Options configures a Server.
type Options struct {
	// Dir holds buckets, objects, multipart uploads and the event journal (created when missing).
	Dir string
	// Addr is the listen address; default "127.0.0.1:0" (a free port, see Endpoint).
	Addr string
	// Region is reported by GetBucketLocation and in events; default "us-east-1". Requests signed
	// for any region are accepted (the signature is checked with the region the client used).
	Region string
	// AccessKey and SecretKey are the only credentials accepted. Both are required unless
	// AllowAnonymous is set.
	AccessKey, SecretKey string
	// AllowAnonymous lets unsigned requests through (signed ones are still verified).
	AllowAnonymous bool
	// Buckets are created at start when missing.
	Buckets []string
	// Publisher receives object-created events; nil disables events.
	Publisher bus.Publisher
	// EventSubjectPrefix: events go to "<prefix>.<bucket>"; default bus.EventsSubjectPrefix.
	EventSubjectPrefix string
	// PublishTimeout bounds one publish attempt; default 10s.
	PublishTimeout time.Duration
	// RetryInterval is the period of the background republishing of pending events; default 2s.
	RetryInterval time.Duration
	// MinPartSize is the smallest allowed multipart part except the last; default 5 MiB (as S3).
	MinPartSize int64
	// MaxObjectSize caps a single PUT or part; default 5 GiB (as S3).
	MaxObjectSize int64
	// Middleware, when set, wraps the handler Start serves (fault injection in tests, logging).
	Middleware func(http.Handler) http.Handler
	// Logger receives background errors; default slog.Default().
	Logger *slog.Logger
	// Now is the clock (signature time checks, timestamps); default time.Now.
	Now func() time.Time
	// Limits: timeouts, concurrent requests, Signature V2, multipart expiry.
	Limits
}

// Server is an S3-compatible server. It is an http.Handler; Start also serves it on Addr.
type Server struct {
	opts    Options
	store   *store
	journal *journal
	hostID  string
	upMu    sync.Mutex // serializes multipart bookkeeping

	slots      chan struct{} // one per request being served (Limits.MaxRequests)
	expireDone chan struct{}

	seqMu     sync.Mutex
	lastSeq   uint64
	published atomic.Int64

	mu        sync.Mutex
	ln        net.Listener
	srv       *http.Server
	started   bool
	closed    bool
	stop      chan struct{}
	retryDone chan struct{}
	baseCtx   context.Context
	cancel    context.CancelFunc
}

// ConfigError reports unusable Options.
type ConfigError struct{ Reason string }

func (e *ConfigError) Error() string { return "s3local: options: " + e.Reason }

// New opens (or creates) the store under o.Dir, loads its objects and pending event intents, and
// creates o.Buckets. It does not listen yet: call Start, or use the Server as an http.Handler.
func New(o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, &ConfigError{"Dir is required"}
	}
	if !o.AllowAnonymous && (o.AccessKey == "" || o.SecretKey == "") {
		return nil, &ConfigError{"AccessKey and SecretKey are required (or set AllowAnonymous)"}
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.EventSubjectPrefix == "" {
		o.EventSubjectPrefix = bus.EventsSubjectPrefix
	}
	if strings.ContainsAny(o.EventSubjectPrefix, " \t*>") || strings.HasPrefix(o.EventSubjectPrefix, ".") {
		return nil, &ConfigError{fmt.Sprintf("EventSubjectPrefix %q is not a valid subject prefix", o.EventSubjectPrefix)}
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 10 * time.Second
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 2 * time.Second
	}
	if o.MinPartSize <= 0 {
		o.MinPartSize = 5 << 20
	}
	if o.MaxObjectSize <= 0 {
		o.MaxObjectSize = 5 << 30
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Limits.setDefaults()
	st, err := openStore(o.Dir)
	if err != nil {
		return nil, err
	}
	j, err := openJournal(st.dir + "/journal")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, store: st, journal: j, hostID: newID(16), stop: make(chan struct{}), retryDone: make(chan struct{}),
		slots: make(chan struct{}, o.MaxRequests), expireDone: make(chan struct{})}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	for _, b := range o.Buckets {
		if e := ValidateBucketName(b); e != nil {
			return nil, &ConfigError{fmt.Sprintf("bucket %q: %s", b, e.Message)}
		}
		if !st.hasBucket(b) {
			if e := st.createBucket(b, s.now()); e != nil {
				return nil, e
			}
		}
	}
	return s, nil
}

func (s *Server) now() time.Time { return s.opts.Now() }

func (s *Server) logf(format string, args ...any) {
	s.opts.Logger.Warn(fmt.Sprintf("s3local: "+format, args...))
}

// Start listens on Options.Addr, serves the API, republishes events left pending by an earlier
// run, and starts the background retry loop.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return &ConfigError{"Start called twice or after Close"}
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("s3local: listen on %s: %w", s.opts.Addr, err)
	}
	var h http.Handler = s
	if s.opts.Middleware != nil {
		h = s.opts.Middleware(h)
	}
	s.ln = ln
	s.srv = s.opts.Limits.httpServer(h)
	s.started = true
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logf("serve: %v", err)
		}
	}()
	if _, err := s.republish(s.baseCtx, true); err != nil {
		s.logf("republishing pending events at start: %v (will retry)", err)
	}
	go s.retryLoop()
	if _, err := s.ExpireUploads(); err != nil {
		s.logf("expiring multipart uploads at start: %v", err)
	}
	go s.expireLoop()
	return nil
}

// Endpoint is the base URL clients use ("http://127.0.0.1:PORT"); empty before Start.
func (s *Server) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Close stops the retry loop and shuts the HTTP server down gracefully (in-flight requests finish
// unless ctx ends first). Pending intents stay in the journal for the next Start.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	close(s.stop)
	var err error
	if started {
		err = s.srv.Shutdown(ctx)
		<-s.retryDone
		<-s.expireDone
	}
	s.cancel()
	return err
}
