package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/consumers/inference"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/s3client"
	"github.com/hpa-plates/hpa/internal/viewer"
)

func init() {
	subcommands = append(subcommands, newWebCmd)
}

// webFlagKeys maps hpa web's connection flags to the shared nats.* and s3.* keys.
var webFlagKeys = map[string]string{
	"nats-url": "nats.url", "nats-user": "nats.user", "nats-password": "nats.password", "nats-token": "nats.token",
	"nats-nkey": "nats.nkey", "nats-creds": "nats.creds", "nats-tls-ca": "nats.tls_ca", "nats-tls-cert": "nats.tls_cert",
	"nats-tls-key": "nats.tls_key",
	"s3-endpoint":  "s3.endpoint", "s3-region": "s3.region", "s3-path-style": "s3.path_style", "bucket": "s3.bucket",
	"s3-access-key": "s3.access_key", "s3-secret-key": "s3.secret_key",
}

func newWebCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "web",
		Short: "Serve the plate viewer against any S3 + NATS (hpa up and hpa inference serve it too)",
		Long: `Serves the plate viewer: plates, their samples as composite images with predicted compartments and
confidence, failures, the plate CSV, each sample's channels, probabilities and provenance, and the model
sets, training runs and promotion decisions. Read-only (it caches thumbnails under --thumbs-prefix);
live updates come from the label events on NATS. Sign in with the S3 access key and secret key (HTTP
basic auth), or with --token. --endpoints takes the endpoints.json of "hpa up" as the default S3 and
NATS settings.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "web", webFlagKeys)
			if err := loadEndpoints(v, v.GetString("web.endpoints")); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runWeb(ctx, v, cmd.OutOrStdout(), cmd.ErrOrStderr(), nil)
		},
	}
	f := cmd.Flags()
	d := viewer.DefaultConfig()
	f.String("addr", "127.0.0.1:8080", "listen address of the viewer (and /healthz)")
	f.String("endpoints", "", "endpoints.json written by `hpa up`: the default S3 and NATS settings")
	f.String("token", "", "access token accepted as the basic-auth password or a bearer token (besides the S3 keys)")
	f.String("model", "", "location of the serving model set (manifest path, directory or s3://bucket/prefix/)")
	f.String("model-pointer", "", "S3 key naming the serving model set's location (the consumers' model pointer); wins over --model")
	f.String("upload-prefix", d.UploadPrefix, "key prefix of uploaded channel images")
	f.String("labels-prefix", d.LabelsPrefix, "key prefix of label JSON, error records and plate CSVs")
	f.String("thumbs-prefix", d.ThumbsPrefix, "key prefix of the thumbnail cache (the only prefix written)")
	f.String("labels-subject", "hpa.labels", "subject prefix of label-written events")
	f.String("dlq-subject", "hpa.dlq", "subject prefix of dead letters (failed samples)")
	f.String("nats-url", nats.DefaultURL, "NATS server URL(s), comma-separated")
	f.String("nats-user", "", "NATS user")
	f.String("nats-password", "", "NATS password")
	f.String("nats-token", "", "NATS token")
	f.String("nats-nkey", "", "NATS nkey seed file")
	f.String("nats-creds", "", "NATS credentials (JWT) file")
	f.String("nats-tls-ca", "", "CA certificate file for NATS TLS")
	f.String("nats-tls-cert", "", "client certificate file for NATS TLS")
	f.String("nats-tls-key", "", "client key file for NATS TLS")
	f.String("s3-endpoint", "", "S3 endpoint URL (empty: AWS)")
	f.String("s3-region", "us-east-1", "S3 region")
	f.Bool("s3-path-style", false, "path-style addressing (MinIO, s3local)")
	f.String("bucket", "plates", "bucket holding uploads and labels")
	f.String("s3-access-key", "", "static access key (default: the AWS credential chain)")
	f.String("s3-secret-key", "", "static secret key (with --s3-access-key)")
	return cmd
}

// loadEndpoints makes the endpoints.json of `hpa up` at path ("" = none) the defaults of the s3.*
// and nats.* keys and of the viewer's prefixes: flags, environment and config file still win.
func loadEndpoints(v *viper.Viper, path string) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("endpoints: %w", err)
	}
	var ep Endpoints
	if err := json.Unmarshal(b, &ep); err != nil {
		return fmt.Errorf("endpoints %s: %w", path, err)
	}
	if ep.S3Endpoint == "" || ep.Bucket == "" {
		return fmt.Errorf("endpoints %s: no s3_endpoint or bucket", path)
	}
	set := func(key, val string) {
		if val != "" {
			v.SetDefault(key, val)
		}
	}
	set("s3.endpoint", ep.S3Endpoint)
	set("s3.region", ep.Region)
	set("s3.bucket", ep.Bucket)
	set("s3.access_key", ep.AccessKey)
	set("s3.secret_key", ep.SecretKey)
	set("nats.url", ep.NATSURL)
	set("web.upload_prefix", ep.UploadPrefix)
	set("web.labels_prefix", ep.LabelsPrefix)
	v.SetDefault("s3.path_style", true)
	return nil
}

// viewerConfig reads the web.* tuning keys (unset keys keep the viewer's defaults) and the
// credentials: the static S3 keys and web.token.
func viewerConfig(v *viper.Viper, log *slog.Logger) (viewer.Config, error) {
	c := viewer.DefaultConfig()
	str := func(key string, dst *string) {
		if s := v.GetString(key); s != "" {
			*dst = s
		}
	}
	str("web.thumbs_prefix", &c.ThumbsPrefix)
	str("web.models_prefix", &c.ModelsPrefix)
	str("web.runs_prefix", &c.RunsPrefix)
	num := func(key string, dst *int) {
		if v.IsSet(key) {
			*dst = v.GetInt(key)
		}
	}
	num("web.thumb_size", &c.ThumbSize)
	num("web.view_size", &c.ViewSize)
	num("web.thumb_workers", &c.ThumbWorkers)
	num("web.page_size", &c.PageSize)
	num("web.max_streams", &c.MaxStreams)
	dur := func(key string, dst *time.Duration) {
		if v.IsSet(key) {
			*dst = v.GetDuration(key)
		}
	}
	dur("web.request_timeout", &c.RequestTimeout)
	dur("web.index_ttl", &c.IndexTTL)
	if v.IsSet("web.max_object_bytes") {
		c.MaxObjectBytes = v.GetInt64("web.max_object_bytes")
	}
	c.Bucket = v.GetString("s3.bucket")
	c.AccessKey, c.SecretKey = v.GetString("s3.access_key"), v.GetString("s3.secret_key")
	c.Token = v.GetString("web.token")
	dec, err := pipeline.DecodeOptionsFromConfig(v)
	if err != nil {
		return c, fmt.Errorf("web: %w", err)
	}
	c.Decode = dec
	c.Logger = log
	return c, nil
}

// webEnabled says whether `hpa up` and `hpa inference` serve the viewer (web.enabled, default on).
func webEnabled(v *viper.Viper) bool { return !v.IsSet("web.enabled") || v.GetBool("web.enabled") }

// newViewer builds the viewer of a labeling deployment: its bucket, prefixes and NATS subjects
// come from the consumer's configuration, the serving model from model (and the model pointer).
func newViewer(v *viper.Viper, log *slog.Logger, store *inference.S3Store, nc *nats.Conn, icfg inference.Config, model, ak, sk string) (*viewer.Viewer, error) {
	c, err := viewerConfig(v, log)
	if err != nil {
		return nil, err
	}
	c.Bucket = store.Bucket
	if ak != "" {
		c.AccessKey, c.SecretKey = ak, sk
	}
	c.UploadPrefix, c.LabelsPrefix = icfg.UploadPrefix, icfg.LabelsPrefix
	vs := &viewer.S3Store{Client: store.Client, Bucket: store.Bucket, OpTimeout: icfg.OpTimeout}
	c.Events = viewer.NATSEvents{Conn: nc, LabelsSubject: icfg.LabelsSubject, DLQSubject: icfg.DLQSubject}
	c.Model = viewer.StaticModel(model)
	if icfg.ModelPointer != "" {
		c.Model = viewer.PointerModel(vs, icfg.ModelPointer, model)
	}
	return viewer.New(vs, c)
}

// withViewer serves /metrics, /healthz and /readyz from svc and everything else from the viewer.
func withViewer(svc http.Handler, vw *viewer.Viewer) http.Handler {
	if vw == nil {
		return svc
	}
	mux := http.NewServeMux()
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		mux.Handle(p, svc)
	}
	mux.Handle("/", vw.Handler())
	return mux
}

// runWeb serves the viewer until ctx ends. ready, when not nil, receives the viewer's URL.
func runWeb(ctx context.Context, v *viper.Viper, out, logw io.Writer, ready chan<- string) error {
	log := newLogger(v, logw)
	bucket := v.GetString("s3.bucket")
	if bucket == "" {
		return errors.New("web: --bucket (s3.bucket) is required")
	}
	cl, err := s3client.New(ctx, s3client.FromViper(v))
	if err != nil {
		return err
	}
	store := &viewer.S3Store{Client: cl, Bucket: bucket}
	nc, err := natsConnect(v, "hpa-web", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	c, err := viewerConfig(v, log)
	if err != nil {
		return err
	}
	c.UploadPrefix, c.LabelsPrefix = v.GetString("web.upload_prefix"), v.GetString("web.labels_prefix")
	c.Events = viewer.NATSEvents{Conn: nc, LabelsSubject: v.GetString("web.labels_subject"), DLQSubject: v.GetString("web.dlq_subject")}
	if m := v.GetString("web.model"); m != "" {
		c.Model = viewer.StaticModel(m)
	}
	if p := v.GetString("web.model_pointer"); p != "" {
		c.Model = viewer.PointerModel(store, p, v.GetString("web.model"))
	}
	vw, err := viewer.New(store, c)
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	defer vw.Close()
	ln, err := net.Listen("tcp", v.GetString("web.addr"))
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("/", vw.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String() + "/"
	fmt.Fprintf(out, "hpa web: plate viewer at %s (bucket %s, NATS %s)\n", url, bucket, nc.ConnectedUrlRedacted())
	if ready != nil {
		ready <- url
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("web: %w", err)
	}
	vw.Close() // ends the event streams so Shutdown does not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
