// Package serve is what every long-running hpa service shares: its logger (log.*), the HTTP
// listener of /metrics (Prometheus), /healthz (liveness) and /readyz (readiness), a context
// that ends on SIGINT/SIGTERM, and Run, which runs a service's stages together and stops all of
// them when one fails.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
)

// LogConfig is the log.* section: level debug | info | warn | error (default info), format
// text | json (default text).
type LogConfig struct {
	Level  string
	Format string
}

// NewLogger builds the slog logger of c writing to w.
func NewLogger(w io.Writer, c LogConfig) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// SignalContext returns a context that ends on SIGINT or SIGTERM (a service drains then).
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// Handler serves /metrics from g, /healthz (the process is up) and /readyz (ready returns nil;
// otherwise 503 with its error).
func Handler(g prometheus.Gatherer, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// Listener is a running HTTP listener of a service.
type Listener struct {
	srv  *http.Server
	addr string
}

// Listen serves h on addr in the background; addr "" serves nothing (a Listener whose Addr is "").
func Listen(addr string, h http.Handler, log *slog.Logger) (*Listener, error) {
	if addr == "" {
		return &Listener{}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && log != nil {
			log.Error("metrics server", "err", err)
		}
	}()
	return &Listener{srv: srv, addr: ln.Addr().String()}, nil
}

// Addr is the bound address ("" when off).
func (l *Listener) Addr() string { return l.addr }

// Close stops the listener, letting requests in flight finish for up to 5 seconds.
func (l *Listener) Close() error {
	if l.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return l.srv.Shutdown(ctx)
}

// StoppedWhileStarting says a stage's start-up call (e.g. its durable consumer lookup) failed only
// because ctx ended before the stage started: a clean stop (nothing was taken), not a failure.
func StoppedWhileStarting(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() != nil
}

// Stage is one long-running part of a service. It returns nil after a drain when its context
// ends, or an error when it cannot go on.
type Stage func(ctx context.Context) error

// Run runs the stages until ctx ends or one of them fails. A failure ends the context of the
// others (they drain and return) and is returned once all returned, so a service never keeps
// running on some of its stages while another is dead.
func Run(ctx context.Context, stages ...Stage) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range stages {
		g.Go(func() error { return s(gctx) })
	}
	return g.Wait()
}

// IsTerminal reports whether w is a terminal (progress is then one self-overwriting line).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
