// Package minio runs a real MinIO server as a child process for integration tests, with its
// native NATS (JetStream) bucket notifications pointed at a given NATS server and subject.
//
// The binary is not vendored: scripts/setup.sh builds it into $HPA_CACHE_DIR/bin/minio
// (default <repo>/.cache/bin/minio); HPA_MINIO_BIN overrides the path. When it is missing, Start
// skips the test on a developer machine and fails it in CI (env CI set), so CI never silently
// loses the integration coverage.
//
// MinIO's NATS target with JetStream on publishes through JetStream, which needs a stream that
// captures the subject before MinIO starts; Start checks that one exists and says so otherwise.
// After Start, create a bucket and point its notifications at the target:
//
//	srv := minio.Start(t, natsURL, "s3.events.minio")
//	srv.CreateBucket(t, "hpa")
//	srv.NotifyNATS(t, "hpa", "incoming/", "s3:ObjectCreated:*")
//
// Each event is then one JetStream message in MinIO's format: {"EventName","Key":"<bucket>/<key>",
// "Records":[{"eventVersion":"2.0",...,"s3":{"object":{"key":"<URL-encoded key>"}}}]}.
package minio

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Version is the MinIO module version scripts/setup.sh installs and this harness is tested with.
const Version = "v0.0.0-20260212201848-7aac2a2c5b7c"

// QueueARN is the notification target ARN of the NATS target MinIO configures from the
// MINIO_NOTIFY_NATS_*_PRIMARY environment (target id PRIMARY, empty region).
const QueueARN = "arn:minio:sqs::PRIMARY:nats"

// notifyWait bounds how long NotifyNATSE waits for MinIO to register its NATS target.
const notifyWait = 20 * time.Second

// EnvBinary overrides the MinIO binary path.
const EnvBinary = "HPA_MINIO_BIN"

// Options configures StartServer. NATSURL and Subject are required.
type Options struct {
	// Binary is the minio executable; empty: FindBinary.
	Binary string
	// NATSURL is the NATS server ("nats://127.0.0.1:4222" or "127.0.0.1:4222").
	NATSURL string
	// Subject is the subject MinIO publishes bucket events to; a JetStream stream must capture it.
	Subject string
	// NoJetStream publishes with core NATS instead of JetStream (no stream needed, no delivery
	// guarantee); off by default.
	NoJetStream bool
	// QueueDir, when set, makes MinIO persist events there and retry them until JetStream
	// acknowledges them (MINIO_NOTIFY_NATS_QUEUE_DIR_PRIMARY). Empty: events are sent directly and
	// the events of uploads made while NATS is unreachable are lost (checked by
	// consumers/inference's TestMinIOQueueDirSurvivesNATSOutage) -- production MinIO feeding the
	// inference service should set a queue dir.
	QueueDir string
	// Dir is the data directory (created when missing). Required.
	Dir string
	// AccessKey and SecretKey are the root credentials; empty: random ones.
	AccessKey, SecretKey string
	// Region is MinIO's site region; empty: us-east-1.
	Region string
	// StartTimeout bounds the wait for /minio/health/live; 0: 60s.
	StartTimeout time.Duration
}

// Error is a failure to find, start or talk to MinIO. Op says which step, Reason what went wrong;
// Log holds the tail of the server's output when the process was involved.
type Error struct {
	Op     string // "binary", "options", "stream", "start", "bucket", "notify"
	Reason string
	Err    error
	Log    string
}

func (e *Error) Error() string {
	s := "minio harness: " + e.Op + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.Log != "" {
		s += "\n--- minio output (tail) ---\n" + e.Log
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// ErrNoBinary is wrapped by the Error FindBinary returns when no MinIO binary is installed.
var ErrNoBinary = errors.New("minio binary not installed (run scripts/setup.sh, or set " + EnvBinary + ")")

// FindBinary returns $HPA_MINIO_BIN when set (it must exist), else <repo>/.cache/bin/minio where
// <repo> is the nearest directory above the working directory holding go.mod (honouring
// HPA_CACHE_DIR like scripts/setup.sh). A missing binary gives an *Error wrapping ErrNoBinary.
func FindBinary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if err := executable(p); err != nil {
			return "", &Error{Op: "binary", Reason: EnvBinary + "=" + p, Err: errors.Join(ErrNoBinary, err)}
		}
		return p, nil
	}
	cache := os.Getenv("HPA_CACHE_DIR")
	if cache == "" {
		root, err := repoRoot()
		if err != nil {
			return "", &Error{Op: "binary", Reason: "no go.mod above the working directory", Err: err}
		}
		cache = filepath.Join(root, ".cache")
	}
	p := filepath.Join(cache, "bin", "minio")
	if err := executable(p); err != nil {
		return "", &Error{Op: "binary", Reason: p, Err: errors.Join(ErrNoBinary, err)}
	}
	return p, nil
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found")
		}
		dir = parent
	}
}

// BinaryVersion reads the Go module version a minio binary was built from ("(devel)" for a
// source checkout build).
func BinaryVersion(path string) (string, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return "", &Error{Op: "binary", Reason: "no Go build info in " + path, Err: err}
	}
	if bi.Main.Path != "github.com/minio/minio" {
		return "", &Error{Op: "binary", Reason: fmt.Sprintf("%s is %q, not github.com/minio/minio", path, bi.Main.Path)}
	}
	return bi.Main.Version, nil
}

// Server is a running MinIO process.
type Server struct {
	// Endpoint is the S3 endpoint ("http://127.0.0.1:PORT"); use path-style addressing.
	Endpoint  string
	AccessKey string
	SecretKey string
	Region    string
	// Dir is the data directory, Binary the executable, Version its module version.
	Dir     string
	Binary  string
	Version string

	opts   Options
	env    []string
	addr   string
	cmd    *exec.Cmd
	out    *tailBuffer
	exited chan struct{}
	waitEr error
	stop   *sync.Once
}

// Start starts MinIO for the test with its NATS target publishing to subject through JetStream
// on natsURL, data in a temporary directory, and stops it when the test ends. A missing binary
// skips the test, unless env CI is set: then the test fails.
func Start(t testing.TB, natsURL, subject string) *Server {
	t.Helper()
	return StartOptions(t, Options{NATSURL: natsURL, Subject: subject})
}

// StartOptions is Start with all options; an empty Dir is a temporary directory.
func StartOptions(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Binary == "" {
		bin, err := FindBinary()
		if err != nil {
			if errors.Is(err, ErrNoBinary) && os.Getenv("CI") == "" {
				t.Skipf("skipping the MinIO integration test: %v", err)
			}
			t.Fatal(err)
		}
		o.Binary = bin
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := StartServer(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping minio: %v", err)
		}
	})
	return s
}

// StartServer starts MinIO and waits until it is live. Stop it with Stop.
func StartServer(o Options) (*Server, error) {
	if o.NATSURL == "" || o.Subject == "" || o.Dir == "" {
		return nil, &Error{Op: "options", Reason: "NATSURL, Subject and Dir are required"}
	}
	if o.Binary == "" {
		bin, err := FindBinary()
		if err != nil {
			return nil, err
		}
		o.Binary = bin
	}
	version, err := BinaryVersion(o.Binary)
	if err != nil {
		return nil, err
	}
	natsAddr := strings.TrimPrefix(o.NATSURL, "nats://")
	if !o.NoJetStream {
		if err := checkStream(o.NATSURL, o.Subject); err != nil {
			return nil, err
		}
	}
	if o.AccessKey == "" {
		o.AccessKey = "hpa" + randHex(6)
	}
	if o.SecretKey == "" {
		o.SecretKey = randHex(16)
	}
	if len(o.AccessKey) < 3 || len(o.SecretKey) < 8 {
		return nil, &Error{Op: "options", Reason: "MinIO needs an access key of >= 3 and a secret key of >= 8 characters"}
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 60 * time.Second
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, &Error{Op: "options", Reason: "data dir " + o.Dir, Err: err}
	}
	js := "on"
	if o.NoJetStream {
		js = "off"
	}
	env := []string{
		"MINIO_ROOT_USER=" + o.AccessKey,
		"MINIO_ROOT_PASSWORD=" + o.SecretKey,
		"MINIO_REGION=" + o.Region,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_NOTIFY_NATS_ENABLE_PRIMARY=on",
		"MINIO_NOTIFY_NATS_ADDRESS_PRIMARY=" + natsAddr,
		"MINIO_NOTIFY_NATS_SUBJECT_PRIMARY=" + o.Subject,
		"MINIO_NOTIFY_NATS_JETSTREAM_PRIMARY=" + js,
	}
	if o.QueueDir != "" {
		env = append(env, "MINIO_NOTIFY_NATS_QUEUE_DIR_PRIMARY="+o.QueueDir)
	}
	// The child sees our environment without any MINIO_* settings of the developer's shell.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") && !strings.HasPrefix(kv, "MC_") {
			env = append(env, kv)
		}
	}
	// Free ports can be taken between the probe and MinIO's bind: retry a few times.
	var lastErr error
	for range 3 {
		s, err := start(o, env, version)
		if err == nil {
			return s, nil
		}
		lastErr = err
		var he *Error
		if !errors.As(err, &he) || !strings.Contains(he.Log, "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func start(o Options, env []string, version string) (*Server, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, &Error{Op: "start", Reason: "no free port", Err: err}
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	s := &Server{Endpoint: "http://" + addr, AccessKey: o.AccessKey, SecretKey: o.SecretKey, Region: o.Region,
		Dir: o.Dir, Binary: o.Binary, Version: version, opts: o, env: env, addr: addr, out: &tailBuffer{max: 64 << 10}}
	if err := s.spawn(); err != nil {
		return nil, err
	}
	return s, nil
}

// spawn starts the process on s.addr and waits until it is live.
func (s *Server) spawn() error {
	// The console listens on a fresh free port each time; only the S3 address is kept.
	ports, err := freePorts(1)
	if err != nil {
		return &Error{Op: "start", Reason: "no free port", Err: err}
	}
	cmd := exec.Command(s.Binary, "server", s.Dir, "--address", s.addr,
		"--console-address", "127.0.0.1:"+strconv.Itoa(ports[0]), "--quiet")
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = s.out, s.out
	setSysProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return &Error{Op: "start", Reason: "exec " + s.Binary, Err: err}
	}
	exited := make(chan struct{})
	s.cmd, s.exited, s.stop = cmd, exited, &sync.Once{}
	go func() {
		s.waitEr = cmd.Wait()
		close(exited)
	}()
	if err := s.waitLive(s.opts.StartTimeout); err != nil {
		_ = s.Stop()
		return &Error{Op: "start", Reason: "minio at " + s.addr + " did not come up", Err: err, Log: s.out.String()}
	}
	return nil
}

// Restart stops the server (SIGTERM, like Stop) and starts it again on the same address, data
// directory and credentials, so clients and the notification configuration carry on; events
// MinIO had not delivered stay in its queue dir, when one is set. Not safe to call concurrently
// with Stop or Restart.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Resume()
}

// Resume starts a server stopped with Stop again on the same address, data directory and
// credentials. Not safe to call concurrently with Stop, Restart or Resume.
func (s *Server) Resume() error {
	select {
	case <-s.exited:
	default:
		return &Error{Op: "start", Reason: "minio at " + s.addr + " is still running"}
	}
	var err error
	for range 20 { // the old listener may linger for a moment
		if err = s.spawn(); err == nil {
			return nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func (s *Server) waitLive(timeout time.Duration) error {
	cl := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	exited := s.exited
	for {
		select {
		case <-exited:
			return fmt.Errorf("process exited: %v", s.waitEr)
		default:
		}
		resp, err := cl.Get(s.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			// Live answers 200 before the object layer is up; MinIO marks that state with
			// x-minio-server-status: offline, and S3 calls get 503 XMinioServerNotInitialized.
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Minio-Server-Status") != "offline" {
				return nil
			}
			err = fmt.Errorf("health: HTTP %d, server status %q", resp.StatusCode, resp.Header.Get("X-Minio-Server-Status"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server: SIGTERM, then SIGKILL after 10 s. It is idempotent.
func (s *Server) Stop() error {
	var err error
	s.stop.Do(func() {
		select {
		case <-s.exited:
			return
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
			err = &Error{Op: "stop", Reason: "minio ignored SIGTERM for 10s; killed", Log: s.out.String()}
		}
	})
	return err
}

// Log returns the tail of the server's output (up to 64 KiB).
func (s *Server) Log() string { return s.out.String() }

// Client returns an S3 client for the server (static root credentials, path-style).
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// CreateBucket creates a bucket (an existing one of ours is fine).
func (s *Server) CreateBucket(t testing.TB, bucket string) {
	t.Helper()
	if err := s.CreateBucketE(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
}

// CreateBucketE is CreateBucket returning the error.
func (s *Server) CreateBucketE(ctx context.Context, bucket string) error {
	_, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return &Error{Op: "bucket", Reason: "create " + bucket, Err: err}
	}
	return nil
}

// NotifyNATS points the bucket's notifications for events (e.g. "s3:ObjectCreated:*") of keys
// below prefix (empty: all keys) at the NATS target. It replaces the bucket's configuration.
func (s *Server) NotifyNATS(t testing.TB, bucket, prefix string, events ...string) {
	t.Helper()
	if err := s.NotifyNATSE(context.Background(), bucket, prefix, events...); err != nil {
		t.Fatal(err)
	}
}

// NotifyNATSE is NotifyNATS returning the error.
func (s *Server) NotifyNATSE(ctx context.Context, bucket, prefix string, events ...string) error {
	if len(events) == 0 {
		return &Error{Op: "notify", Reason: "no event types given"}
	}
	qc := types.QueueConfiguration{QueueArn: aws.String(QueueARN), Id: aws.String("hpa-nats")}
	for _, e := range events {
		qc.Events = append(qc.Events, types.Event(e))
	}
	if prefix != "" {
		qc.Filter = &types.NotificationConfigurationFilter{Key: &types.S3KeyFilter{FilterRules: []types.FilterRule{
			{Name: types.FilterRuleNamePrefix, Value: aws.String(prefix)}}}}
	}
	in := &s3.PutBucketNotificationConfigurationInput{
		Bucket:                    aws.String(bucket),
		NotificationConfiguration: &types.NotificationConfiguration{QueueConfigurations: []types.QueueConfiguration{qc}},
	}
	// MinIO registers its notification targets in the background after it reports live: until
	// then the ARN is "not well-formed" (InvalidArgument). Retry that for a while.
	cl := s.Client()
	deadline := time.Now().Add(notifyWait)
	var err error
	for {
		_, err = cl.PutBucketNotificationConfiguration(ctx, in)
		var ae smithy.APIError
		if err == nil || !errors.As(err, &ae) || ae.ErrorCode() != "InvalidArgument" || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return &Error{Op: "notify", Reason: "bucket " + bucket, Err: ctx.Err()}
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return &Error{Op: "notify", Reason: "bucket " + bucket + " -> " + QueueARN, Err: err, Log: s.Log()}
	}
	return nil
}

// AwaitNotifications waits until MinIO publishes bucket events again: it puts probe objects
// <probePrefix>hpa-probe-<n> (probePrefix must be inside the notification filter; pick keys
// the code under test ignores) until the event of one arrives on the NATS subject, then deletes
// them. It returns how many probes got no event. MinIO reports live before it has loaded the
// buckets' notification rules: objects written in that window (about 100 ms after a restart
// here) get no event at all, queue dir or not.
func (s *Server) AwaitNotifications(ctx context.Context, bucket, probePrefix string, timeout time.Duration) (lost int, err error) {
	nc, err := nats.Connect(s.opts.NATSURL, nats.Timeout(5*time.Second))
	if err != nil {
		return 0, &Error{Op: "notify", Reason: "connect to " + s.opts.NATSURL, Err: err}
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(s.opts.Subject)
	if err != nil {
		return 0, &Error{Op: "notify", Reason: "subscribe " + s.opts.Subject, Err: err}
	}
	cl := s.Client()
	var probes []string
	defer func() {
		for _, k := range probes {
			_, _ = cl.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(k)})
		}
	}()
	deadline := time.Now().Add(timeout)
	for n := 0; time.Now().Before(deadline); n++ {
		key := fmt.Sprintf("%shpa-probe-%d", probePrefix, n)
		if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: strings.NewReader("probe")}); err != nil {
			return n, &Error{Op: "notify", Reason: "probe " + key, Err: err}
		}
		probes = append(probes, key)
		// Any probe's event will do (a late one proves delivery works as well).
		wait := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(wait) {
			m, err := sub.NextMsg(time.Until(wait))
			if err != nil {
				break
			}
			if bytes.Contains(m.Data, []byte("hpa-probe-")) && bytes.Contains(m.Data, []byte(`"`+bucket+`/`+probePrefix)) {
				return n, nil
			}
		}
	}
	return len(probes), &Error{Op: "notify", Reason: fmt.Sprintf("no event for %d probes under s3://%s/%s within %s", len(probes), bucket, probePrefix, timeout), Log: s.Log()}
}

// checkStream makes sure a JetStream stream captures subject: MinIO's JetStream publisher gets
// no acknowledgement otherwise and drops (or, with a queue dir, endlessly retries) every event.
func checkStream(url, subject string) error {
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		return &Error{Op: "stream", Reason: "connect to " + url, Err: err}
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return &Error{Op: "stream", Reason: "jetstream", Err: err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.StreamNameBySubject(ctx, subject); err != nil {
		return &Error{Op: "stream", Reason: fmt.Sprintf("no JetStream stream captures subject %q on %s; create one before starting MinIO", subject, url), Err: err}
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
