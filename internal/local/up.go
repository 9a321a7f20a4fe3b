package local

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/hpa-plates/hpa/internal/serve"
)

// Service is what runs on the stack: the inference consumer, wired by the command with its model
// runtime.
type Service interface {
	// Run works until ctx ends, then drains.
	Run(ctx context.Context) error
	// Handler serves /metrics, /healthz and /readyz.
	Handler() http.Handler
	// Summary names what is served, for the banner (e.g. the model set).
	Summary() string
	// Prefixes are where uploads go and where labels appear.
	Prefixes() (upload, labels string)
	// Consuming reports whether uploads made now are seen (the durable consumers exist).
	Consuming(ctx context.Context) bool
}

// PageServer is a Service whose Handler also serves the plate viewer (at "/").
type PageServer interface {
	ServesPages() bool
}

// Factory starts the service on a running stack (its connection, store and event subjects),
// serving the model set at location model.
type Factory func(ctx context.Context, st *Stack, model string) (Service, error)

// UpOptions configure Up.
type UpOptions struct {
	Stack StackOptions
	// Model is the location of the model set the service serves.
	Model string
	// MetricsAddr serves /metrics, /healthz, /readyz ("" = off; port 0 = a free port).
	MetricsAddr string
}

// Up runs the stack and the service of start until ctx ends, then drains and stops everything.
// It prints the endpoints and credentials to out and writes them to <data-dir>/endpoints.json.
// ready, when not nil, receives the endpoints once uploads are seen.
func Up(ctx context.Context, o UpOptions, out io.Writer, start Factory, ready chan<- Endpoints) error {
	st, err := Start(ctx, o.Stack)
	if err != nil {
		return err
	}
	defer st.Close()
	svc, err := start(ctx, st, o.Model)
	if err != nil {
		return err
	}
	if c, ok := svc.(io.Closer); ok {
		defer c.Close()
	}
	l, err := serve.Listen(o.MetricsAddr, svc.Handler(), o.Stack.Log)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	defer l.Close()
	ep := st.Endpoints
	ep.UploadPrefix, ep.LabelsPrefix = svc.Prefixes()
	if l.Addr() != "" {
		ep.MetricsURL = "http://" + l.Addr() + "/metrics"
		if ps, ok := svc.(PageServer); ok && ps.ServesPages() {
			ep.ViewerURL = "http://" + l.Addr() + "/"
		}
	}
	epPath := filepath.Join(o.Stack.DataDir, "endpoints.json")
	if err := ep.Write(epPath); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	fmt.Fprintf(out, "hpa up: labeling service running (model %s)\n", svc.Summary())
	fmt.Fprintf(out, "  s3 endpoint   %s (path-style, region %s)\n  bucket        %s\n  access key    %s\n  secret key    %s\n",
		ep.S3Endpoint, ep.Region, ep.Bucket, ep.AccessKey, ep.SecretKey)
	fmt.Fprintf(out, "  upload to     s3://%s/%s<plate>/<id>_{red,green,blue,yellow}.png\n  labels at     s3://%s/%s<plate>/<id>.json\n",
		ep.Bucket, ep.UploadPrefix, ep.Bucket, ep.LabelsPrefix)
	fmt.Fprintf(out, "  nats          %s (user %s, password in the endpoints file)\n  metrics       %s\n  endpoints     %s\n",
		ep.NATSURL, ep.NATSUser, ep.MetricsURL, epPath)
	if ep.ViewerURL != "" {
		fmt.Fprintf(out, "  viewer        %s (sign in with the access key and secret key)\n", ep.ViewerURL)
	}

	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	if ready != nil {
		for !svc.Consuming(ctx) {
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
