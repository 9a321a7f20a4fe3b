package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/serve"
	"github.com/hpa-plates/hpa/producers/replay"
)

func init() {
	subcommands = append(subcommands, newReplayCmd)
}

// replayFlagKeys maps hpa replay's shared flags to their keys (the rest are replay.*).
var replayFlagKeys = map[string]string{
	"upload-prefix": "inference.upload_prefix", "labels-prefix": "inference.labels_prefix",
	"key-pattern": "inference.key_pattern", "events-stream": "inference.events_stream",
	"model-pointer": "inference.model_pointer",
	"nats-url":      "nats.url", "nats-user": "nats.user", "nats-password": "nats.password", "nats-token": "nats.token",
	"nats-nkey": "nats.nkey", "nats-creds": "nats.creds", "nats-tls-ca": "nats.tls_ca", "nats-tls-cert": "nats.tls_cert",
	"nats-tls-key": "nats.tls_key",
	"s3-endpoint":  "s3.endpoint", "s3-region": "s3.region", "s3-path-style": "s3.path_style", "bucket": "s3.bucket",
	"s3-access-key": "s3.access_key", "s3-secret-key": "s3.secret_key",
}

func newReplayCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay [s3://bucket/prefix] [--since T --until T] [--rate N] [--dry-run] [--force] | --stream --since T | --reconcile s3://bucket/prefix",
		Short: "Publish S3 object events again for a backfill (old plates, or all plates after a promotion)",
		Long: `Lists s3://bucket/prefix a page at a time, groups the channel objects of each sample and publishes each
complete sample as an S3 event notification on the replay subject (s3.replay.<bucket>, stream HPA_REPLAY),
which the inference consumer labels after live uploads. By default only stale samples are published:
without a label, with a label older than a channel, or with a label of another model than the serving
one (--model-digest, --model, the model pointer inference.model_pointer, or the current-model fact in
the KV bucket hpa_models); --force publishes all.
--stream --since T re-delivers the stored events of the events stream from T; --reconcile publishes
samples whose four channels are in S3 but that have neither a label nor an error record.
Progress is checkpointed in the KV bucket hpa_replay: the same command run again after a crash or
Ctrl-C continues where it stopped (--restart starts over). --endpoints takes the endpoints.json of
"hpa up".`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "replay", replayFlagKeys)
			ctx, stop := serve.SignalContext(cmd.Context())
			defer stop()
			st, err := config.Replay(v)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				st.Options.Source = args[0]
			}
			return runReplay(ctx, v, cmd, st)
		},
	}
	f := cmd.Flags()
	f.String("since", "", "replay objects modified (--stream: events stored) from this time: RFC 3339, YYYY-MM-DD or a duration before now (36h)")
	f.String("until", "", "and before this time (same forms)")
	f.Float64("rate", 0, "publish at most this many objects per second (0: unlimited)")
	f.Bool("dry-run", false, "list and decide, publish nothing")
	f.Bool("only-stale", true, "publish only samples whose label is missing, older than a channel or of another model (the default)")
	f.Bool("force", false, "publish every sample and have it labeled again")
	f.Bool("stream", false, "re-deliver the stored events of the events stream from --since instead of listing S3")
	f.Bool("reconcile", false, "publish samples with four channels in S3 but neither label nor error record")
	f.Bool("restart", false, "ignore an unfinished checkpoint of the same replay and start over")
	f.String("model", "", "the serving model set (manifest, directory or s3://bucket/prefix/) whose digest is current")
	f.String("model-digest", "", "the current model's manifest digest (sha256:...); wins over --model and --model-pointer")
	f.String("model-pointer", "", "S3 key naming the serving model set's location (the consumers' model pointer)")
	f.Int("workers", 16, "concurrent label checks")
	f.Duration("checkpoint-every", 0, "checkpoint progress this often (0: every second)")
	f.String("progress", "auto", "auto (a bar on a terminal, logs otherwise), bar, log or off")
	f.String("upload-prefix", "incoming/", "key prefix of uploaded channel images")
	f.String("labels-prefix", "labels/", "key prefix of labels and error records")
	f.String("key-pattern", "", "regexp with groups plate, id, channel below the upload prefix (default: <plate>/<id>_<channel>.<ext>)")
	f.String("events-stream", bus.EventsStream, "the events stream --stream reads")
	connectionFlags(f)
	return cmd
}

func runReplay(ctx context.Context, v *viper.Viper, cmd *cobra.Command, st config.ReplaySettings) error {
	o := st.Options
	if err := o.Validate(); err != nil {
		return err
	}
	log := newLogger(v, cmd.ErrOrStderr())
	o.Logger, o.Out = log, cmd.ErrOrStderr()
	if f, ok := cmd.ErrOrStderr().(*os.File); ok {
		o.Out = f
	}
	nc, err := bus.Connect(config.NATS(v), "hpa-replay", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	o.NC = nc
	s3c := config.S3(v)
	var store *objstore.Bucket
	if !o.Stream || o.ModelDigest == "" && (st.Model != "" || st.ModelPointer != "") {
		if o.Source != "" {
			u, err := objstore.ParseURL(o.Source)
			if err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			s3c.Bucket = u.Bucket
		}
		if store, err = objstore.Open(ctx, s3c); err != nil {
			return err
		}
		o.Store = store
	}
	if o.ModelDigest == "" && !o.Force && !o.Stream {
		loc := st.Model
		if loc == "" && st.ModelPointer != "" {
			if loc, err = replay.PointerLocation(ctx, store, st.ModelPointer); err != nil {
				return err
			}
		}
		if loc != "" {
			get := func(ctx context.Context, bucket, key string) ([]byte, error) {
				return (&objstore.Bucket{Client: store.Client, Name: bucket}).Get(ctx, key, 64<<20)
			}
			if o.ModelDigest, err = replay.ModelDigest(ctx, loc, get); err != nil {
				return err
			}
			log.Info("current model", "location", loc, "digest", o.ModelDigest)
		}
	}
	sum, err := replay.Run(ctx, o)
	fmt.Fprintln(cmd.OutOrStdout(), sum.String())
	return err
}
