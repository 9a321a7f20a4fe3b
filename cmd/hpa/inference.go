package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/consumers/inference"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/ort"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/serve"
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
	connectionFlags(f)
}

// natsFlags declares the NATS connection flags (keys nats.*).
func natsFlags(f *pflag.FlagSet) {
	f.String("nats-url", nats.DefaultURL, "NATS server URL(s), comma-separated")
	f.String("nats-user", "", "NATS user")
	f.String("nats-password", "", "NATS password")
	f.String("nats-token", "", "NATS token")
	f.String("nats-nkey", "", "NATS nkey seed file")
	f.String("nats-creds", "", "NATS credentials (JWT) file")
	f.String("nats-tls-ca", "", "CA certificate file for NATS TLS")
	f.String("nats-tls-cert", "", "client certificate file for NATS TLS")
	f.String("nats-tls-key", "", "client key file for NATS TLS")
}

// connectionFlags declares the NATS and S3 connection flags of a client command (their keys:
// inferenceFlagKeys, webFlagKeys).
func connectionFlags(f *pflag.FlagSet) {
	natsFlags(f)
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
			ctx, stop := serve.SignalContext(cmd.Context())
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
	rt := config.Runtime(v)
	rt.MaxBatch = cfg.MaxBatch
	o := inference.MainOptions{
		NATS: config.NATS(v), S3: config.S3(v), Config: cfg,
		Model: v.GetString("inference.model"), MetricsAddr: v.GetString("inference.metrics_addr"),
		NewLoader: func(c *s3.Client) model.Loader { return ort.NewLoader(rt, c) },
	}
	if config.WebEnabled(v) {
		wcfg, err := config.Web(v)
		if err != nil {
			return err
		}
		wcfg.Logger = log
		if wcfg.AccessKey == "" && wcfg.Token == "" {
			log.Warn("plate viewer off: it needs static S3 keys (s3.access_key/secret_key) or web.token to sign in with")
		} else {
			o.Pages = func(ctx context.Context, nc *nats.Conn, store *objstore.Bucket, h http.Handler) (http.Handler, error) {
				vw, err := viewer.ForDeployment(store, wcfg, viewer.Deployment{Conn: nc, Topology: cfg.Topology,
					Model: o.Model, ModelPointer: cfg.ModelPointer})
				if err != nil {
					return nil, fmt.Errorf("inference: viewer: %w", err)
				}
				log.Info("plate viewer", "url", "http://"+o.MetricsAddr+"/")
				return viewer.Mount(ctx, h, vw), nil
			}
		}
	}
	return inference.Main(ctx, o)
}

// newLogger builds the slog logger of log.level and log.format.
func newLogger(v *viper.Viper, w io.Writer) *slog.Logger {
	return serve.NewLogger(w, config.Log(v))
}

// inferenceConfig reads the inference.* keys.
func inferenceConfig(v *viper.Viper, log *slog.Logger) (inference.Config, error) {
	c, err := config.Inference(v)
	c.Logger = log
	return c, err
}
