package inference

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/serve"
)

// MainOptions configure Main: the connections, the consumer's Config, the model set to serve and
// the listener of /metrics, /healthz and /readyz.
type MainOptions struct {
	NATS   bus.Config
	S3     objstore.Config
	Config Config
	// Model is the location of the model set served first (a manifest path, a directory, or
	// s3://bucket/prefix).
	Model string
	// MetricsAddr is the listen address of /metrics, /healthz, /readyz ("" = off).
	MetricsAddr string
	// NewLoader makes the model loader; it gets the S3 client for s3:// locations. The command
	// wires the model runtime in here, so this package imports none.
	NewLoader func(*s3.Client) model.Loader
	// Pages, when set, is given the replica's connection, bucket and HTTP handler and returns
	// the handler to serve instead (the command adds the plate viewer this way).
	Pages func(ctx context.Context, nc *nats.Conn, store *objstore.Bucket, h http.Handler) (http.Handler, error)
}

// Main runs one replica as `hpa inference` does: it connects to NATS, opens the bucket, loads the
// model set, serves the HTTP endpoints and runs until ctx ends (then drains) or a stage fails.
func Main(ctx context.Context, o MainOptions) error {
	log := o.Config.Logger
	nc, err := bus.Connect(o.NATS, "hpa-inference", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := objstore.Open(ctx, o.S3)
	if errors.Is(err, objstore.ErrNoBucket) {
		return errors.New("s3: --bucket (s3.bucket) is required")
	}
	if err != nil {
		return err
	}
	svc, err := New(nc, store, o.NewLoader(store.Client), o.Config)
	if err != nil {
		return err
	}
	defer svc.Close()
	// A promotion made while no replica ran (the current-model fact) wins over the configured set.
	first := o.Model
	if cur := svc.CurrentModel(ctx); cur != "" && !o.Config.NoWatchCurrent {
		first = cur
	}
	if err := svc.Load(ctx, first); err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	h := svc.Handler()
	if o.Pages != nil && o.MetricsAddr != "" {
		if h, err = o.Pages(ctx, nc, store, h); err != nil {
			return err
		}
	}
	l, err := serve.Listen(o.MetricsAddr, h, svc.log)
	if err != nil {
		return err
	}
	defer l.Close()
	svc.log.Info("inference consumer running", "nats", nc.ConnectedUrlRedacted(), "bucket", o.S3.Bucket,
		"upload_prefix", svc.cfg.UploadPrefix, "labels_prefix", svc.cfg.LabelsPrefix)
	return svc.Run(ctx)
}
