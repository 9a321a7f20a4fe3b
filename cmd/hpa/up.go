package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/consumers/inference"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/natsembed"
	"github.com/hpa-plates/hpa/internal/s3local"
	"github.com/hpa-plates/hpa/internal/viewer"
)

func init() {
	subcommands = append(subcommands, newUpCmd)
}

// Endpoints is what `hpa up` writes to <data-dir>/endpoints.json: everything an S3 client (aws cli,
// boto3, mc) and a NATS client need.
type Endpoints struct {
	S3Endpoint   string `json:"s3_endpoint"`
	Region       string `json:"region"`
	Bucket       string `json:"bucket"`
	AccessKey    string `json:"access_key"`
	SecretKey    string `json:"secret_key"`
	UploadPrefix string `json:"upload_prefix"`
	LabelsPrefix string `json:"labels_prefix"`
	NATSURL      string `json:"nats_url"`
	MetricsURL   string `json:"metrics_url"`
	// ViewerURL is the plate viewer (basic auth: access key / secret key); "" when off.
	ViewerURL string `json:"viewer_url,omitempty"`
}

// upOptions configure runUp.
type upOptions struct {
	DataDir     string
	Model       string
	S3Addr      string
	NATSPort    int
	MetricsAddr string
	Bucket      string
	Region      string
	AccessKey   string
	SecretKey   string
}

func upFlags(f *pflag.FlagSet, s3Addr string, natsPort int, metricsAddr, dataDir string) {
	f.String("data-dir", dataDir, "directory of the JetStream store, the S3 objects and endpoints.json")
	f.String("model", "models/bundled/manifest.json", "model set manifest (or directory holding manifest.json)")
	f.String("s3-addr", s3Addr, "listen address of the S3 API (port 0: a free port)")
	f.Int("nats-port", natsPort, "client port of the embedded NATS server (0: a free port)")
	f.String("metrics-addr", metricsAddr, "listen address of /metrics, /healthz, /readyz (empty: off)")
	f.String("bucket", "plates", "the bucket uploads and labels go to")
	f.String("region", "us-east-1", "S3 region")
	f.String("access-key", "", "S3 access key (default: generated once, kept in <data-dir>/credentials.json)")
	f.String("secret-key", "", "S3 secret key (default: generated once, kept in <data-dir>/credentials.json)")
}

func upOptionsFrom(v *viper.Viper, section string) upOptions {
	return upOptions{
		DataDir: v.GetString(section + ".data_dir"), Model: v.GetString(section + ".model"),
		S3Addr: v.GetString(section + ".s3_addr"), NATSPort: v.GetInt(section + ".nats_port"),
		MetricsAddr: v.GetString(section + ".metrics_addr"), Bucket: v.GetString(section + ".bucket"),
		Region: v.GetString(section + ".region"), AccessKey: v.GetString(section + ".access_key"),
		SecretKey: v.GetString(section + ".secret_key"),
	}
}

func newUpCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole labeling service on this machine: embedded NATS JetStream, S3 server, consumer, model",
		Long: `Starts an embedded NATS server with JetStream (store under <data-dir>/nats), an S3-compatible server
(objects under <data-dir>/s3) that announces every upload on JetStream, and the inference consumer with the
model set of --model. Prints the endpoints and credentials and writes them to <data-dir>/endpoints.json.
Upload <upload_prefix><plate>/<id>_{red,green,blue,yellow}.png with any S3 client; labels appear at
<labels_prefix><plate>/<id>.json. SIGINT/SIGTERM drain in-flight work; started again on the same data
directory it picks up where it stopped. Consumer tuning comes from the inference.* keys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "up", nil)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runUp(ctx, v, upOptionsFrom(v, "up"), cmd.OutOrStdout(), cmd.ErrOrStderr(), nil)
		},
	}
	upFlags(cmd.Flags(), "127.0.0.1:9000", 4222, "127.0.0.1:9090", "hpa-data")
	return cmd
}

// upCredentials returns the S3 keys: the given ones, or the ones kept in the data directory
// (generated on first start).
func upCredentials(o upOptions) (ak, sk string, err error) {
	if o.AccessKey != "" || o.SecretKey != "" {
		if o.AccessKey == "" || o.SecretKey == "" {
			return "", "", errors.New("up: --access-key and --secret-key go together")
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

// runUp runs until ctx ends, then drains and stops everything. ready, when not nil, receives the
// endpoints once uploads are labeled.
func runUp(ctx context.Context, v *viper.Viper, o upOptions, out, logw io.Writer, ready chan<- Endpoints) error {
	log := newLogger(v, logw)
	if o.DataDir == "" {
		return errors.New("up: --data-dir must not be empty")
	}
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return fmt.Errorf("up: data directory: %w", err)
	}
	ak, sk, err := upCredentials(o)
	if err != nil {
		return err
	}
	cfg, err := inferenceConfig(v, log)
	if err != nil {
		return err
	}
	cfg.Bucket = o.Bucket

	ns, err := natsembed.Start(natsembed.Options{DataDir: filepath.Join(o.DataDir, "nats"), Port: o.NATSPort, JetStream: true})
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL(), nats.Name("hpa-up"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("up: connect to the embedded NATS server: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	const subjectPrefix = s3local.DefaultEventSubjectPrefix
	cfg.EventsSubjects = []string{subjectPrefix + ".>"}
	if _, err := s3local.EnsureStream(ctx, js, s3local.StreamConfig{Name: cfg.EventsStream, SubjectPrefix: subjectPrefix,
		Storage: jetstream.FileStorage}); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	s3srv, err := s3local.New(s3local.Options{Dir: filepath.Join(o.DataDir, "s3"), Addr: o.S3Addr, Region: o.Region,
		AccessKey: ak, SecretKey: sk, Buckets: []string{o.Bucket}, Publisher: s3local.JetStreamPublisher{JS: js},
		EventSubjectPrefix: subjectPrefix, Logger: log})
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if err := s3srv.Start(); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s3srv.Close(cctx)
	}()
	awsCfg := aws.Config{Region: o.Region, Credentials: credentials.NewStaticCredentialsProvider(ak, sk, "")}
	store := &inference.S3Store{Client: inference.NewS3Client(awsCfg, inference.S3Options{Endpoint: s3srv.Endpoint(), PathStyle: true}), Bucket: o.Bucket}
	svc, err := inference.New(nc, store, ortLoader(v, store, log), cfg)
	if err != nil {
		return err
	}
	defer svc.Close()
	if err := svc.Load(ctx, o.Model); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	var vw *viewer.Viewer
	if webEnabled(v) && o.MetricsAddr != "" {
		if vw, err = newViewer(v, log, store, nc, cfg, o.Model, ak, sk); err != nil {
			return fmt.Errorf("up: viewer: %w", err)
		}
	}
	stopMetrics, metricsAddr, err := serveMetrics(o.MetricsAddr, withViewer(svc.Handler(), vw), log)
	if err != nil {
		if vw != nil {
			vw.Close()
		}
		return fmt.Errorf("up: %w", err)
	}
	defer stopMetrics()
	if vw != nil {
		defer vw.Close() // before stopMetrics: ends the viewer's event streams
	}
	ep := Endpoints{S3Endpoint: s3srv.Endpoint(), Region: o.Region, Bucket: o.Bucket, AccessKey: ak, SecretKey: sk,
		UploadPrefix: cfg.UploadPrefix, LabelsPrefix: cfg.LabelsPrefix, NATSURL: ns.ClientURL()}
	if metricsAddr != "" {
		ep.MetricsURL = "http://" + metricsAddr + "/metrics"
		if vw != nil {
			ep.ViewerURL = "http://" + metricsAddr + "/"
		}
	}
	b, _ := json.MarshalIndent(ep, "", "  ")
	epPath := filepath.Join(o.DataDir, "endpoints.json")
	if err := os.WriteFile(epPath, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	info, _ := svc.Model()
	fmt.Fprintf(out, "hpa up: labeling service running (model %s %s, %s)\n", info.Name, info.Version, info.ManifestDigest)
	fmt.Fprintf(out, "  s3 endpoint   %s (path-style, region %s)\n  bucket        %s\n  access key    %s\n  secret key    %s\n",
		ep.S3Endpoint, ep.Region, ep.Bucket, ep.AccessKey, ep.SecretKey)
	fmt.Fprintf(out, "  upload to     s3://%s/%s<plate>/<id>_{red,green,blue,yellow}.png\n  labels at     s3://%s/%s<plate>/<id>.json\n",
		ep.Bucket, ep.UploadPrefix, ep.Bucket, ep.LabelsPrefix)
	fmt.Fprintf(out, "  nats          %s\n  metrics       %s\n  endpoints     %s\n", ep.NATSURL, ep.MetricsURL, epPath)
	if ep.ViewerURL != "" {
		fmt.Fprintf(out, "  viewer        %s (sign in with the access key and secret key)\n", ep.ViewerURL)
	}

	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	if ready != nil {
		// The consumers exist once Setup ran; wait for them so the first uploads are seen.
		for {
			if _, err := js.Consumer(ctx, cfg.ReadyStream, cfg.LabelConsumer); err == nil {
				break
			}
			select {
			case err := <-runErr:
				return err
			case <-time.After(20 * time.Millisecond):
			}
		}
		ready <- ep
	}
	err = <-runErr
	fmt.Fprintln(out, "hpa up: stopped")
	return err
}
