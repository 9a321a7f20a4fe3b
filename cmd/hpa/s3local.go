package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/natsembed"
	"github.com/hpa-plates/hpa/internal/s3local"
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
		f.String("stream", "S3_EVENTS", "JetStream stream capturing <prefix>.> (created when missing)")
		f.Duration("publish-timeout", 10*time.Second, "wait at most this long for JetStream's ack of an event")
		config.BindFlags(v, cmd, "s3local", nil)
		return cmd
	})
}

// runS3Local serves until ctx ends. ready, when not nil, receives the S3 endpoint and the NATS
// URL ("" without events) once both accept connections.
func runS3Local(ctx context.Context, v *viper.Viper, out io.Writer, ready chan<- [2]string) error {
	natsURL := v.GetString("s3local.nats_url")
	embedded := v.GetBool("s3local.nats_embedded")
	if natsURL != "" && embedded {
		return fmt.Errorf("s3local: --nats-url and --nats-embedded exclude each other")
	}
	var pub bus.Publisher
	if embedded {
		ns, err := natsembed.Start(natsembed.Options{DataDir: v.GetString("s3local.nats_dir"), Port: v.GetInt("s3local.nats_port"),
			JetStream: true, SyncAlways: v.GetBool("s3local.nats_sync_always")})
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		natsURL = ns.ClientURL()
		fmt.Fprintf(out, "nats: embedded JetStream at %s (store %s)\n", natsURL, filepath.Clean(v.GetString("s3local.nats_dir")))
	}
	if natsURL != "" {
		nc, err := nats.Connect(natsURL, nats.Name("hpa s3local"), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("s3local: connect to NATS %s: %w", natsURL, err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("s3local: JetStream on %s: %w", natsURL, err)
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		prefix := v.GetString("s3local.subject_prefix")
		_, err = bus.EnsureEventsStream(sctx, js, bus.EventsStreamConfig{Name: v.GetString("s3local.stream"),
			Subjects: []string{prefix + ".>"}, MustCapture: prefix + ".>", Storage: jetstream.FileStorage})
		cancel()
		if err != nil {
			return err
		}
		pub = bus.JetStreamPublisher{JS: js}
	}
	srv, err := s3local.New(s3local.Options{
		Dir: v.GetString("s3local.dir"), Addr: v.GetString("s3local.addr"), Region: v.GetString("s3local.region"),
		AccessKey: v.GetString("s3local.access_key"), SecretKey: v.GetString("s3local.secret_key"),
		Buckets: splitList(v.GetStringSlice("s3local.buckets")), Publisher: pub,
		EventSubjectPrefix: v.GetString("s3local.subject_prefix"), PublishTimeout: v.GetDuration("s3local.publish_timeout"),
	})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	fmt.Fprintf(out, "s3: serving %s (store %s, buckets %v)\n", srv.Endpoint(), filepath.Clean(v.GetString("s3local.dir")), splitList(v.GetStringSlice("s3local.buckets")))
	if pub != nil {
		fmt.Fprintf(out, "events: %s.<bucket> on stream %s\n", v.GetString("s3local.subject_prefix"), v.GetString("s3local.stream"))
	}
	if ready != nil {
		ready <- [2]string{srv.Endpoint(), natsURL}
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Close(sctx); err != nil {
		return fmt.Errorf("s3local: shutdown: %w", err)
	}
	if n := srv.PendingEvents(); n > 0 {
		fmt.Fprintf(out, "s3: %d events still pending; they are published at the next start\n", n)
	}
	return nil
}

// splitList accepts lists written with commas or spaces (flags give "a,b"; HPA_* variables and
// config files may give "a b" or "a,b").
func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
			out = append(out, f)
		}
	}
	return out
}
