package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/serve"
)

// SQSConfig selects the SQS service and credentials. Empty credentials use the standard AWS chain
// (environment, shared files, SSO, web identity / IRSA, ECS/EC2 roles).
type SQSConfig struct {
	// Endpoint overrides the SQS endpoint (a local SQS server); empty: AWS.
	Endpoint string
	// Region of the queue; empty: the chain's (us-east-1 when none).
	Region               string
	AccessKey, SecretKey string
}

// NewSQSClient builds an SQS client.
func NewSQSClient(ctx context.Context, c SQSConfig) (*sqs.Client, error) {
	cfg, err := objstore.AWSConfig(ctx, c.Region, c.AccessKey, c.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("bridge: sqs client: %w", err)
	}
	return sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(strings.TrimRight(c.Endpoint, "/"))
		}
	}), nil
}

// MainOptions configure Main (`hpa bridge`).
type MainOptions struct {
	NATS bus.Config
	SQS  SQSConfig
	// Options without SQS, NC and Metrics (Main makes them).
	Options Options
	// MetricsAddr is the listen address of /metrics, /healthz, /readyz ("" = off).
	MetricsAddr string
}

// Main runs the bridge until ctx ends, then drains: the batches in hand are published and
// deleted before it returns.
func Main(ctx context.Context, m MainOptions) error {
	o := m.Options
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.QueueURL == "" {
		return errors.New("bridge: the SQS queue URL is required (bridge.sqs_queue_url, --sqs-queue-url)")
	}
	nc, err := bus.Connect(m.NATS, "hpa-bridge", o.Logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	client, err := NewSQSClient(ctx, m.SQS)
	if err != nil {
		return err
	}
	o.SQS, o.NC, o.Metrics = client, nc, NewMetrics()
	b, err := New(ctx, o)
	if err != nil {
		return err
	}
	l, err := serve.Listen(m.MetricsAddr, serve.Handler(o.Metrics.Registry, b.Ready), o.Logger)
	if err != nil {
		return err
	}
	defer l.Close()
	o.Logger.Info("bridge running", "queue", o.QueueURL, "nats", nc.ConnectedUrlRedacted(), "pollers", b.o.Pollers)
	err = b.Run(ctx)
	o.Logger.Info("bridge stopped")
	return err
}
