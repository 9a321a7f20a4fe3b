// Package local is what stands in for cloud services on one machine: the stack of `hpa up`
// (an embedded NATS JetStream server, natsembed, and an S3-compatible server whose uploads are
// announced on the events stream, s3local), the endpoints.json that points clients at it, the
// standalone S3 server of `hpa s3local`, and `hpa demo` (a synthetic plate uploaded through the
// S3 API and its labels compared with the truth).
//
// The service that runs on the stack (the inference consumer with a model runtime) is handed in
// by the command (Factory), so this package imports no model runtime.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/local/natsembed"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/objstore"
)

// StackOptions configure Start.
type StackOptions struct {
	// DataDir holds the JetStream store (nats/), the S3 objects (s3/) and credentials.json.
	DataDir string
	// S3Addr is the listen address of the S3 API (port 0: a free port).
	S3Addr string
	// NATSPort is the client port of the embedded NATS server (0: a free port).
	NATSPort int
	// Bucket is created at start; Region is what the S3 server reports.
	Bucket, Region string
	// AccessKey and SecretKey are the S3 credentials; both empty: generated once and kept in
	// <DataDir>/credentials.json.
	AccessKey, SecretKey string
	// EventsStream is the stream uploads are announced on (default bus.EventsStream), capturing
	// <bus.EventsSubjectPrefix>.>.
	EventsStream string
	Log          *slog.Logger
	// S3Limits are the S3 server's timeouts, request bound, Signature V2 and multipart expiry
	// (config s3local.*; zero: defaults).
	S3Limits s3local.Limits
}

// Stack is a running embedded NATS JetStream server and S3 server.
type Stack struct {
	NATS  *natsembed.Server
	Conn  *nats.Conn
	JS    jetstream.JetStream
	S3    *s3local.Server
	Store *objstore.Bucket
	// Endpoints has the S3 and NATS fields filled (prefixes and metrics come from the service).
	Endpoints Endpoints
	// EventsSubjects are the subjects the events stream captures.
	EventsSubjects []string
}

// ErrKeyPair is returned by Start when only one of the S3 keys is given.
var ErrKeyPair = errors.New("up: --access-key and --secret-key go together")

// Start starts the stack; Close stops it. Started again on the same data directory it keeps its
// credentials, objects and streams.
func Start(ctx context.Context, o StackOptions) (st *Stack, err error) {
	if o.DataDir == "" {
		return nil, errors.New("up: --data-dir must not be empty")
	}
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("up: data directory: %w", err)
	}
	ak, sk, err := credentialsOf(o)
	if err != nil {
		return nil, err
	}
	if o.EventsStream == "" {
		o.EventsStream = bus.EventsStream
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	st = &Stack{EventsSubjects: []string{bus.EventsSubjectPrefix + ".>"}}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	if st.NATS, err = natsembed.Start(natsembed.Options{DataDir: filepath.Join(o.DataDir, "nats"), Port: o.NATSPort, JetStream: true}); err != nil {
		return st, fmt.Errorf("up: %w", err)
	}
	if st.Conn, err = bus.Connect(bus.Config{URL: st.NATS.ClientURL()}, "hpa-up", o.Log); err != nil {
		return st, fmt.Errorf("up: connect to the embedded NATS server: %w", err)
	}
	if st.JS, err = jetstream.New(st.Conn); err != nil {
		return st, fmt.Errorf("up: %w", err)
	}
	if _, err = bus.EnsureEventsStream(ctx, st.JS, bus.EventsStreamConfig{Name: o.EventsStream, Subjects: st.EventsSubjects,
		MustCapture: bus.EventsSubjectPrefix + ".>", Storage: jetstream.FileStorage}); err != nil {
		return st, fmt.Errorf("up: %w", err)
	}
	st.S3, err = s3local.New(s3local.Options{Dir: filepath.Join(o.DataDir, "s3"), Addr: o.S3Addr, Region: o.Region,
		AccessKey: ak, SecretKey: sk, Buckets: []string{o.Bucket}, Publisher: bus.JetStreamPublisher{JS: st.JS},
		EventSubjectPrefix: bus.EventsSubjectPrefix, Logger: o.Log, Limits: o.S3Limits})
	if err != nil {
		return st, fmt.Errorf("up: %w", err)
	}
	if err = st.S3.Start(); err != nil {
		st.S3 = nil
		return st, fmt.Errorf("up: %w", err)
	}
	st.Endpoints = Endpoints{S3Endpoint: st.S3.Endpoint(), Region: o.Region, Bucket: o.Bucket, AccessKey: ak, SecretKey: sk,
		NATSURL: st.NATS.ClientURL()}
	if st.Store, err = objstore.Open(ctx, objstore.Config{Endpoint: st.S3.Endpoint(), Region: o.Region, PathStyle: true,
		Bucket: o.Bucket, AccessKey: ak, SecretKey: sk}); err != nil {
		return st, fmt.Errorf("up: %w", err)
	}
	return st, nil
}

// Close stops the S3 server (pending events stay in its journal), the connection and NATS.
func (s *Stack) Close() {
	if s.S3 != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.S3.Close(cctx)
		cancel()
	}
	if s.Conn != nil {
		s.Conn.Close()
	}
	if s.NATS != nil {
		s.NATS.Shutdown()
	}
}

// credentialsOf returns the S3 keys: the given ones, or the ones kept in the data directory
// (generated on first start).
func credentialsOf(o StackOptions) (ak, sk string, err error) {
	if o.AccessKey != "" || o.SecretKey != "" {
		if o.AccessKey == "" || o.SecretKey == "" {
			return "", "", ErrKeyPair
		}
		return o.AccessKey, o.SecretKey, nil
	}
	path := filepath.Join(o.DataDir, "credentials.json")
	var c struct {
		AccessKey string `json:"access_key"`
		SecretKey string `json:"secret_key"`
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &c); err != nil || c.AccessKey == "" || c.SecretKey == "" {
			return "", "", fmt.Errorf("up: %s is not a credentials file: %v", path, err)
		}
		return c.AccessKey, c.SecretKey, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", "", fmt.Errorf("up: %w", err)
	}
	rnd := func(n int) string {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}
	c.AccessKey, c.SecretKey = "HPA"+rnd(8), rnd(20)
	b, _ = json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return "", "", fmt.Errorf("up: %w", err)
	}
	return c.AccessKey, c.SecretKey, nil
}
