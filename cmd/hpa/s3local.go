package main

import (
	"context"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/local"
	"github.com/hpa-plates/hpa/internal/serve"
)

func init() {
	subcommands = append(subcommands, func(v *viper.Viper) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "s3local --dir DIR --access-key K --secret-key S [--addr HOST:PORT] [--buckets b1,b2] [--nats-url URL | --nats-embedded]",
			Short: "Run a local S3-compatible server that announces new objects on NATS JetStream",
			Long: "Serves the S3 API (path-style; aws cli, boto3, mc and the AWS SDKs work against it) with objects\n" +
				"persisted under --dir. Every created object (put, copy, completed multipart upload) is announced as an\n" +
				"Amazon-format S3 event on JetStream subject <subject-prefix>.<bucket>, through a crash-safe journal; the\n" +
				"stream is created when missing. --nats-embedded runs a JetStream server in this process (store under\n" +
				"--nats-dir); --nats-url uses an existing one; with neither, no events are published.\n" +
				"Runs until interrupted (SIGINT/SIGTERM).",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				ctx, stop := serve.SignalContext(cmd.Context())
				defer stop()
				return runS3Local(ctx, v, cmd.OutOrStdout(), nil)
			},
		}
		f := cmd.Flags()
		f.String("dir", "hpa-data/s3", "directory holding buckets, objects and the event journal")
		f.String("addr", "127.0.0.1:9000", "listen address (port 0: a free port)")
		f.String("region", "us-east-1", "region reported to clients and in events")
		f.String("access-key", "", "the access key clients sign with (required)")
		f.String("secret-key", "", "the secret key clients sign with (required)")
		f.StringSlice("buckets", []string{"plates"}, "buckets created at start when missing")
		f.String("nats-url", "", "publish events to this NATS server (JetStream enabled)")
		f.Bool("nats-embedded", false, "run an embedded NATS JetStream server for the events")
		f.String("nats-dir", "hpa-data/nats", "JetStream store of the embedded server")
		f.Int("nats-port", 4222, "client port of the embedded server (0: a free port)")
		f.Bool("nats-sync-always", false, "embedded server fsyncs every message (acked events survive power loss; slower)")
		f.String("subject-prefix", bus.EventsSubjectPrefix, "events go to <prefix>.<bucket>")
		f.String("stream", bus.EventsStream, "JetStream stream capturing <prefix>.> (created when missing)")
		f.Duration("publish-timeout", 10*time.Second, "wait at most this long for JetStream's ack of an event")
		config.BindFlags(v, cmd, "s3local", nil)
		return cmd
	})
}

// runS3Local serves until ctx ends (local.ServeS3).
func runS3Local(ctx context.Context, v *viper.Viper, out io.Writer, ready chan<- [2]string) error {
	return local.ServeS3(ctx, config.S3Local(v), out, ready)
}
