package main

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/consumers/training"
	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/model/ort"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/serve"
	"github.com/hpa-plates/hpa/producers/replay"
)

func init() {
	subcommands = append(subcommands, newTrainingCmd)
}

func newTrainingCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "training",
		Short: "The training consumer: labeled data in S3 retrains the fold models; guarded promotion",
		Long: `Label files (Id,Target) uploaded under training.labels_prefix, naming samples whose channel images are
under training.images_prefix, grow a dataset registry. When enough samples are new (training.min_new or
training.growth_percent) and no label file arrived for training.quiet, the coordinator freezes a dataset
snapshot and queues K fold jobs; workers train them (checkpointing to S3 every epoch), the coordinator
merges the folds into a model set under models/<version>/ and promotes it when it is not worse than
production. See consumers/training/README.md.`,
	}
	cmd.AddCommand(newTrainingCoordinatorCmd(v), newTrainingWorkerCmd(v), newTrainingTriggerCmd(v), newTrainingStatusCmd(v))
	return cmd
}

// trainingWorkerFlagKeys are the connection keys plus the libtorch ones of `hpa training worker`.
var trainingWorkerFlagKeys = map[string]string{
	"nats-url": "nats.url", "nats-user": "nats.user", "nats-password": "nats.password", "nats-token": "nats.token",
	"nats-nkey": "nats.nkey", "nats-creds": "nats.creds", "nats-tls-ca": "nats.tls_ca", "nats-tls-cert": "nats.tls_cert",
	"nats-tls-key": "nats.tls_key",
	"s3-endpoint":  "s3.endpoint", "s3-region": "s3.region", "s3-path-style": "s3.path_style", "bucket": "s3.bucket",
	"s3-access-key": "s3.access_key", "s3-secret-key": "s3.secret_key",
	"torch-threads": "torch.threads", "torch-library": "torch.library",
}

func newTrainingCoordinatorCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run the coordinator: dataset registry, run policy, fold jobs, merge, guarded promotion",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "training", inferenceFlagKeys)
			ctx, stop := serve.SignalContext(cmd.Context())
			defer stop()
			log := newLogger(v, cmd.ErrOrStderr())
			cfg, err := config.Training(v)
			if err != nil {
				return err
			}
			newScorer, err := productionScorer(v)
			if err != nil {
				return err
			}
			newRelabeler, err := replayRelabeler(v, log)
			if err != nil {
				return err
			}
			return training.MainCoordinator(ctx, training.MainOptions{NATS: config.NATS(v), S3: config.S3(v), Config: cfg,
				MetricsAddr: v.GetString("training.metrics_addr"), Logger: log, NewScorer: newScorer, NewRelabeler: newRelabeler})
		},
	}
	f := cmd.Flags()
	d := training.DefaultConfig()
	f.Int("min-new", d.MinNew, "start a run when this many labeled samples are new since the production model's dataset")
	f.Float64("growth-percent", d.GrowthPercent, "... or when the new samples grew that dataset by this many percent")
	f.Duration("quiet", d.Quiet, "no run while label files keep arriving within this period")
	f.String("metrics-addr", "", "listen address of /metrics, /healthz and /readyz (empty: off)")
	connectionFlags(f)
	return cmd
}

func newTrainingWorkerCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Train fold jobs from the work queue, one at a time (resumes a killed worker's job from its S3 checkpoint)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "training_worker", trainingWorkerFlagKeys)
			ctx, stop := serve.SignalContext(cmd.Context())
			defer stop()
			log := newLogger(v, cmd.ErrOrStderr())
			cfg, err := config.Training(v)
			if err != nil {
				return err
			}
			wc := config.TrainingWorker(v)
			wc.Once = v.GetBool("training_worker.once")
			return training.MainWorker(ctx, training.MainOptions{NATS: config.NATS(v), S3: config.S3(v), Config: cfg, Worker: wc,
				MetricsAddr: v.GetString("training_worker.metrics_addr"), Logger: log})
		},
	}
	f := cmd.Flags()
	f.String("device", "cpu", "cpu | cuda | cuda:N")
	f.String("name", "", "worker name in fold progress (default: the host name)")
	f.Int("workers", 2, "decode + augment workers")
	f.Duration("ack-wait", 0, "a job whose worker stopped heartbeating goes to another after this long (default 1m)")
	f.Bool("once", false, "exit after one job")
	f.Int("torch-threads", 0, "libtorch intra-op threads (0: one per core)")
	f.String("torch-library", "", "path of libhpatorch.so (default: the one setup built)")
	f.String("metrics-addr", "", "listen address of /metrics, /healthz and /readyz (empty: off)")
	connectionFlags(f)
	return cmd
}

func newTrainingTriggerCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trigger",
		Short: "Ask the coordinator for a run now, whatever the policy says (it starts when no run is in progress)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "", inferenceFlagKeys)
			ctx := cmd.Context()
			tcfg, err := config.Training(v)
			if err != nil {
				return err
			}
			c, err := training.Dial(ctx, config.NATS(v), config.S3(v), "hpa-training-trigger", newLogger(v, cmd.ErrOrStderr()))
			if err != nil {
				return err
			}
			defer c.Close()
			if err := training.Trigger(ctx, c.JS, tcfg.Topology, "hpa training trigger"); err != nil {
				return err
			}
			cmd.Println("run requested; `hpa training status` shows it")
			return nil
		},
	}
	connectionFlags(cmd.Flags())
	return cmd
}

func newTrainingStatusCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the dataset registry, the run in progress (fold by fold: epoch, loss, ETA) and the last decisions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "training_status", inferenceFlagKeys)
			ctx := cmd.Context()
			cfg, err := config.Training(v)
			if err != nil {
				return err
			}
			c, err := training.Dial(ctx, config.NATS(v), config.S3(v), "hpa-training-status", newLogger(v, cmd.ErrOrStderr()))
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := training.Status(ctx, c, cfg, v.GetInt("training_status.decisions"))
			if err != nil {
				return err
			}
			if v.GetBool("training_status.json") {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return training.WriteStatus(cmd.OutOrStdout(), st)
		},
	}
	cmd.Flags().Int("decisions", 5, "last decisions to show")
	cmd.Flags().Bool("json", false, "print JSON")
	connectionFlags(cmd.Flags())
	return cmd
}

// productionScorer scores the production set on the candidate's snapshot with ONNX Runtime (the
// guard compares both on the same samples).
func productionScorer(v *viper.Viper) (func(*objstore.Bucket) training.Scorer, error) {
	rt := config.Runtime(v)
	dec, err := config.Decode(v)
	if err != nil {
		return nil, err
	}
	return func(st *objstore.Bucket) training.Scorer {
		return training.LoaderScorer{Load: ort.NewLoader(rt, st.Client), Store: st, Decode: dec}
	}, nil
}

// replayRelabeler relabels after a promotion with the replay producer: every sample below the
// inference consumer's upload prefix whose label is not of the promoted model's digest is published
// again (`hpa replay --only-stale`).
func replayRelabeler(v *viper.Viper, log *slog.Logger) (func(*nats.Conn, *objstore.Bucket) training.Relabeler, error) {
	icfg, err := config.Inference(v)
	if err != nil {
		return nil, err
	}
	return func(nc *nats.Conn, st *objstore.Bucket) training.Relabeler {
		return training.RelabelFunc(func(ctx context.Context, p bus.Promotion) error {
			sum, err := replay.Run(ctx, replay.Options{Source: "s3://" + st.Name + "/" + icfg.UploadPrefix, ModelDigest: p.ManifestDigest,
				UploadPrefix: icfg.UploadPrefix, LabelsPrefix: icfg.LabelsPrefix, KeyPattern: icfg.KeyPattern, Topology: icfg.Topology,
				NC: nc, Store: st, Logger: log, Progress: replay.ProgressLog})
			log.Info("relabel after promotion", "version", p.Version, "summary", sum.String())
			return err
		})
	}, nil
}
