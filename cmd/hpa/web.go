package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/serve"
	"github.com/hpa-plates/hpa/internal/viewer"
)

func init() {
	subcommands = append(subcommands, newWebCmd)
}

// webFlagKeys maps hpa web's flags to the keys it shares: the consumers' prefixes and subjects
// (inference.*) and the nats.* and s3.* connection (as inferenceFlagKeys).
var webFlagKeys = map[string]string{
	"upload-prefix": "inference.upload_prefix", "labels-prefix": "inference.labels_prefix",
	"labels-subject": "inference.labels_subject", "dlq-subject": "inference.dlq_subject",
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
sets, training runs and promotion decisions. Read-only (it caches thumbnails under web.thumbs_prefix);
live updates come from the label events on NATS. Sign in with the S3 access key and secret key (HTTP
basic auth), or with --token. --endpoints takes the endpoints.json of "hpa up" as the default S3 and
NATS settings.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "web", webFlagKeys)
			ctx, stop := serve.SignalContext(cmd.Context())
			defer stop()
			c, err := config.Web(v)
			if err != nil {
				return err
			}
			icfg, err := config.Inference(v)
			if err != nil {
				return err
			}
			c.Logger = newLogger(v, cmd.ErrOrStderr())
			return viewer.Main(ctx, viewer.MainOptions{NATS: config.NATS(v), S3: config.S3(v), Config: c, Addr: v.GetString("web.addr"),
				Deployment: viewer.Deployment{Topology: icfg.Topology, Model: v.GetString("web.model"), ModelPointer: v.GetString("web.model_pointer")},
			}, cmd.OutOrStdout(), nil)
		},
	}
	f := cmd.Flags()
	d := viewer.DefaultConfig()
	f.String("addr", "127.0.0.1:8080", "listen address of the viewer (and /healthz)")
	f.String("token", "", "access token accepted as the basic-auth password or a bearer token (besides the S3 keys)")
	f.String("model", "", "location of the serving model set (manifest path, directory or s3://bucket/prefix/)")
	f.String("model-pointer", "", "S3 key naming the serving model set's location (the consumers' model pointer); wins over --model")
	f.String("upload-prefix", d.UploadPrefix, "key prefix of uploaded channel images")
	f.String("labels-prefix", d.LabelsPrefix, "key prefix of label JSON, error records and plate CSVs")
	f.String("labels-subject", "hpa.labels", "subject prefix of label-written events")
	f.String("dlq-subject", "hpa.dlq", "subject prefix of dead letters (failed samples)")
	connectionFlags(f)
	return cmd
}
