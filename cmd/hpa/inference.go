package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/consumers/inference"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/model/ort"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/s3client"
	"github.com/hpa-plates/hpa/internal/viewer"
)

func init() {
	subcommands = append(subcommands, newInferenceCmd)
}

// inferenceFlags declares the consumer's flags (keys inference.*, nats.*, s3.*). They are bound
// to viper when the command runs, so `up` and `inference` can share keys.
func inferenceFlags(f *pflag.FlagSet) {
	d := inference.DefaultConfig()
	f.String("model", "models/bundled/manifest.json", "model set: a manifest.json path, a model directory, or s3://bucket/prefix/ of one")
	f.String("model-pointer", "", "S3 key whose content names the model location to serve (polled; a change hot-reloads)")
	f.String("upload-prefix", d.UploadPrefix, "key prefix of uploaded channel images (<prefix><plate>/<id>_<channel>.png)")
	f.String("labels-prefix", d.LabelsPrefix, "key prefix of label JSON, error records and plate CSVs")
	f.String("key-pattern", "", "regexp with groups plate, id, channel matched below the upload prefix (default: <plate>/<id>_<channel>.<ext>)")
	f.String("events-stream", d.EventsStream, "JetStream stream of S3 events (created with limits retention when missing)")
	f.StringSlice("events-subjects", d.EventsSubjects, "subjects of the events stream when it has to be created")
	f.String("events-filter", "", "filter subject of the events consumer (empty: the whole stream)")
	f.String("ready-stream", d.ReadyStream, "work-queue stream of sample-ready messages")
	f.String("ready-subject", d.ReadySubject, "subject prefix of sample-ready messages")
	f.String("dlq-stream", d.DLQStream, "dead-letter stream")
	f.String("dlq-subject", d.DLQSubject, "subject prefix of dead letters")
	f.String("labels-subject", d.LabelsSubject, "subject prefix of label-written events")
	f.String("promoted-subject", d.PromotedSubject, "subject of model promotions (body: the model location)")
	f.String("events-consumer", d.EventsConsumer, "durable consumer name on the events stream (shared by replicas)")
	f.String("label-consumer", d.LabelConsumer, "durable consumer name on the ready stream (shared by replicas)")
	f.Int("batch", d.MaxBatch, "max batch size (samples per model run)")
	f.Duration("max-batch-delay", d.MaxBatchDelay, "max time the first sample of a batch waits for more")
	f.Int("fetch-workers", d.FetchWorkers, "concurrent S3 fetch + decode workers")
	f.Int("write-workers", d.WriteWorkers, "concurrent label writers")
	f.Int("event-workers", d.EventWorkers, "concurrent S3-event handlers")
	f.Int("max-ack-pending", d.MaxAckPending, "samples in flight across all replicas (backpressure)")
	f.Duration("ack-wait", d.AckWait, "redelivery timeout of an unacknowledged message (heartbeats extend it)")
	f.Int("max-deliver", d.MaxDeliver, "deliveries of a message before it is dead-lettered")
	f.Duration("incomplete-age", d.IncompleteAge, "report samples still missing channels after this long")
	f.Int64("max-object-bytes", d.MaxObjectBytes, "larger channel objects are refused (error record kind too_large)")
	f.Duration("op-timeout", d.OpTimeout, "time limit of each S3 call (a hung request is retried)")
	f.String("metrics-addr", "127.0.0.1:9090", "listen address of /metrics, /healthz and /readyz (empty: off)")
	// NATS connection (nats.*).
	f.String("nats-url", nats.DefaultURL, "NATS server URL(s), comma-separated")
	f.String("nats-user", "", "NATS user")
	f.String("nats-password", "", "NATS password")
	f.String("nats-token", "", "NATS token")
	f.String("nats-nkey", "", "NATS nkey seed file")
	f.String("nats-creds", "", "NATS credentials (JWT) file")
	f.String("nats-tls-ca", "", "CA certificate file for NATS TLS")
	f.String("nats-tls-cert", "", "client certificate file for NATS TLS")
	f.String("nats-tls-key", "", "client key file for NATS TLS")
	// S3 (s3.*); credentials come from the standard AWS chain unless given here.
	f.String("s3-endpoint", "", "S3 endpoint URL (empty: AWS)")
	f.String("s3-region", "us-east-1", "S3 region")
	f.Bool("s3-path-style", false, "path-style addressing (MinIO, s3local)")
	f.String("bucket", "plates", "bucket holding uploads and labels")
	f.String("s3-access-key", "", "static access key (default: the AWS credential chain)")
	f.String("s3-secret-key", "", "static secret key (with --s3-access-key)")
}

// inferenceFlagKeys maps the connection flags to their nats.* and s3.* keys.
var inferenceFlagKeys = map[string]string{
	"nats-url": "nats.url", "nats-user": "nats.user", "nats-password": "nats.password", "nats-token": "nats.token",
	"nats-nkey": "nats.nkey", "nats-creds": "nats.creds", "nats-tls-ca": "nats.tls_ca", "nats-tls-cert": "nats.tls_cert",
	"nats-tls-key": "nats.tls_key",
	"s3-endpoint":  "s3.endpoint", "s3-region": "s3.region", "s3-path-style": "s3.path_style", "bucket": "s3.bucket",
	"s3-access-key": "s3.access_key", "s3-secret-key": "s3.secret_key",
}

func newInferenceCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inference",
		Short: "Run the event-driven labeling consumer against NATS JetStream and S3",
		Long: `Consumes S3 object-created events (AWS or MinIO format) from a JetStream stream, assembles the four
channel images of each sample, labels complete samples in dynamic batches with the model set, and writes
label JSON to <labels-prefix><plate>/<id>.json (error records to <id>.error.json, a Kaggle CSV per plate to
<labels-prefix><plate>/submission.csv). Run as many replicas as you like: they share durable consumers.
Serves /metrics, /healthz and /readyz on --metrics-addr. SIGINT/SIGTERM drain in-flight work.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "inference", inferenceFlagKeys)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runInference(ctx, v, cmd.ErrOrStderr())
		},
	}
	inferenceFlags(cmd.Flags())
	cmd.Flags().String("provider", "cpu", "ONNX Runtime execution provider: cpu, cuda or tensorrt")
	cmd.Flags().Int("threads", 0, "ONNX Runtime intra-op threads (0 = ONNX Runtime default)")
	cmd.Flags().String("ort-library", ort.DefaultLibrary, "path of libonnxruntime.so")
	inferenceFlagKeys["provider"], inferenceFlagKeys["threads"], inferenceFlagKeys["ort-library"] = "ort.provider", "ort.intra_threads", "ort.library"
	return cmd
}

func runInference(ctx context.Context, v *viper.Viper, logw io.Writer) error {
	log := newLogger(v, logw)
	cfg, err := inferenceConfig(v, log)
	if err != nil {
		return err
	}
	nc, err := natsConnect(v, "hpa-inference", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := s3StoreFrom(ctx, v)
	if err != nil {
		return err
	}
	svc, err := inference.New(nc, store, ortLoader(v, store, log), cfg)
	if err != nil {
		return err
	}
	defer svc.Close()
	if err := svc.Load(ctx, v.GetString("inference.model")); err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	var vw *viewer.Viewer
	if addr := v.GetString("inference.metrics_addr"); webEnabled(v) && addr != "" {
		if v.GetString("s3.access_key") == "" && v.GetString("web.token") == "" {
			log.Warn("plate viewer off: it needs static S3 keys (s3.access_key/secret_key) or web.token to sign in with")
		} else if vw, err = newViewer(v, log, store, nc, cfg, v.GetString("inference.model"), "", ""); err != nil {
			return fmt.Errorf("inference: viewer: %w", err)
		}
	}
	stopMetrics, addr, err := serveMetrics(v.GetString("inference.metrics_addr"), withViewer(svc.Handler(), vw), log)
	if err != nil {
		if vw != nil {
			vw.Close()
		}
		return err
	}
	defer stopMetrics()
	if vw != nil {
		defer vw.Close() // before stopMetrics: ends the viewer's event streams
		log.Info("plate viewer", "url", "http://"+addr+"/")
	}
	log.Info("inference consumer running", "nats", nc.ConnectedUrlRedacted(), "bucket", v.GetString("s3.bucket"),
		"upload_prefix", cfg.UploadPrefix, "labels_prefix", cfg.LabelsPrefix)
	return svc.Run(ctx)
}

// newLogger builds the slog logger of log.level and log.format.
func newLogger(v *viper.Viper, w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(v.GetString("log.level"))); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if v.GetString("log.format") == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// inferenceConfig reads the inference.* keys.
func inferenceConfig(v *viper.Viper, log *slog.Logger) (inference.Config, error) {
	c := inference.DefaultConfig()
	str := func(key string, dst *string) {
		if s := v.GetString(key); s != "" {
			*dst = s
		}
	}
	str("s3.bucket", &c.Bucket)
	str("inference.upload_prefix", &c.UploadPrefix)
	str("inference.labels_prefix", &c.LabelsPrefix)
	str("inference.key_pattern", &c.KeyPattern)
	str("inference.events_stream", &c.EventsStream)
	str("inference.events_filter", &c.EventsFilter)
	str("inference.ready_stream", &c.ReadyStream)
	str("inference.ready_subject", &c.ReadySubject)
	str("inference.dlq_stream", &c.DLQStream)
	str("inference.dlq_subject", &c.DLQSubject)
	str("inference.labels_subject", &c.LabelsSubject)
	str("inference.promoted_subject", &c.PromotedSubject)
	str("inference.events_consumer", &c.EventsConsumer)
	str("inference.label_consumer", &c.LabelConsumer)
	str("inference.model_pointer", &c.ModelPointer)
	if s := v.GetStringSlice("inference.events_subjects"); len(s) > 0 {
		c.EventsSubjects = s
	}
	num := func(key string, dst *int) {
		if v.IsSet(key) {
			*dst = v.GetInt(key)
		}
	}
	num("inference.batch", &c.MaxBatch)
	num("inference.fetch_workers", &c.FetchWorkers)
	num("inference.write_workers", &c.WriteWorkers)
	num("inference.event_workers", &c.EventWorkers)
	num("inference.max_ack_pending", &c.MaxAckPending)
	num("inference.max_deliver", &c.MaxDeliver)
	dur := func(key string, dst *time.Duration) {
		if v.IsSet(key) {
			*dst = v.GetDuration(key)
		}
	}
	dur("inference.max_batch_delay", &c.MaxBatchDelay)
	dur("inference.ack_wait", &c.AckWait)
	dur("inference.incomplete_age", &c.IncompleteAge)
	dur("inference.op_timeout", &c.OpTimeout)
	if v.IsSet("inference.max_object_bytes") {
		c.MaxObjectBytes = v.GetInt64("inference.max_object_bytes")
	}
	for key, val := range map[string]int{"inference.batch": c.MaxBatch, "inference.fetch_workers": c.FetchWorkers,
		"inference.write_workers": c.WriteWorkers, "inference.event_workers": c.EventWorkers, "inference.max_ack_pending": c.MaxAckPending} {
		if val < 1 {
			return c, fmt.Errorf("inference: %s must be at least 1, not %d", key, val)
		}
	}
	dec, err := pipeline.DecodeOptionsFromConfig(v)
	if err != nil {
		return c, fmt.Errorf("inference: %w", err)
	}
	c.Decode = dec
	c.Logger = log
	return c, nil
}

// natsConnect connects with the nats.* settings. Secrets are never logged.
func natsConnect(v *viper.Viper, name string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	if u := v.GetString("nats.user"); u != "" {
		opts = append(opts, nats.UserInfo(u, v.GetString("nats.password")))
	}
	if t := v.GetString("nats.token"); t != "" {
		opts = append(opts, nats.Token(t))
	}
	if f := v.GetString("nats.nkey"); f != "" {
		o, err := nats.NkeyOptionFromSeed(f)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey seed file %s: %w", f, err)
		}
		opts = append(opts, o)
	}
	if f := v.GetString("nats.creds"); f != "" {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("nats: credentials file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(f))
	}
	if f := v.GetString("nats.tls_ca"); f != "" {
		opts = append(opts, nats.RootCAs(f))
	}
	if c, k := v.GetString("nats.tls_cert"), v.GetString("nats.tls_key"); c != "" || k != "" {
		if c == "" || k == "" {
			return nil, errors.New("nats: --nats-tls-cert and --nats-tls-key go together")
		}
		opts = append(opts, nats.ClientCert(c, k))
	}
	url := v.GetString("nats.url")
	if url == "" {
		url = nats.DefaultURL
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect to %s: %w", redactURL(url), err)
	}
	return nc, nil
}

// redactURL hides passwords in user:password@host URLs.
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "[REDACTED]" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// s3StoreFrom builds the object store of s3.*: credentials from the standard AWS chain (env,
// shared config and credentials files, SSO, web identity, ECS/EC2 roles) unless static keys are set.
func s3StoreFrom(ctx context.Context, v *viper.Viper) (*inference.S3Store, error) {
	bucket := v.GetString("s3.bucket")
	if bucket == "" {
		return nil, errors.New("s3: --bucket (s3.bucket) is required")
	}
	cl, err := s3client.New(ctx, s3client.FromViper(v))
	if err != nil {
		return nil, err
	}
	return &inference.S3Store{Client: cl, Bucket: bucket}, nil
}

// ortPredictor adapts the ONNX Runtime ensemble to inference.Predictor.
type ortPredictor struct {
	ens  *ort.Ensemble
	info inference.ModelInfo
}

func (p *ortPredictor) Predict(ctx context.Context, batch []pipeline.Image4) ([][]float64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return p.ens.Predict(batch)
}

func (p *ortPredictor) Model() inference.ModelInfo { return p.info }

// ortLoader loads a model set with ONNX Runtime. A location is a manifest path, a directory
// holding manifest.json, or s3://<bucket>/<prefix> of such a directory (downloaded under
// <cache_dir>/models/ first; the manifest's member digests are checked by ort.Load).
func ortLoader(v *viper.Viper, store *inference.S3Store, log *slog.Logger) inference.ModelLoader {
	return func(ctx context.Context, location string) (inference.Predictor, io.Closer, error) {
		path := location
		cleanup := func() {}
		if strings.HasPrefix(location, "s3://") {
			dir, err := downloadModel(ctx, store, location)
			if err != nil {
				return nil, nil, err
			}
			path = dir
			cleanup = func() { _ = os.RemoveAll(dir) }
		}
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			path = filepath.Join(path, "manifest.json")
		}
		opt := ort.OptionsFrom(v)
		opt.MaxBatch = max(v.GetInt("inference.batch"), 1)
		ens, err := ort.Load(path, opt)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		th, err := ens.Thresholds()
		if err != nil {
			_ = ens.Close()
			cleanup()
			return nil, nil, err
		}
		return &ortPredictor{ens: ens, info: inference.ModelInfo{ModelInfo: ens.Info(), Thresholds: th}},
			closerFunc(func() error { err := ens.Close(); cleanup(); return err }), nil
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// downloadModel copies s3://bucket/prefix/* into a new temporary directory (removed when the
// model set is closed).
func downloadModel(ctx context.Context, store *inference.S3Store, location string) (string, error) {
	rest := strings.TrimPrefix(location, "s3://")
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return "", fmt.Errorf("model location %q: want s3://bucket/prefix", location)
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	src := &inference.S3Store{Client: store.Client, Bucket: bucket}
	keys, err := src.List(ctx, prefix)
	if err != nil {
		return "", err
	}
	if len(keys) == 0 {
		return "", fmt.Errorf("model location %s: no objects", location)
	}
	dir, err := os.MkdirTemp("", "hpa-model-*")
	if err != nil {
		return "", err
	}
	for _, o := range keys {
		k := o.Key
		rel := strings.TrimPrefix(k, prefix)
		if rel == "" || strings.Contains(rel, "..") || strings.HasPrefix(rel, "/") {
			continue
		}
		data, err := src.Get(ctx, k, 4<<30)
		if err == nil {
			p := filepath.Join(dir, filepath.FromSlash(rel))
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.WriteFile(p, data, 0o644)
			}
		}
		if err != nil {
			_ = os.RemoveAll(dir)
			return "", fmt.Errorf("model location %s: %w", location, err)
		}
	}
	return dir, nil
}

// serveMetrics serves h on addr ("" = off) and returns a stop function and the bound address.
func serveMetrics(addr string, h http.Handler, log *slog.Logger) (func(), string, error) {
	if addr == "" {
		return func() {}, "", nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, ln.Addr().String(), nil
}
