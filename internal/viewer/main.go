package viewer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/nats-io/nats.go"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/serve"
)

// Deployment says where a labeling deployment keeps what the viewer shows, beyond Config.
type Deployment struct {
	// Conn receives the label events; Topology names their subjects (zero fields: bus defaults).
	Conn     *nats.Conn
	Topology bus.Topology
	// Model is the serving model set's location; ModelPointer, when set, the key of the
	// consumers' model pointer, which wins while it exists.
	Model, ModelPointer string
}

// ForDeployment builds the viewer of a deployment: live over d.Conn, its model from d.
func ForDeployment(store ObjectStore, c Config, d Deployment) (*Viewer, error) {
	if d.Conn != nil {
		c.Events = NATSEvents{Conn: d.Conn, Topology: d.Topology}
	}
	if d.Model != "" {
		c.Model = StaticModel(d.Model)
	}
	if d.ModelPointer != "" {
		c.Model = PointerModel(store, d.ModelPointer, d.Model)
	}
	return New(store, c)
}

// Mount serves /metrics, /healthz and /readyz from svc and every other path from the viewer.
// The viewer's event streams end when ctx does, so the listener can stop at once.
func Mount(ctx context.Context, svc http.Handler, vw *Viewer) http.Handler {
	context.AfterFunc(ctx, vw.Close)
	mux := http.NewServeMux()
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		mux.Handle(p, svc)
	}
	mux.Handle("/", vw.Handler())
	return mux
}

// MainOptions configure Main.
type MainOptions struct {
	NATS bus.Config
	S3   objstore.Config
	// Config is the viewer's (Bucket comes from S3).
	Config Config
	// Deployment: the subjects and the model (Conn is Main's own connection).
	Deployment Deployment
	// Addr is the listen address of the viewer and /healthz.
	Addr string
}

// Main runs `hpa web`: the viewer against any S3 + NATS until ctx ends. It prints the URL to out;
// ready, when not nil, receives it.
func Main(ctx context.Context, o MainOptions, out io.Writer, ready chan<- string) error {
	log := o.Config.Logger
	if o.Addr == "" {
		return errors.New("web: --addr must not be empty")
	}
	store, err := objstore.Open(ctx, o.S3)
	if errors.Is(err, objstore.ErrNoBucket) {
		return errors.New("web: --bucket (s3.bucket) is required")
	}
	if err != nil {
		return err
	}
	nc, err := bus.Connect(o.NATS, "hpa-web", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	c := o.Config
	c.Bucket = o.S3.Bucket
	d := o.Deployment
	d.Conn = nc
	vw, err := ForDeployment(store, c, d)
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	defer vw.Close()
	context.AfterFunc(ctx, vw.Close) // end the event streams so the listener stops at once
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("/", vw.Handler())
	l, err := serve.Listen(o.Addr, mux, log)
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	defer l.Close()
	url := "http://" + l.Addr() + "/"
	fmt.Fprintf(out, "hpa web: plate viewer at %s (bucket %s, NATS %s)\n", url, o.S3.Bucket, nc.ConnectedUrlRedacted())
	if ready != nil {
		ready <- url
	}
	<-ctx.Done()
	return nil
}
