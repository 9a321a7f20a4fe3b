package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/serve"
	"github.com/hpa-plates/hpa/producers/bridge"
)

func init() {
	subcommands = append(subcommands, newBridgeCmd)
}

// bridgeFlagKeys maps hpa bridge's shared flags to their keys (the rest are bridge.*).
var bridgeFlagKeys = map[string]string{
	"events-stream": "inference.events_stream",
	"nats-url":      "nats.url", "nats-user": "nats.user", "nats-password": "nats.password", "nats-token": "nats.token",
	"nats-nkey": "nats.nkey", "nats-creds": "nats.creds", "nats-tls-ca": "nats.tls_ca", "nats-tls-cert": "nats.tls_cert",
	"nats-tls-key": "nats.tls_key",
}

func newBridgeCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bridge --sqs-queue-url URL",
		Short: "Move AWS S3 event notifications from an SQS queue to the NATS events stream",
		Long: `Long-polls the SQS queue that an S3 bucket's event notifications go to (directly, through SNS, or as
EventBridge events) and publishes every record to the events stream (s3.events.<bucket>) with a
deduplication id, deleting each SQS message only after JetStream acknowledged all of its records.
Unparsable messages get a dead-letter record (stream HPA_DLQ) and stay in the queue for its redrive
policy. While NATS is unreachable nothing is deleted. SQS credentials come from the AWS chain
(environment, shared files, IRSA, instance roles). Serves /metrics, /healthz and /readyz on
--metrics-addr; SIGINT/SIGTERM finish the batches in hand.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "bridge", bridgeFlagKeys)
			ctx, stop := serve.SignalContext(cmd.Context())
			defer stop()
			m := config.Bridge(v)
			m.NATS = config.NATS(v)
			m.Options.Logger = newLogger(v, cmd.ErrOrStderr())
			return bridge.Main(ctx, m)
		},
	}
	f := cmd.Flags()
	f.String("sqs-queue-url", "", "URL of the SQS queue the bucket notifications go to (required)")
	f.String("sqs-endpoint", "", "SQS endpoint URL (empty: AWS)")
	f.String("sqs-region", "", "region of the queue (empty: the AWS chain's)")
	f.Int("pollers", 4, "concurrent long-poll loops")
	f.Duration("wait-time", 0, "long-poll wait of a receive (0: 20s)")
	f.Duration("visibility", 0, "visibility timeout kept while a batch is worked on (0: 30s)")
	f.Duration("publish-timeout", 0, "wait for a batch's JetStream acknowledgements (0: 10s)")
	f.Duration("retry-delay", 0, "an unpublished message is visible again after this delay, doubled per receive (0: 1s)")
	f.String("subject-prefix", bus.EventsSubjectPrefix, "records of a bucket go to <prefix>.<bucket>")
	f.String("events-stream", bus.EventsStream, "events stream (created when missing)")
	f.String("metrics-addr", "127.0.0.1:9092", "listen address of /metrics, /healthz and /readyz (empty: off)")
	natsFlags(f)
	return cmd
}
