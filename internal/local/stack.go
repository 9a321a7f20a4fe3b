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
	// DataDir holds the JetStream store (nats/), the S3 objects (s3/) and credentials.json (the S3
	// keys and the NATS user/password, mode 0600).
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
	creds, err := credentialsOf(o)
	if err != nil {
		return nil, err
	}
	ak, sk := creds.AccessKey, creds.SecretKey
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
	// The server refuses clients without the generated user/password: no other local process can
	// forge S3 events or promotions. Every client of the stack connects with them (NATSConfig).
	if st.NATS, err = natsembed.Start(natsembed.Options{DataDir: filepath.Join(o.DataDir, "nats"), Port: o.NATSPort, JetStream: true,
		User: creds.NATSUser, Password: creds.NATSPassword}); err != nil {
		return st, fmt.Errorf("up: %w", err)
	}
	st.Endpoints = Endpoints{NATSURL: st.NATS.ClientURL(), NATSUser: creds.NATSUser, NATSPassword: creds.NATSPassword}
	if st.Conn, err = bus.Connect(st.NATSConfig(), "hpa-up", o.Log); err != nil {
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
	st.Endpoints.S3Endpoint, st.Endpoints.Region, st.Endpoints.Bucket = st.S3.Endpoint(), o.Region, o.Bucket
	st.Endpoints.AccessKey, st.Endpoints.SecretKey = ak, sk
	if st.Store, err = objstore.Open(ctx, objstore.Config{Endpoint: st.S3.Endpoint(), Region: o.Region, PathStyle: true,
		Bucket: o.Bucket, AccessKey: ak, SecretKey: sk}); err != nil {
		return st, fmt.Errorf("up: %w", err)
	}
	return st, nil
}

// NATSConfig is how a client connects to the stack's NATS server (URL and credentials).
func (s *Stack) NATSConfig() bus.Config {
	return bus.Config{URL: s.Endpoints.NATSURL, User: s.Endpoints.NATSUser, Password: s.Endpoints.NATSPassword}
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

// stackCredentials are the secrets kept in <DataDir>/credentials.json (mode 0600): the S3 keys
// and the user/password the embedded NATS server requires, generated on first start.
type stackCredentials struct {
	AccessKey    string `json:"access_key"`
	SecretKey    string `json:"secret_key"`
	NATSUser     string `json:"nats_user,omitempty"`
	NATSPassword string `json:"nats_password,omitempty"`
}

// credentialsOf returns the S3 keys (the given ones, or the ones kept in the data directory) and
// the NATS user/password (kept in the data directory). What is missing is generated and kept.
func credentialsOf(o StackOptions) (stackCredentials, error) {
	var none stackCredentials
	if o.AccessKey != "" || o.SecretKey != "" {
		if o.AccessKey == "" || o.SecretKey == "" {
			return none, ErrKeyPair
		}
	}
	path := filepath.Join(o.DataDir, "credentials.json")
	var c stackCredentials
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &c); err != nil || c.AccessKey == "" || c.SecretKey == "" {
			return none, fmt.Errorf("up: %s is not a credentials file: %v", path, err)
		}
		if (c.NATSUser == "") != (c.NATSPassword == "") {
			return none, fmt.Errorf("up: %s has only one of nats_user and nats_password", path)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return none, fmt.Errorf("up: %w", err)
	}
	changed := false
	if c.AccessKey == "" {
		c.AccessKey, c.SecretKey, changed = "HPA"+randomHex(8), randomHex(20), true
	}
	if c.NATSUser == "" {
		// Files written before NATS required credentials get them added.
		c.NATSUser, c.NATSPassword, changed = "hpa-"+randomHex(4), randomHex(24), true
	}
	if changed {
		b, _ = json.MarshalIndent(c, "", "  ")
		if err := writePrivate(path, append(b, '\n')); err != nil {
			return none, fmt.Errorf("up: %w", err)
		}
	}
	if o.AccessKey != "" {
		c.AccessKey, c.SecretKey = o.AccessKey, o.SecretKey
	}
	return c, nil
}

// randomHex is n random bytes (crypto/rand) in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("up: no randomness for credentials: " + err.Error())
	}
	return hex.EncodeToString(b)
}
