package training

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/runs"
	"github.com/hpa-plates/hpa/internal/serve"
)

// Conn is the connections a command opens: NATS, JetStream and the bucket.
type Conn struct {
	NC    *nats.Conn
	JS    jetstream.JetStream
	Store *objstore.Bucket
}

// Close closes the NATS connection.
func (c *Conn) Close() { c.NC.Close() }

// Dial connects to NATS (as name) and opens the bucket.
func Dial(ctx context.Context, nc bus.Config, s3 objstore.Config, name string, log *slog.Logger) (*Conn, error) {
	store, err := objstore.Open(ctx, s3)
	if errors.Is(err, objstore.ErrNoBucket) {
		return nil, errors.New("s3: --bucket (s3.bucket) is required")
	}
	if err != nil {
		return nil, err
	}
	conn, err := bus.Connect(nc, name, log)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &Conn{NC: conn, JS: js, Store: store}, nil
}

// MainOptions configure MainCoordinator and MainWorker.
type MainOptions struct {
	NATS        bus.Config
	S3          objstore.Config
	Config      Config
	Worker      WorkerConfig
	MetricsAddr string
	Logger      *slog.Logger
	// NewScorer makes the scorer of the production set for the guard over the bucket (nil:
	// ReportScorer).
	NewScorer func(*objstore.Bucket) Scorer
	// NewRelabeler makes the relabeler run after promotions when Config.Relabel (nil: none).
	NewRelabeler func(*nats.Conn, *objstore.Bucket) Relabeler
}

func listen(addr string, g prometheus.Gatherer, log *slog.Logger) (io.Closer, error) {
	if addr == "" {
		return io.NopCloser(nil), nil
	}
	h := serve.Handler(g, func() error { return nil })
	l, err := serve.Listen(addr, h, log)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// MainCoordinator runs the coordinator as `hpa training coordinator` does, until ctx ends.
func MainCoordinator(ctx context.Context, o MainOptions) error {
	log := orDefaultLog(o.Logger)
	c, err := Dial(ctx, o.NATS, o.S3, "hpa-training-coordinator", log)
	if err != nil {
		return err
	}
	defer c.Close()
	if o.Config.Models.Bucket == "" {
		o.Config.Models.Bucket = o.S3.Bucket
	}
	co, err := NewCoordinator(ctx, o.Config, c.NC, c.JS, c.Store, log)
	if err != nil {
		return err
	}
	if o.NewScorer != nil {
		co.Models().Scorer = o.NewScorer(c.Store)
	}
	if o.NewRelabeler != nil {
		co.Relabeler = o.NewRelabeler(c.NC, c.Store)
	}
	co.Metrics = NewMetrics()
	l, err := listen(o.MetricsAddr, co.Metrics.Registry, log)
	if err != nil {
		return err
	}
	defer l.Close()
	return co.Run(ctx)
}

// MainWorker runs one worker as `hpa training worker` does, until ctx ends.
func MainWorker(ctx context.Context, o MainOptions) error {
	log := orDefaultLog(o.Logger)
	c, err := Dial(ctx, o.NATS, o.S3, "hpa-training-worker", log)
	if err != nil {
		return err
	}
	defer c.Close()
	if o.Worker.RunsPrefix == "" {
		o.Worker.RunsPrefix = o.Config.RunsPrefix
	}
	w, err := NewWorker(ctx, o.Worker, c.JS, c.Store, log)
	if err != nil {
		return err
	}
	w.Metrics = NewMetrics()
	l, err := listen(o.MetricsAddr, w.Metrics.Registry, log)
	if err != nil {
		return err
	}
	defer l.Close()
	return w.Run(ctx)
}

func orDefaultLog(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

// StatusReport is what `hpa training status` shows.
type StatusReport struct {
	Registry  Registry        `json:"registry"`
	Current   bus.Promotion   `json:"current_model"`
	Active    *runs.Run       `json:"active_run,omitempty"`
	LastRun   *runs.Run       `json:"last_run,omitempty"`
	Decisions []runs.Decision `json:"decisions"`
	Trigger   bool            `json:"trigger_pending"`
}

// Status gathers the registry, the run in progress (or the last one) and the last decisions.
func Status(ctx context.Context, c *Conn, cfg Config, lastDecisions int) (*StatusReport, error) {
	cfg.fill()
	var st StatusReport
	dkv, err := bus.EnsureDatasetsBucket(ctx, c.JS, cfg.Topology)
	if err != nil {
		return nil, err
	}
	reg := &registry{kv: dkv}
	if st.Registry, err = reg.readRegistry(ctx); err != nil {
		return nil, err
	}
	tkv, err := trainingKV(ctx, c.JS, cfg.Topology)
	if err != nil {
		return nil, err
	}
	if _, err := tkv.Get(ctx, triggerKey); err == nil {
		st.Trigger = true
	}
	if e, err := tkv.Get(ctx, activeKey); err == nil {
		if re, err := tkv.Get(ctx, runKVKey(string(e.Value()))); err == nil {
			var rs RunState
			if json.Unmarshal(re.Value(), &rs) == nil {
				// Fold progress straight from the workers.
				for k := range rs.Run.Folds {
					if fe, err := tkv.Get(ctx, foldKey(rs.Run.ID, k)); err == nil {
						var fs FoldState
						if json.Unmarshal(fe.Value(), &fs) == nil {
							rs.Run.Folds[k] = fs.Fold
						}
					}
				}
				st.Active = &rs.Run
			}
		}
	}
	if st.Active == nil {
		objs, err := c.Store.List(ctx, cfg.RunsPrefix)
		if err != nil {
			return nil, err
		}
		var last string
		for _, o := range objs {
			if rest := strings.TrimPrefix(o.Key, cfg.RunsPrefix); !strings.Contains(rest, "/") && strings.HasSuffix(rest, ".json") && o.Key > last {
				last = o.Key
			}
		}
		if last != "" {
			if b, err := c.Store.Get(ctx, last, 16<<20); err == nil {
				st.LastRun, _ = runs.ParseRun(b, last)
			}
		}
	}
	mkv, err := ModelsKV(ctx, c.JS, cfg.Topology)
	if err != nil {
		return nil, err
	}
	if e, err := mkv.Get(ctx, bus.CurrentModelKey); err == nil {
		st.Current = bus.ParsePromotion(e.Value())
	}
	mp := cfg.Models.ModelsPrefix
	if mp == "" {
		mp = runs.DefaultModelsPrefix
	}
	objs, err := c.Store.List(ctx, mp+runs.DecisionsDir)
	if err != nil {
		return nil, err
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key > objs[j].Key })
	for _, o := range objs[:min(len(objs), lastDecisions)] {
		b, err := c.Store.Get(ctx, o.Key, 16<<20)
		if err != nil {
			continue
		}
		if d, err := runs.ParseDecision(b, o.Key); err == nil {
			st.Decisions = append(st.Decisions, *d)
		}
	}
	return &st, nil
}

// WriteStatus renders a status report for people.
func WriteStatus(w io.Writer, st *StatusReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	r := st.Registry
	fmt.Fprintf(tw, "dataset:\t%d samples, %d new since production (%d label files, %d rejected), digest %s\n",
		r.Samples, r.NewSamples, r.Files, r.Rejected, short(r.Digest))
	if !r.LastFile.IsZero() {
		fmt.Fprintf(tw, "last label file:\t%s (%s ago)\n", r.LastFile.Format(time.RFC3339), time.Since(r.LastFile).Round(time.Second))
	}
	if st.Current.Version != "" {
		fmt.Fprintf(tw, "current model:\t%s (%s)\n", st.Current.Version, st.Current.Location)
	} else {
		fmt.Fprintf(tw, "current model:\tnone promoted\n")
	}
	if st.Trigger {
		fmt.Fprintf(tw, "trigger:\tpending (manual)\n")
	}
	run := st.Active
	label := "run in progress"
	if run == nil {
		run, label = st.LastRun, "last run"
	}
	if run != nil {
		fmt.Fprintf(tw, "%s:\t%s  %s  %d samples (%d new)  candidate %s\n", label, run.ID, run.State, run.Samples, run.NewSamples, run.Candidate)
		for _, f := range run.Folds {
			line := fmt.Sprintf("  fold %d:\t%s", f.Fold, f.State)
			if f.Epochs > 0 {
				line += fmt.Sprintf("  epoch %d/%d  cycle %d/%d", f.Epoch, f.Epochs, f.Cycle, f.Cycles)
			}
			if f.Loss != nil {
				line += fmt.Sprintf("  loss %.4f", *f.Loss)
			}
			if f.ETASeconds != nil && f.State == runs.FoldRunning {
				line += fmt.Sprintf("  ETA %s", (time.Duration(*f.ETASeconds) * time.Second).Round(time.Second))
			}
			if f.Worker != "" {
				line += "  on " + f.Worker
			}
			if f.Attempts > 1 {
				line += fmt.Sprintf(" (attempt %d)", f.Attempts)
			}
			fmt.Fprintln(tw, line)
		}
		if run.MacroF1 != nil {
			fmt.Fprintf(tw, "  out-of-fold macro-F1:\t%.4f\n", *run.MacroF1)
		}
		if run.Error != "" {
			fmt.Fprintf(tw, "  error:\t%s\n", run.Error)
		}
	}
	for i, d := range st.Decisions {
		if i == 0 {
			fmt.Fprintf(tw, "decisions:\n")
		}
		fmt.Fprintf(tw, "  %s\t%s %s\t%s\n", d.Time.Format(time.RFC3339), d.Action, d.Version, d.Reason)
	}
	return tw.Flush()
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// Local is the training consumer of one machine (`hpa up`): a coordinator and one worker in the
// process, on the connections of the local stack.
type Local struct {
	Coordinator *Coordinator
	worker      *Worker
	log         *slog.Logger
}

// NewLocal creates the coordinator and the worker.
func NewLocal(ctx context.Context, cfg Config, wcfg WorkerConfig, nc *nats.Conn, js jetstream.JetStream, store *objstore.Bucket, log *slog.Logger) (*Local, error) {
	log = orDefaultLog(log)
	if cfg.Models.Bucket == "" {
		cfg.Models.Bucket = store.Name
	}
	co, err := NewCoordinator(ctx, cfg, nc, js, store, log)
	if err != nil {
		return nil, err
	}
	if wcfg.RunsPrefix == "" {
		wcfg.RunsPrefix = co.cfg.RunsPrefix
	}
	w, err := NewWorker(ctx, wcfg, js, store, log)
	if err != nil {
		return nil, err
	}
	return &Local{Coordinator: co, worker: w, log: log}, nil
}

// Run runs both until ctx ends. A worker that cannot start (no libtorch shim) is logged; the
// coordinator keeps running, so its jobs wait for a worker elsewhere.
func (l *Local) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.worker.Run(ctx); err != nil && ctx.Err() == nil {
			l.log.Error("training worker stopped; fold jobs wait for another worker", "err", err)
		}
	}()
	err := l.Coordinator.Run(ctx)
	<-done
	return err
}
