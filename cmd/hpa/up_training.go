package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/consumers/training"
	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/local"
)

// withTrainingOnStack adds the training consumer (coordinator and one CPU worker, training.* keys)
// to the service start makes: `hpa up` with up.training, `hpa demo --retrain`.
func withTrainingOnStack(v *viper.Viper, logw io.Writer, dataDir string, start local.Factory, tweak func(*training.Config)) (local.Factory, error) {
	log := newLogger(v, logw)
	cfg, err := config.Training(v)
	if err != nil {
		return nil, err
	}
	cfg.CacheDir = filepath.Join(dataDir, "training-cache", "coordinator")
	if tweak != nil {
		tweak(&cfg)
	} else {
		cfg.RelabelDelay = 0 // hpa up waits for its consumer to serve the promoted set instead
	}
	newScorer, err := productionScorer(v)
	if err != nil {
		return nil, err
	}
	newRelabeler, err := replayRelabeler(v, log)
	if err != nil {
		return nil, err
	}
	wcfg := config.TrainingWorker(v)
	wcfg.Name, wcfg.CacheDir = "up", filepath.Join(dataDir, "training-cache", "worker")
	return func(ctx context.Context, st *local.Stack, model string) (local.Service, error) {
		svc, err := start(ctx, st, model)
		if err != nil {
			return nil, err
		}
		cfg.Models.Bucket = st.Endpoints.Bucket
		if tweak == nil {
			cfg.Models.Baseline = model // hpa up: the served set is production until a promotion
		}
		cfg.Topology.EventsSubjects = st.EventsSubjects
		tr, err := training.NewLocal(ctx, cfg, wcfg, st.Conn, st.JS, st.Store, log)
		if err != nil {
			if c, ok := svc.(io.Closer); ok {
				_ = c.Close()
			}
			return nil, err
		}
		tr.Coordinator.Models().Scorer = newScorer(st.Store)
		rl := newRelabeler(st.Conn, st.Store)
		// One machine: relabel once this consumer serves the promoted set (not after a fixed delay).
		tr.Coordinator.Relabeler = training.RelabelFunc(func(ctx context.Context, p bus.Promotion) error {
			for i := 0; i < 1200 && !strings.Contains(svc.Summary(), p.ManifestDigest); i++ {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
			return rl.Relabel(ctx, p)
		})
		return withTraining{Service: svc, tr: tr}, nil
	}, nil
}

// withTraining runs the training consumer beside the service.
type withTraining struct {
	local.Service
	tr *training.Local
}

func (w withTraining) Run(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- w.tr.Run(ctx) }()
	err := w.Service.Run(ctx)
	if terr := <-done; err == nil {
		err = terr
	}
	return err
}

func (w withTraining) Handler() http.Handler { return w.Service.Handler() }

func (w withTraining) ServesPages() bool {
	ps, ok := w.Service.(local.PageServer)
	return ok && ps.ServesPages()
}

func (w withTraining) Close() error {
	if c, ok := w.Service.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// retrainDemo is `hpa demo --retrain`: the demo stack with the training consumer, a run policy
// that starts on the uploaded set after a short quiet period.
func retrainDemo(ctx context.Context, v *viper.Viper, logw, out io.Writer, o local.DemoOptions, start local.Factory) error {
	n := v.GetInt("demo.train_samples")
	tweak := func(c *training.Config) {
		c.MinNew, c.Quiet, c.Poll, c.Relabel, c.RelabelDelay = n, 2*time.Second, 250*time.Millisecond, true, 0
	}
	start, err := withTrainingOnStack(v, logw, o.Up.Stack.DataDir, start, tweak)
	if err != nil {
		return err
	}
	cfg, err := config.Training(v)
	if err != nil {
		return err
	}
	tweak(&cfg)
	return training.RetrainDemo(ctx, training.RetrainDemoOptions{Demo: o, TrainSamples: n, Config: cfg}, out, start)
}
