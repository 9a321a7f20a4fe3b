// Package goaws runs a real SQS API server (github.com/Admiral-Piett/goaws) as a child process for
// the tests and benchmarks of the S3 -> NATS bridge, behind a small adapter for the protocol
// today's SDK speaks.
//
// goaws v0.4.5 implements the SQS Query protocol (form-encoded Action=...; XML responses); recent
// aws-sdk-go-v2/service/sqs versions (v1.53 here) speak only the AWS JSON 1.0 protocol
// (X-Amz-Target: AmazonSQS.<Action>). The adapter (adapter.go) translates the calls the bridge and
// its tests make (CreateQueue, GetQueueUrl, GetQueueAttributes, SetQueueAttributes, SendMessage,
// SendMessageBatch, ReceiveMessage, DeleteMessage, DeleteMessageBatch, ChangeMessageVisibility,
// ChangeMessageVisibilityBatch, PurgeQueue) field by field; the queue semantics (visibility,
// long polling, receive counts, redrive to a dead-letter queue) are goaws's own.
//
// The binary is not vendored: scripts/setup.sh builds it into $HPA_CACHE_DIR/bin/goaws (default
// <repo>/.cache/bin/goaws); HPA_GOAWS_BIN overrides the path. When it is missing, Start skips the
// test on a developer machine and fails it in CI (env CI set).
package goaws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Version is the goaws module version scripts/setup.sh builds.
const Version = "v0.4.5"

// EnvBinary overrides the goaws binary path.
const EnvBinary = "HPA_GOAWS_BIN"

// AccountID and Region are the harness server's.
const (
	AccountID = "100010001000"
	Region    = "us-east-1"
)

// ErrNoBinary is wrapped when no goaws binary is installed.
var ErrNoBinary = errors.New("goaws binary not installed (run scripts/setup.sh, or set " + EnvBinary + ")")

// FindBinary returns $HPA_GOAWS_BIN when set, else <repo>/.cache/bin/goaws (HPA_CACHE_DIR
// honoured like scripts/setup.sh).
func FindBinary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", errors.Join(ErrNoBinary, err)
		}
		return p, nil
	}
	cache := os.Getenv("HPA_CACHE_DIR")
	if cache == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(root, ".cache")
	}
	p := filepath.Join(cache, "bin", "goaws")
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return "", fmt.Errorf("%s: %w", p, ErrNoBinary)
	}
	return p, nil
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
			return "", errors.New("goaws harness: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Queue is a queue created at start.
type Queue struct {
	Name string
	// VisibilityTimeout in seconds (0: 30).
	VisibilityTimeout int
	// DeadLetter, when set, is the queue messages move to after MaxReceiveCount receives (SQS
	// redrive); the dead-letter queue must be listed too.
	DeadLetter      string
	MaxReceiveCount int
}

// Server is a running goaws with the JSON adapter in front.
type Server struct {
	cmd     *exec.Cmd
	direct  string // goaws (Query protocol)
	adapter *httptest.Server
	mu      sync.Mutex
	out     strings.Builder
}

// Start runs goaws with the queues for the test (stopped at its end). Without a binary the test
// is skipped, or fails when env CI is set.
func Start(t testing.TB, queues ...Queue) *Server {
	t.Helper()
	bin, err := FindBinary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("goaws harness: %v", err)
		}
		t.Skipf("goaws harness: %v", err)
	}
	s, err := StartBinary(bin, t.TempDir(), queues...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// StartBinary runs goaws from bin with its config in dir (benchmarks and tools; Start for tests).
func StartBinary(bin, dir string, queues ...Queue) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "Local:\n  Host: 127.0.0.1\n  Port: %d\n  Region: %s\n  AccountId: %q\n  LogToFile: false\n  EnableDuplicates: false\n", port, Region, AccountID)
	cfg.WriteString("  QueueAttributeDefaults:\n    VisibilityTimeout: 30\n    ReceiveMessageWaitTimeSeconds: 0\n    MaximumMessageSize: 262144\n")
	cfg.WriteString("  Queues:\n")
	for _, q := range queues {
		fmt.Fprintf(&cfg, "    - Name: %s\n", q.Name)
		if q.VisibilityTimeout > 0 {
			fmt.Fprintf(&cfg, "      VisibilityTimeout: %d\n", q.VisibilityTimeout)
		}
		if q.DeadLetter != "" {
			fmt.Fprintf(&cfg, "      RedrivePolicy: '{\"maxReceiveCount\": %d, \"deadLetterTargetArn\": \"arn:aws:sqs:%s:%s:%s\"}'\n",
				max(q.MaxReceiveCount, 1), Region, AccountID, q.DeadLetter)
		}
	}
	cfg.WriteString("  Topics: []\n  RandomLatency:\n    Min: 0\n    Max: 0\n")
	path := filepath.Join(dir, "goaws.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		return nil, err
	}
	s := &Server{direct: fmt.Sprintf("http://127.0.0.1:%d", port)}
	s.cmd = exec.Command(bin, "-config", path, "Local")
	s.cmd.Stdout, s.cmd.Stderr = s, s
	setSysProcAttr(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("goaws harness: start %s: %w", bin, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("goaws harness: not listening on %d after 20s\n%s", port, s.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	a := &adapter{target: s.direct, client: &http.Client{Timeout: 60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	s.adapter = httptest.NewServer(a)
	// goaws's config has no per-queue visibility timeout: set it through the API.
	for _, q := range queues {
		if q.VisibilityTimeout > 0 {
			f := url.Values{"Action": {"SetQueueAttributes"}, "QueueUrl": {s.QueueURL(q.Name)},
				"Attribute.1.Name": {"VisibilityTimeout"}, "Attribute.1.Value": {strconv.Itoa(q.VisibilityTimeout)}}
			if _, code, msg, err := a.call(f); err != nil || code != "" {
				s.Close()
				return nil, fmt.Errorf("goaws harness: visibility timeout of %s: %v %s %s", q.Name, err, code, msg)
			}
		}
	}
	return s, nil
}

// Write collects goaws's output (for error messages).
func (s *Server) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out.Len() < 1<<20 {
		s.out.Write(b)
	}
	return len(b), nil
}

// Output is what goaws printed so far.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// Endpoint is the SQS endpoint for aws-sdk-go-v2 (the JSON adapter).
func (s *Server) Endpoint() string { return s.adapter.URL }

// QueueURL is the URL of a queue created at start.
func (s *Server) QueueURL(name string) string {
	return s.direct + "/" + AccountID + "/" + name
}

// Client is an SQS client of the server.
func (s *Server) Client() *sqs.Client {
	return sqs.New(sqs.Options{Region: Region, BaseEndpoint: aws.String(s.Endpoint()),
		Credentials: credentials.NewStaticCredentialsProvider("goaws", "goaws", "")})
}

// Count returns the visible and in-flight messages of a queue (goaws reports all messages as
// ApproximateNumberOfMessages; visible is that minus the in-flight ones).
func (s *Server) Count(ctx context.Context, queueURL string) (visible, inflight int, err error) {
	out, err := s.Client().GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queueURL),
		AttributeNames: []sqstypesName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}})
	if err != nil {
		return 0, 0, err
	}
	total, _ := strconv.Atoi(out.Attributes["ApproximateNumberOfMessages"])
	inflight, _ = strconv.Atoi(out.Attributes["ApproximateNumberOfMessagesNotVisible"])
	return total - inflight, inflight, nil
}

// Close stops the adapter and goaws.
func (s *Server) Close() {
	if s.adapter != nil {
		s.adapter.Close()
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
