package main

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/consumers/inference"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/local"
	"github.com/hpa-plates/hpa/internal/model/ort"
	"github.com/hpa-plates/hpa/internal/serve"
	"github.com/hpa-plates/hpa/internal/viewer"
)

func init() {
	subcommands = append(subcommands, newUpCmd)
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
			ctx, stop := serve.SignalContext(cmd.Context())
			defer stop()
			o := config.Up(v, "up")
			start, err := inferenceOnStack(v, cmd.ErrOrStderr(), &o)
			if err != nil {
				return err
			}
			if v.GetBool("up.training") {
				if start, err = withTrainingOnStack(v, cmd.ErrOrStderr(), o.Stack.DataDir, start, nil); err != nil {
					return err
				}
			}
			return local.Up(ctx, o, cmd.OutOrStdout(), start, nil)
		},
	}
	upFlags(cmd.Flags(), "127.0.0.1:9000", 4222, "127.0.0.1:9090", "hpa-data")
	cmd.Flags().Bool("training", true, "run the training consumer too: a coordinator and one CPU worker (training.* keys)")
	return cmd
}

// inferenceOnStack is the service of `hpa up` and `hpa demo`: the inference consumer (inference.*
// keys) with the ONNX Runtime model loader, on the local stack.
func inferenceOnStack(v *viper.Viper, logw io.Writer, o *local.UpOptions) (local.Factory, error) {
	log := newLogger(v, logw)
	cfg, err := inferenceConfig(v, log)
	if err != nil {
		return nil, err
	}
	o.Stack.Log, o.Stack.EventsStream = log, cfg.EventsStream
	rt := config.Runtime(v)
	rt.MaxBatch = cfg.MaxBatch
	var wcfg *viewer.Config
	if config.WebEnabled(v) && o.MetricsAddr != "" {
		c, err := config.Web(v)
		if err != nil {
			return nil, err
		}
		c.Logger = log
		wcfg = &c
	}
	return func(ctx context.Context, st *local.Stack, model string) (local.Service, error) {
		cfg.Bucket, cfg.EventsSubjects = st.Endpoints.Bucket, st.EventsSubjects
		svc, err := inference.New(st.Conn, st.Store, ort.NewLoader(rt, st.Store.Client), cfg)
		if err != nil {
			return nil, err
		}
		if err := svc.Load(ctx, model); err != nil {
			_ = svc.Close()
			return nil, fmt.Errorf("up: %w", err)
		}
		if wcfg == nil {
			return svc, nil
		}
		c := *wcfg
		c.Bucket, c.AccessKey, c.SecretKey = st.Endpoints.Bucket, st.Endpoints.AccessKey, st.Endpoints.SecretKey
		c.UploadPrefix, c.LabelsPrefix = cfg.UploadPrefix, cfg.LabelsPrefix
		vw, err := viewer.ForDeployment(st.Store, c, viewer.Deployment{Conn: st.Conn, Topology: cfg.Topology,
			Model: model, ModelPointer: cfg.ModelPointer})
		if err != nil {
			_ = svc.Close()
			return nil, fmt.Errorf("up: viewer: %w", err)
		}
		return withPages{Service: svc, vw: vw, h: viewer.Mount(ctx, svc.Handler(), vw)}, nil
	}, nil
}

// withPages is the service of `hpa up` with the plate viewer on its listener.
type withPages struct {
	local.Service
	vw *viewer.Viewer
	h  http.Handler
}

func (w withPages) Handler() http.Handler { return w.h }
func (w withPages) ServesPages() bool     { return true }

func (w withPages) Close() error {
	w.vw.Close()
	if c, ok := w.Service.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
