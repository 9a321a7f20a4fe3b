// Package inference is the event-driven labeling consumer: S3 object-created events on NATS
// JetStream are assembled into complete 4-channel samples, labeled in dynamic batches by a model
// set, and written back to S3 as label JSON.
//
// Flow, per replica (any number of replicas share the work through durable consumers):
//
//  1. Intake (assembler): a durable pull consumer on the S3-events stream (limits retention, so
//     events can be replayed) parses each notification (AWS or MinIO format), ignores non-create
//     events and keys outside the upload prefix, maps the key to (plate, sample id, channel) and
//     records the channel in a JetStream KV bucket (one key per sample, compare-and-set updates).
//     The event that completes a sample publishes a sample-ready message on
//     <ReadySubject>.<plate token> with Nats-Msg-Id = plate/id/<model digest>/<content hash>,
//     so the ready stream holds each complete sample once per model version and content, whatever
//     replica saw which event and however often events were redelivered.
//  2. Labeling (labeler.go) is input -> processors -> output, the sample path `hpa label` shares
//     (internal/labeling): the JetStream input (input.go: a durable pull consumer on the ready
//     stream, work-queue retention) alone acknowledges, redelivers with backoff and dead-letters,
//     and keeps the messages it handed out alive with InProgress heartbeats; the processors are
//     labeling.Assemble (FetchWorkers goroutines: GetObject of the 4 channels and decode), a
//     batcher with Triton's dynamic-batching semantics (a batch leaves when it has MaxBatch
//     samples or its oldest sample waited MaxBatchDelay), labeling.Predict on one inference
//     goroutine (the model never waits on I/O: the next batch is assembled while the current one
//     runs) and labeling.Label in WriteWorkers goroutines; the output is labels.ObjectSink plus
//     the bus (<LabelsSubject>.<plate token> events, the plate CSV generation, the sample's KV
//     entry), and only then is the message acknowledged. MaxAckPending bounds the outstanding work.
//  3. Output: labels at <LabelsPrefix><plate>/<id>.json, identical bytes for identical inputs and
//     model; an existing label with the same manifest digest and sources is not rewritten. A
//     per-plate Kaggle CSV <LabelsPrefix><plate>/submission.csv is rebuilt from the labels by one
//     replica at a time (a KV lock with TTL; a per-plate generation counter guarantees the last
//     build saw every label).
//  4. Failures: poison input (missing object, corrupt or non-image data, channels of different
//     sizes, oversized objects) gets an hpa.error/v1 record at <LabelsPrefix><plate>/<id>.error.json
//     and a dead-letter message on <DLQSubject>.<plate token>, then Term. Transient S3/NATS/model
//     failures are retried with backoff (NakWithDelay) up to MaxDeliver, then dead-lettered.
//     Incomplete samples older than IncompleteAge are reported once (log, metric, error record).
//  5. Hot reload: a message on PromotedSubject (body: the model location) or a changed model
//     pointer object in S3 loads the new set beside the old; batches switch between batches; a
//     failed load keeps the old set and is reported.
//
// A stage that fails (its durable consumer deleted) stops the replica with that error.
//
// This package imports NATS but no model runtime: the model comes in through a model.Loader
// (Main's NewLoader), which the command wires to ONNX Runtime.
package inference

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/serve"
)

// Config configures a Service. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// Bucket, when set, makes events of other buckets be ignored.
	Bucket string
	// UploadPrefix is where channel images are uploaded ("incoming/").
	UploadPrefix string
	// KeyPattern maps a key below UploadPrefix to plate, id and channel (DefaultKeyPattern).
	KeyPattern string
	// LabelsPrefix is where labels, error records and plate CSVs go ("labels/").
	LabelsPrefix string

	// Topology names the streams, subjects, durable consumers and KV buckets (bus defaults).
	bus.Topology

	MaxBatch      int
	MaxBatchDelay time.Duration
	FetchWorkers  int
	WriteWorkers  int
	EventWorkers  int
	MaxAckPending int
	AckWait       time.Duration
	MaxDeliver    int
	// Backoff is the first redelivery delay after a transient failure; it doubles per delivery.
	Backoff       time.Duration
	DedupWindow   time.Duration
	IncompleteAge time.Duration
	SweepInterval time.Duration
	CSVInterval   time.Duration
	LockTTL       time.Duration
	// ModelPointer, when set, is an object whose content is the model location to serve; it is
	// polled every PointerPoll and a change triggers a reload.
	ModelPointer string
	PointerPoll  time.Duration
	// ModelPrefixes limit the locations a promotion (message or current-model fact) may name:
	// a location must start with one of them ("s3://bucket/models/"); none accepts any.
	ModelPrefixes []string
	// NoWatchCurrent turns off watching the current-model fact (KV bus.ModelsBucket).
	NoWatchCurrent bool

	MaxObjectBytes int64
	// OpTimeout bounds every object-store call (a hung request fails and is retried instead of
	// holding a sample, kept alive by heartbeats, forever).
	OpTimeout time.Duration
	Decode    pipeline.DecodeOptions
	Logger    *slog.Logger
}

// DefaultConfig returns the defaults (the values config.yaml documents).
func DefaultConfig() Config {
	return Config{
		UploadPrefix: "incoming/", LabelsPrefix: "labels/", KeyPattern: bus.DefaultKeyPattern,
		Topology: bus.DefaultTopology(),
		MaxBatch: 8, MaxBatchDelay: 20 * time.Millisecond, FetchWorkers: 4, WriteWorkers: 4, EventWorkers: 16,
		MaxAckPending: 256, AckWait: 30 * time.Second, MaxDeliver: 8, Backoff: 250 * time.Millisecond,
		DedupWindow: 2 * time.Minute, IncompleteAge: 10 * time.Minute, SweepInterval: time.Minute,
		CSVInterval: time.Second, LockTTL: time.Minute, PointerPoll: 10 * time.Second,
		MaxObjectBytes: 256 << 20, OpTimeout: 30 * time.Second,
	}
}

// orDefault sets *p to def when *p is the zero value.
func orDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

func (c *Config) fill() error {
	d := DefaultConfig()
	orDefault(&c.UploadPrefix, d.UploadPrefix)
	orDefault(&c.LabelsPrefix, d.LabelsPrefix)
	orDefault(&c.KeyPattern, d.KeyPattern)
	c.Topology.Fill()
	orDefault(&c.MaxBatch, d.MaxBatch)
	orDefault(&c.FetchWorkers, d.FetchWorkers)
	orDefault(&c.WriteWorkers, d.WriteWorkers)
	orDefault(&c.EventWorkers, d.EventWorkers)
	orDefault(&c.MaxAckPending, d.MaxAckPending)
	orDefault(&c.MaxDeliver, d.MaxDeliver)
	orDefault(&c.MaxBatchDelay, d.MaxBatchDelay)
	orDefault(&c.AckWait, d.AckWait)
	orDefault(&c.Backoff, d.Backoff)
	orDefault(&c.DedupWindow, d.DedupWindow)
	orDefault(&c.IncompleteAge, d.IncompleteAge)
	orDefault(&c.SweepInterval, d.SweepInterval)
	orDefault(&c.CSVInterval, d.CSVInterval)
	orDefault(&c.LockTTL, d.LockTTL)
	orDefault(&c.PointerPoll, d.PointerPoll)
	orDefault(&c.OpTimeout, d.OpTimeout)
	orDefault(&c.MaxObjectBytes, d.MaxObjectBytes)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.MaxBatch < 0 || c.FetchWorkers < 0 || c.WriteWorkers < 0 || c.EventWorkers < 0 || c.MaxAckPending < 0:
		return &ConfigError{"max_batch, workers and max_ack_pending must be positive"}
	case c.MaxDeliver < 2:
		return &ConfigError{fmt.Sprintf("max_deliver %d: need at least 2 so transient failures can be retried", c.MaxDeliver)}
	case c.MaxBatchDelay < 0 || c.AckWait < time.Second || c.Backoff < 0:
		return &ConfigError{"max_batch_delay must be >= 0, ack_wait >= 1s, backoff >= 0"}
	case !strings.HasSuffix(c.LabelsPrefix, "/"):
		return &ConfigError{fmt.Sprintf("labels prefix %q must end with '/'", c.LabelsPrefix)}
	case c.UploadPrefix != "" && !strings.HasSuffix(c.UploadPrefix, "/"):
		return &ConfigError{fmt.Sprintf("upload prefix %q must end with '/'", c.UploadPrefix)}
	case strings.HasPrefix(c.LabelsPrefix, c.UploadPrefix) || strings.HasPrefix(c.UploadPrefix, c.LabelsPrefix):
		return &ConfigError{fmt.Sprintf("upload prefix %q and labels prefix %q overlap", c.UploadPrefix, c.LabelsPrefix)}
	}
	return c.Decode.Validate()
}

// ConfigError reports an unusable Config.
type ConfigError struct{ Reason string }

func (e *ConfigError) Error() string { return "inference config: " + e.Reason }

// Service is one consumer replica.
type Service struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	store  objstore.Store
	loader model.Loader
	keys   *bus.KeyMapper
	log    *slog.Logger
	m      *metrics
	model  modelHolder

	samples jetstream.KeyValue
	plates  jetstream.KeyValue
	locks   jetstream.KeyValue

	sink labels.ObjectSink
	csv  *csvBuilder
	recs recCache

	mu      sync.Mutex
	pointer string // last model location read from the pointer object
	running bool
	// replayOff: the replay streams could not be created (their subjects are another stream's).
	replayOff atomic.Bool
	reloadMu  sync.Mutex
}

// New creates a replica. It checks the configuration; Run sets up streams and starts work.
func New(nc *nats.Conn, store objstore.Store, loader model.Loader, cfg Config) (*Service, error) {
	if nc == nil || store == nil {
		return nil, &ConfigError{"a NATS connection and an object store are required"}
	}
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	km, err := bus.NewKeyMapper(cfg.UploadPrefix, cfg.KeyPattern)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s := &Service{cfg: cfg, nc: nc, js: js, store: objstore.WithTimeout(store, cfg.OpTimeout), loader: loader, keys: km, log: cfg.Logger, m: newMetrics()}
	s.sink = labels.ObjectSink{Store: s.store, Prefix: cfg.LabelsPrefix}
	return s, nil
}

// Load loads the model set at location beside the serving one and swaps it in between batches.
// On failure the serving set stays and the error is returned (and counted).
func (s *Service) Load(ctx context.Context, location string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old, _, hadOld := s.model.info()
	info, _, err := s.model.load(ctx, s.loader, location)
	if err != nil {
		s.m.reloads.WithLabelValues("failed").Inc()
		s.m.errors.WithLabelValues("model").Inc()
		if hadOld {
			s.log.Error("model load failed; keeping the serving set", "location", location, "err", err,
				"serving", old.ManifestDigest)
		} else {
			s.log.Error("model load failed", "location", location, "err", err)
		}
		return err
	}
	if hadOld {
		s.m.modelInfo.DeleteLabelValues(old.Name, old.Version, old.ManifestDigest)
	}
	s.m.modelInfo.WithLabelValues(info.Name, info.Version, info.ManifestDigest).Set(1)
	s.m.reloads.WithLabelValues("ok").Inc()
	s.log.Info("model set loaded", "location", location, "name", info.Name, "version", info.Version,
		"digest", info.ManifestDigest, "members", info.Members, "tta_views", info.TTAViews)
	return nil
}

// Close releases the serving model set (after its last batch). Call it after Run returned.
func (s *Service) Close() error { return s.model.closeAll() }

// Model returns the serving model set's info; ok is false before the first successful Load.
func (s *Service) Model() (info labels.ModelInfo, ok bool) {
	info, _, ok = s.model.info()
	return info, ok
}

// Ready reports whether the replica can label: a model is loaded and NATS is connected.
func (s *Service) Ready() error {
	if _, _, ok := s.model.info(); !ok {
		return errors.New("no model loaded")
	}
	if !s.nc.IsConnected() {
		return errors.New("NATS not connected")
	}
	return nil
}

// Handler serves /metrics (Prometheus), /healthz (the process is up) and /readyz (model loaded
// and NATS connected).
func (s *Service) Handler() http.Handler { return serve.Handler(s.m.reg, s.Ready) }

// Setup creates what is missing: the events stream (limits retention), the ready stream
// (work queue, duplicate window), the dead-letter stream, the KV buckets and the durable
// consumers, each stream and bucket with c.Replicas replicas (nats.replicas). Existing streams are
// used as they are, except that their replicas are raised to c.Replicas (never lowered). It is
// idempotent and safe to run from several replicas at once.
func (s *Service) Setup(ctx context.Context) error {
	c := s.cfg
	if _, err := bus.EnsureEventsStream(ctx, s.js, bus.EventsStreamConfig{Name: c.EventsStream, Subjects: c.EventsSubjects, Replicas: c.Replicas}); err != nil {
		return err
	}
	if err := bus.EnsureReadyStream(ctx, s.js, c.Topology, c.DedupWindow); err != nil {
		return err
	}
	if err := bus.EnsureDLQStream(ctx, s.js, c.Topology); err != nil {
		return err
	}
	var err error
	kv := func(cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
		cfg.Replicas = c.Replicas
		return bus.EnsureKeyValue(ctx, s.js, cfg)
	}
	if s.samples, err = kv(jetstream.KeyValueConfig{Bucket: c.SamplesBucket, Description: "hpa sample channel presence"}); err != nil {
		return err
	}
	if s.plates, err = kv(jetstream.KeyValueConfig{Bucket: c.PlatesBucket, Description: "hpa plate CSV generations"}); err != nil {
		return err
	}
	if s.locks, err = kv(jetstream.KeyValueConfig{Bucket: c.LocksBucket, Description: "hpa plate CSV builder locks", TTL: c.LockTTL}); err != nil {
		return err
	}
	if _, err := s.js.CreateOrUpdateConsumer(ctx, c.EventsStream, jetstream.ConsumerConfig{
		Durable: c.EventsConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.AckWait,
		MaxDeliver: c.MaxDeliver, MaxAckPending: c.MaxAckPending * 16, FilterSubject: c.EventsFilter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}); err != nil {
		return fmt.Errorf("consumer %s on %s: %w", c.EventsConsumer, c.EventsStream, err)
	}
	if _, err := s.js.CreateOrUpdateConsumer(ctx, c.ReadyStream, jetstream.ConsumerConfig{
		Durable: c.LabelConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.AckWait,
		MaxDeliver: c.MaxDeliver, MaxAckPending: c.MaxAckPending,
	}); err != nil {
		return fmt.Errorf("consumer %s on %s: %w", c.LabelConsumer, c.ReadyStream, err)
	}
	// The replay path (producers/replay): its own streams and consumers, so a backfill never
	// queues live work behind it; the labeler takes replayed samples only when no live one waits.
	if err := bus.EnsureReplayStreams(ctx, s.js, c.Topology, c.DedupWindow); err != nil {
		if bus.IsSubjectOverlap(err) {
			// The events stream already captures the replay subjects: replayed events arrive
			// with the live ones (no priority), and there is no replay path to run.
			s.log.Warn("replay path off: the replay subjects are captured by another stream", "subjects", c.ReplaySubjects, "err", err)
			s.replayOff.Store(true)
			return nil
		}
		return err
	}
	if _, err := s.js.CreateOrUpdateConsumer(ctx, c.ReplayStream, jetstream.ConsumerConfig{
		Durable: c.ReplayEventsConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.AckWait,
		MaxDeliver: c.MaxDeliver, MaxAckPending: c.MaxAckPending * 4, DeliverPolicy: jetstream.DeliverAllPolicy,
	}); err != nil {
		return fmt.Errorf("consumer %s on %s: %w", c.ReplayEventsConsumer, c.ReplayStream, err)
	}
	if _, err := s.js.CreateOrUpdateConsumer(ctx, c.ReplayReadyStream, jetstream.ConsumerConfig{
		Durable: c.ReplayLabelConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.AckWait,
		MaxDeliver: c.MaxDeliver, MaxAckPending: c.MaxAckPending,
	}); err != nil {
		return fmt.Errorf("consumer %s on %s: %w", c.ReplayLabelConsumer, c.ReplayReadyStream, err)
	}
	return nil
}

// Summary names the serving model set: "<name> <version>, <manifest digest>" ("no model" before
// the first Load).
func (s *Service) Summary() string {
	info, ok := s.Model()
	if !ok {
		return "no model"
	}
	return fmt.Sprintf("%s %s, %s", info.Name, info.Version, info.ManifestDigest)
}

// Prefixes are the upload and labels prefixes.
func (s *Service) Prefixes() (upload, labels string) { return s.cfg.UploadPrefix, s.cfg.LabelsPrefix }

// Consuming reports whether the durable consumers exist (Run created them), so that objects
// uploaded now are seen.
func (s *Service) Consuming(ctx context.Context) bool {
	_, err := s.js.Consumer(ctx, s.cfg.ReadyStream, s.cfg.LabelConsumer)
	return err == nil
}
