package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/local/natsembed"
	"github.com/hpa-plates/hpa/internal/local/s3local"
)

// S3ServerOptions configure ServeS3 (`hpa s3local`, config section s3local.*).
type S3ServerOptions struct {
	// Dir holds buckets, objects and the event journal; Addr is the listen address.
	Dir, Addr, Region    string
	AccessKey, SecretKey string
	// Buckets are created at start when missing.
	Buckets []string
	// NATSURL publishes events to an existing server; NATSEmbedded runs one in this process
	// (store NATSDir, port NATSPort, fsync on every message with NATSSyncAlways). Neither: no events.
	NATSURL        string
	NATSEmbedded   bool
	NATSDir        string
	NATSPort       int
	NATSSyncAlways bool
	// NATSUser and NATSPassword (config nats.user, nats.password): the embedded server requires
	// them of every client; with NATSURL they are what this server connects with.
	NATSUser, NATSPassword string
	// SubjectPrefix: events go to <prefix>.<bucket>, captured by Stream.
	SubjectPrefix, Stream string
	// PublishTimeout bounds the wait for JetStream's ack of an event.
	PublishTimeout time.Duration
	// Limits: timeouts, concurrent requests, Signature V2, multipart expiry (zero: defaults).
	Limits s3local.Limits
}

// ErrNATSChoice is returned by ServeS3 when both an external and an embedded NATS are asked for.
var ErrNATSChoice = errors.New("s3local: --nats-url and --nats-embedded exclude each other")

// ServeS3 serves the S3 API until ctx ends. ready, when not nil, receives the S3 endpoint and the
// NATS URL ("" without events) once both accept connections.
func ServeS3(ctx context.Context, o S3ServerOptions, out io.Writer, ready chan<- [2]string) error {
	natsURL := o.NATSURL
	if natsURL != "" && o.NATSEmbedded {
		return ErrNATSChoice
	}
	var pub bus.Publisher
	if o.NATSEmbedded {
		ns, err := natsembed.Start(natsembed.Options{DataDir: o.NATSDir, Port: o.NATSPort, JetStream: true, SyncAlways: o.NATSSyncAlways,
			User: o.NATSUser, Password: o.NATSPassword})
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		natsURL = ns.ClientURL()
		fmt.Fprintf(out, "nats: embedded JetStream at %s (store %s)\n", natsURL, filepath.Clean(o.NATSDir))
		if o.NATSUser == "" {
			fmt.Fprintln(out, "nats: WARNING: the embedded server accepts any client; set nats.user and HPA_NATS_PASSWORD to require credentials")
		} else {
			fmt.Fprintf(out, "nats: clients must authenticate as user %s (password: nats.password)\n", o.NATSUser)
		}
	}
	if natsURL != "" {
		nc, err := bus.Connect(bus.Config{URL: natsURL, User: o.NATSUser, Password: o.NATSPassword}, "hpa s3local", nil)
		if err != nil {
			return fmt.Errorf("s3local: connect to NATS %s: %w", natsURL, err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("s3local: JetStream on %s: %w", natsURL, err)
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = bus.EnsureEventsStream(sctx, js, bus.EventsStreamConfig{Name: o.Stream,
			Subjects: []string{o.SubjectPrefix + ".>"}, MustCapture: o.SubjectPrefix + ".>", Storage: jetstream.FileStorage})
		cancel()
		if err != nil {
			return err
		}
		pub = bus.JetStreamPublisher{JS: js}
	}
	srv, err := s3local.New(s3local.Options{
		Dir: o.Dir, Addr: o.Addr, Region: o.Region, AccessKey: o.AccessKey, SecretKey: o.SecretKey,
		Buckets: o.Buckets, Publisher: pub, EventSubjectPrefix: o.SubjectPrefix, PublishTimeout: o.PublishTimeout,
		Limits: o.Limits,
	})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	fmt.Fprintf(out, "s3: serving %s (store %s, buckets %v)\n", srv.Endpoint(), filepath.Clean(o.Dir), o.Buckets)
	if pub != nil {
		fmt.Fprintf(out, "events: %s.<bucket> on stream %s\n", o.SubjectPrefix, o.Stream)
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
