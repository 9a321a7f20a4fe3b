// Package training is the training consumer: label files arriving in S3 grow a dataset registry;
// when the policy says so the coordinator freezes a dataset snapshot and puts K fold jobs on a
// JetStream work queue; workers train the folds with internal/train, checkpointing to S3 every
// epoch; the coordinator merges the folds into a model set, scores it against production and, when
// the guard allows, promotes it: the current-model pointer object (If-Match) and the current-model
// KV fact the inference consumers watch. See README.md.
package training

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/runs"
	"github.com/hpa-plates/hpa/internal/serve"
	"github.com/hpa-plates/hpa/internal/train"
	"github.com/hpa-plates/hpa/internal/train/folds"
)

// Config configures the coordinator (`hpa training coordinator`, config section training).
type Config struct {
	// Prefixes in the bucket: label files, channel images, run records, dataset snapshots.
	LabelsPrefix, ImagesPrefix, RunsPrefix, DatasetsPrefix string
	// Models locates model sets and the pointer; its Guard is the promotion guard.
	Models ModelsConfig
	// Policy: a run starts when at least MinNew samples are new since the production model's
	// dataset, or they grew it by GrowthPercent, and no label file arrived for Quiet.
	MinNew        int
	GrowthPercent float64
	Quiet         time.Duration
	// Settings is the training recipe of every run.
	Settings Settings
	// CacheDir holds the merge's local files.
	CacheDir string
	// Topology names the events stream and the DLQ; Consumer is the coordinator's durable consumer.
	Topology bus.Topology
	Consumer string
	// Poll is how often the policy and the run in progress are looked at.
	Poll time.Duration
	// Relabel asks the Relabeler to relabel older samples after a promotion, RelabelDelay after it
	// (the inference consumers load the new set first: a sample replayed while a replica still
	// serves the old set is labeled by the old one again).
	Relabel      bool
	RelabelDelay time.Duration
}

// DefaultConfig returns the defaults of the training section.
func DefaultConfig() Config {
	return Config{LabelsPrefix: "training/labels/", ImagesPrefix: "training/images/", RunsPrefix: runs.DefaultRunsPrefix,
		DatasetsPrefix: "datasets/", MinNew: 500, GrowthPercent: 10, Quiet: 30 * time.Second, Settings: DefaultSettings(),
		Consumer: bus.TrainingConsumer, Poll: time.Second, RelabelDelay: 30 * time.Second}
}

func (c *Config) fill() {
	d := DefaultConfig()
	for _, f := range []struct {
		p *string
		d string
	}{{&c.LabelsPrefix, d.LabelsPrefix}, {&c.ImagesPrefix, d.ImagesPrefix},
		{&c.RunsPrefix, d.RunsPrefix}, {&c.DatasetsPrefix, d.DatasetsPrefix}, {&c.Consumer, d.Consumer}} {
		if *f.p == "" {
			*f.p = f.d
		}
	}
	if c.Poll <= 0 {
		c.Poll = d.Poll
	}
	if c.Settings == (Settings{}) {
		c.Settings = d.Settings
	}
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(os.TempDir(), "hpa-training")
	}
	c.Topology.Fill()
	c.Models.PromotedSubject = c.Topology.PromotedSubject
	c.Models.Replicas = c.Topology.Replicas
	if c.Models.EvalImagesPrefix == "" {
		c.Models.EvalImagesPrefix = c.ImagesPrefix
	}
}

// checkEvalPrefix refuses a fixed evaluation set whose label files would also be training data
// (its prefix and the labels prefix contain one another): the guard would then score the
// candidate on samples it was trained on.
func (c *Config) checkEvalPrefix() error {
	e, l := c.Models.EvalPrefix, c.LabelsPrefix
	if e != "" && (strings.HasPrefix(e, l) || strings.HasPrefix(l, e)) {
		return fmt.Errorf("training: training.eval_prefix %q overlaps training.labels_prefix %q: the evaluation set's label files would be trained on; put them under a prefix of their own", e, l)
	}
	return nil
}

// Relabeler relabels the samples labeled by older versions after a promotion (the replay producer).
type Relabeler interface {
	Relabel(ctx context.Context, p bus.Promotion) error
}

// RelabelFunc adapts a function to Relabeler.
type RelabelFunc func(ctx context.Context, p bus.Promotion) error

// Relabel implements Relabeler.
func (f RelabelFunc) Relabel(ctx context.Context, p bus.Promotion) error { return f(ctx, p) }

// Keys of the training KV bucket.
const (
	activeKey      = "active"       // the run in progress (its id): the one-run-at-a-time lock
	triggerKey     = "trigger"      // a manual trigger request
	lastDatasetKey = "last_dataset" // digest of the last run's snapshot (no second run on the same data)
)

func runKVKey(id string) string { return "run." + id }

// RunState is a run's machine state (KV run.<id>): the record people read, plus the recipe.
type RunState struct {
	Run      runs.Run `json:"run"`
	Settings Settings `json:"settings"`
}

// Coordinator runs the dataset registry, the policy and the runs.
type Coordinator struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue // training state
	store  *objstore.Bucket
	reg    *registry
	models *Models
	log    *slog.Logger
	// Relabeler, when set and Config.Relabel, runs after every promotion.
	Relabeler Relabeler
	// Metrics, when set, counts label files, runs and decisions.
	Metrics *Metrics

	mu       sync.Mutex
	dirty    bool // a label file was recorded since the registry summary was computed
	lastReg  Registry
	queued   map[string]bool // runs whose jobs this process queued
	failures map[string]int  // failed merge / decide attempts per run
	wake     chan struct{}
}

// NewCoordinator creates the coordinator's streams, KV buckets and the models store.
func NewCoordinator(ctx context.Context, cfg Config, nc *nats.Conn, js jetstream.JetStream, store *objstore.Bucket, log *slog.Logger) (*Coordinator, error) {
	cfg.fill()
	if err := cfg.checkEvalPrefix(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if _, err := bus.EnsureEventsStream(ctx, js, bus.EventsStreamConfig{Name: cfg.Topology.EventsStream, Subjects: cfg.Topology.EventsSubjects, Replicas: cfg.Topology.Replicas}); err != nil {
		return nil, err
	}
	if err := bus.EnsureDLQStream(ctx, js, cfg.Topology); err != nil {
		return nil, err
	}
	if err := EnsureJobsStream(ctx, js, cfg.Topology); err != nil {
		return nil, err
	}
	kv, err := trainingKV(ctx, js, cfg.Topology)
	if err != nil {
		return nil, err
	}
	dkv, err := bus.EnsureDatasetsBucket(ctx, js, cfg.Topology)
	if err != nil {
		return nil, err
	}
	models, err := NewModels(ctx, cfg.Models, js, nc, store)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{cfg: cfg, nc: nc, js: js, kv: kv, store: store, models: models, log: log, dirty: true, queued: map[string]bool{}, failures: map[string]int{}, wake: make(chan struct{}, 1),
		reg: &registry{kv: dkv, store: store, labelsPrefix: cfg.LabelsPrefix, imagesPrefix: cfg.ImagesPrefix}}
	return c, nil
}

// Models is the coordinator's model store (promotion, rollback, list).
func (c *Coordinator) Models() *Models { return c.models }

// Run consumes label-file events and drives runs until ctx ends.
func (c *Coordinator) Run(ctx context.Context) error {
	if err := c.models.Reconcile(ctx); err != nil {
		c.log.Warn("reconcile current model", "err", err)
	}
	cons, err := c.js.CreateOrUpdateConsumer(ctx, c.cfg.Topology.EventsStream, jetstream.ConsumerConfig{
		Durable: c.cfg.Consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxDeliver: 20,
		FilterSubject: c.cfg.Topology.EventsFilter,
	})
	if serve.StoppedWhileStarting(ctx, err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", c.cfg.Consumer, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) { c.handleEvent(ctx, msg); c.poke() })
	if err != nil {
		return err
	}
	defer cc.Stop()
	// Fold progress and manual triggers wake the loop at once; Poll is the fallback (and the
	// debounce clock).
	if w, err := c.kv.WatchAll(ctx, jetstream.UpdatesOnly()); err == nil {
		defer func() { _ = w.Stop() }()
		go func() {
			for range w.Updates() {
				c.poke()
			}
		}()
	} else {
		c.log.Warn("training state not watched; polling only", "err", err)
	}
	c.log.Info("training coordinator ready", "labels", c.cfg.LabelsPrefix, "images", c.cfg.ImagesPrefix)
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	for {
		if err := c.Step(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("training step", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.wake:
		}
	}
}

// poke wakes the coordinator's loop.
func (c *Coordinator) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// handleEvent records a label file (or its rejection).
func (c *Coordinator) handleEvent(ctx context.Context, msg jetstream.Msg) {
	evs, err := bus.ParseS3Events(msg.Data())
	if err != nil {
		_ = msg.Ack() // not ours to judge: the inference consumer dead-letters bad events
		return
	}
	md, _ := msg.Metadata()
	var seq uint64
	if md != nil {
		seq = md.Sequence.Stream
	}
	for _, ev := range evs {
		if !IsLabelFile(c.cfg.LabelsPrefix, ev.Key) {
			continue
		}
		if ev.IsRemove() {
			// Its rows leave the set (when the object is really gone: build skips missing files).
			c.mu.Lock()
			c.dirty = true
			c.mu.Unlock()
			continue
		}
		if !ev.IsCreate() {
			continue
		}
		if err := c.recordFile(ctx, ev, seq, msg.Data()); err != nil {
			c.log.Warn("label file", "key", ev.Key, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	_ = msg.Ack()
}

func (c *Coordinator) recordFile(ctx context.Context, ev bus.ObjectEvent, seq uint64, original []byte) error {
	body, info, err := c.store.Open(ctx, ev.Key)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil // deleted since
	}
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(body)
	body.Close()
	if err != nil {
		return err
	}
	if ev.ETag != "" && info.ETag != ev.ETag {
		return nil // replaced since: the later upload's event records it
	}
	ix, err := c.reg.images(ctx)
	if err != nil {
		return err
	}
	fe := FileEntry{Key: ev.Key, ETag: info.ETag, Seq: seq, Time: time.Now().UTC()}
	rows, perr := ParseLabelFile(ev.Key, info.ETag, buf.Bytes(), ix)
	var lfe *LabelFileError
	switch {
	case perr == nil:
		c.Metrics.labelFile("valid")
		fe.Valid, fe.Rows = true, len(rows)
		_ = c.store.Delete(ctx, ErrorKey(ev.Key)) // an earlier bad version's record
	case errors.As(perr, &lfe):
		fe.Error = lfe.Reason
		b, _ := json.MarshalIndent(lfe, "", "  ")
		if err := c.store.Put(ctx, ErrorKey(ev.Key), append(b, '\n'), "application/json"); err != nil {
			return err
		}
		dl := bus.NewDeadLetter("", "", KindLabels, perr.Error(), ev.Key, original)
		if err := bus.PublishDeadLetter(ctx, c.js, c.cfg.Topology, dl); err != nil {
			return err
		}
		c.log.Warn("label file rejected", "key", ev.Key, "reason", lfe.Reason)
		c.Metrics.labelFile("rejected")
	default:
		return perr
	}
	if err := c.reg.putFile(ctx, fe); err != nil {
		return err
	}
	c.mu.Lock()
	c.dirty = true
	c.mu.Unlock()
	return nil
}

// Trigger asks for a run regardless of the policy (`hpa training trigger`); the coordinator
// starts it when no run is in progress. t.Replicas applies when the bucket is created here.
func Trigger(ctx context.Context, js jetstream.JetStream, t bus.Topology, by string) error {
	kv, err := trainingKV(ctx, js, t)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]string{"by": by, "time": time.Now().UTC().Format(time.RFC3339)})
	_, err = kv.Put(ctx, triggerKey, b)
	return err
}

// Step looks at the run in progress, or at the policy when there is none. Run calls it every Poll.
func (c *Coordinator) Step(ctx context.Context) error {
	if e, err := c.kv.Get(ctx, activeKey); err == nil {
		return c.advance(ctx, string(e.Value()))
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	reg, snap, err := c.refresh(ctx)
	if err != nil {
		return err
	}
	manual := false
	if _, err := c.kv.Get(ctx, triggerKey); err == nil {
		manual = true
	}
	trigger := "policy"
	if manual {
		trigger = "manual"
	} else if !c.policy(ctx, reg) {
		return nil
	}
	if snap == nil {
		if snap, _, err = c.reg.build(ctx); err != nil {
			return err
		}
	}
	if need := 2 * max(2, c.cfg.Settings.Folds); len(snap.Samples) < need {
		if manual {
			_ = c.kv.Delete(ctx, triggerKey)
			return fmt.Errorf("manual trigger dropped: %d labeled samples, a run needs at least %d", len(snap.Samples), need)
		}
		return nil // the policy waits for more
	}
	return c.start(ctx, snap, reg, trigger)
}

// refresh recomputes the registry summary when label files arrived (or the production model changed).
func (c *Coordinator) refresh(ctx context.Context) (Registry, *Snapshot, error) {
	cur, _, err := c.models.Current(ctx)
	if err != nil {
		return Registry{}, nil, err
	}
	c.mu.Lock()
	dirty := c.dirty || c.lastReg.ProductionDataset != cur.DatasetDigest || c.lastReg.Updated.IsZero()
	c.dirty = false
	reg := c.lastReg
	c.mu.Unlock()
	if !dirty {
		return reg, nil, nil
	}
	snap, files, err := c.reg.build(ctx)
	if err != nil {
		c.mu.Lock()
		c.dirty = true
		c.mu.Unlock()
		return Registry{}, nil, err
	}
	var base *Snapshot
	if cur.DatasetDigest != "" {
		if base, err = readSnapshot(ctx, c.store, SnapshotKey(c.cfg.DatasetsPrefix, cur.DatasetDigest)); err != nil {
			c.log.Warn("production dataset", "digest", cur.DatasetDigest, "err", err)
			base = nil
		}
	}
	reg = Registry{Digest: snap.Digest, Samples: len(snap.Samples), NewSamples: newSince(snap, base),
		ProductionDataset: cur.DatasetDigest, Updated: time.Now().UTC()}
	if base != nil {
		reg.ProductionSamples = len(base.Samples)
	}
	for _, f := range files {
		reg.Files++
		if !f.Valid {
			reg.Rejected++
		}
		if f.Time.After(reg.LastFile) {
			reg.LastFile = f.Time
		}
		reg.LastSeq = max(reg.LastSeq, f.Seq)
	}
	if err := c.reg.writeRegistry(ctx, reg); err != nil {
		return reg, nil, err
	}
	c.Metrics.registry(reg)
	c.mu.Lock()
	c.lastReg = reg
	c.mu.Unlock()
	return reg, snap, nil
}

// policy: enough new samples (count or growth), quiet since the last label file, and not the data
// of the last run.
func (c *Coordinator) policy(ctx context.Context, reg Registry) bool {
	if reg.Samples == 0 || time.Since(reg.LastFile) < c.cfg.Quiet {
		return false
	}
	if e, err := c.kv.Get(ctx, lastDatasetKey); err == nil && string(e.Value()) == reg.Digest {
		return false
	}
	if c.cfg.MinNew > 0 && reg.NewSamples >= c.cfg.MinNew {
		return true
	}
	return reg.ProductionSamples > 0 && c.cfg.GrowthPercent > 0 &&
		float64(reg.NewSamples)*100/float64(reg.ProductionSamples) >= c.cfg.GrowthPercent
}

// start freezes the snapshot, takes the run lock, writes the run's data and record and queues the
// fold jobs.
func (c *Coordinator) start(ctx context.Context, snap *Snapshot, reg Registry, trigger string) error {
	now := time.Now().UTC()
	id := now.Format("20060102T150405Z") + "-" + strings.TrimPrefix(snap.Digest, "sha256:")[:6]
	if _, err := c.kv.Create(ctx, activeKey, []byte(id)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil // another coordinator started one
		}
		return err
	}
	fail := func(err error) error {
		_ = c.kv.Delete(context.WithoutCancel(ctx), activeKey)
		return err
	}
	snap.Created = now
	dsKey, err := writeSnapshot(ctx, c.store, c.cfg.DatasetsPrefix, snap)
	if err != nil {
		return fail(err)
	}
	s := c.cfg.Settings
	assign, err := folds.StratifiedKFold(snap.labelMatrix(), labels.NumClasses, folds.Options{K: s.Folds, Seed: uint64(s.Seed)})
	if err != nil {
		return fail(err)
	}
	ex := make([]folds.Example, len(snap.Samples))
	for i, x := range snap.Samples {
		ex[i] = folds.Example{ID: x.ID, Labels: x.Targets}
	}
	var fb bytes.Buffer
	if err := folds.Write(&fb, ex, assign); err != nil {
		return fail(err)
	}
	data := runDataPrefix(c.cfg.RunsPrefix, id)
	if err := c.store.Put(ctx, data+"train.csv", snap.TrainCSV(), "text/csv"); err != nil {
		return fail(err)
	}
	if err := c.store.Put(ctx, data+"folds.csv", fb.Bytes(), "text/csv"); err != nil {
		return fail(err)
	}
	cur, _, err := c.models.Current(ctx)
	if err != nil {
		return fail(err)
	}
	r := runs.Run{Schema: runs.RunSchema, ID: id, State: runs.RunQueued, Trigger: trigger, DatasetDigest: snap.Digest,
		Dataset: dsKey, Samples: len(snap.Samples), NewSamples: reg.NewSamples, BaseVersion: cur.Version, Candidate: id,
		Created: now, Updated: now}
	if r.NewSamples == 0 && cur.DatasetDigest == "" {
		r.NewSamples = len(snap.Samples)
	}
	for k := range s.Folds {
		r.Folds = append(r.Folds, runs.Fold{Fold: k, State: runs.FoldPending})
	}
	st := RunState{Run: r, Settings: s}
	if err := c.saveRun(ctx, &st); err != nil {
		return fail(err)
	}
	if err := c.queueJobs(ctx, &st); err != nil {
		return err // the run stays queued; advance queues its jobs again
	}
	_, _ = c.kv.Put(ctx, lastDatasetKey, []byte(snap.Digest))
	if trigger == "manual" {
		_ = c.kv.Delete(ctx, triggerKey)
	}
	c.Metrics.run("started")
	c.log.Info("training run started", "run", id, "samples", len(snap.Samples), "new", r.NewSamples, "trigger", trigger)
	return nil
}

// queueJobs publishes the run's fold jobs (again: the stream deduplicates them by run and fold,
// and a worker acknowledges a job of a fold already done without training it).
func (c *Coordinator) queueJobs(ctx context.Context, st *RunState) error {
	r := &st.Run
	for k := range r.Folds {
		job := Job{Run: r.ID, Fold: k, Dataset: r.Dataset, Data: runDataPrefix(c.cfg.RunsPrefix, r.ID),
			Out: foldPrefix(c.cfg.RunsPrefix, r.ID, k), Version: r.Candidate, Parent: r.BaseVersion, Settings: st.Settings}
		b, _ := json.Marshal(job)
		if _, err := c.js.Publish(ctx, bus.TrainJobsSubject+"."+r.ID, b, jetstream.WithMsgID(job.MsgID())); err != nil {
			return fmt.Errorf("queue fold %d of %s: %w", k, r.ID, err)
		}
	}
	c.mu.Lock()
	c.queued[r.ID] = true
	c.mu.Unlock()
	return nil
}

// saveRun writes the run's KV state and its record training/runs/<id>.json.
func (c *Coordinator) saveRun(ctx context.Context, st *RunState) error {
	st.Run.Updated = time.Now().UTC()
	b, _ := json.Marshal(st)
	if _, err := c.kv.Put(ctx, runKVKey(st.Run.ID), b); err != nil {
		return err
	}
	rec, err := runs.Marshal(st.Run)
	if err != nil {
		return err
	}
	return c.store.Put(ctx, runs.RunKey(c.cfg.RunsPrefix, st.Run.ID), rec, "application/json")
}

func (c *Coordinator) loadRun(ctx context.Context, id string) (*RunState, error) {
	e, err := c.kv.Get(ctx, runKVKey(id))
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", id, err)
	}
	var st RunState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, fmt.Errorf("run %s: %w", id, err)
	}
	return &st, nil
}

// advance folds the workers' progress into the run and, once every fold is done, merges, decides
// and finishes it. Each stage is recorded, so a restarted coordinator continues where it stopped.
func (c *Coordinator) advance(ctx context.Context, id string) error {
	st, err := c.loadRun(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// The coordinator stopped between taking the lock and recording the run: nothing was queued.
		c.log.Warn("releasing the lock of a run that was never recorded", "run", id)
		return c.kv.Delete(ctx, activeKey)
	}
	if err != nil {
		return err
	}
	r := &st.Run
	c.mu.Lock()
	queued := c.queued[id]
	c.mu.Unlock()
	if !queued && (r.State == runs.RunQueued || r.State == runs.RunRunning) {
		if err := c.queueJobs(ctx, st); err != nil {
			return err
		}
	}
	switch r.State {
	case runs.RunQueued, runs.RunRunning:
		changed := false
		for k := range r.Folds {
			e, err := c.kv.Get(ctx, foldKey(id, k))
			if err != nil {
				continue
			}
			var fs FoldState
			if json.Unmarshal(e.Value(), &fs) != nil {
				continue
			}
			if fs.Fold.Updated != r.Folds[k].Updated || fs.Fold.State != r.Folds[k].State {
				r.Folds[k] = fs.Fold
				changed = true
			}
			if fs.Fold.State == runs.FoldFailed {
				return c.finish(ctx, st, fmt.Errorf("fold %d failed on %s", k, fs.Fold.Worker))
			}
			if r.State == runs.RunQueued && fs.Fold.State != runs.FoldPending {
				r.State, changed = runs.RunRunning, true
			}
		}
		if r.Done() < len(r.Folds) {
			if changed {
				return c.saveRun(ctx, st)
			}
			return nil
		}
		r.State = runs.RunMerging
		if err := c.saveRun(ctx, st); err != nil {
			return err
		}
		fallthrough
	case runs.RunMerging:
		if err := c.merge(ctx, st); err != nil {
			return c.retryOrFail(ctx, st, fmt.Errorf("merge: %w", err))
		}
		r.State = runs.RunDeciding
		if err := c.saveRun(ctx, st); err != nil {
			return err
		}
		fallthrough
	case runs.RunDeciding:
		return c.decide(ctx, st)
	default: // done or failed: only the lock was left
		return c.kv.Delete(ctx, activeKey)
	}
}

// merge downloads every fold's checkpoints and members, lets internal/train finish the run (out-of
// -fold merge, thresholds, manifest, report, curves: no fold is trained again) and uploads the
// model set to models/<version>/.
func (c *Coordinator) merge(ctx context.Context, st *RunState) error {
	r := &st.Run
	t0 := time.Now()
	root := filepath.Join(c.cfg.CacheDir, r.ID, "merge")
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	dataDir, outDir := filepath.Join(root, "data"), filepath.Join(root, "out")
	job := Job{Run: r.ID, Dataset: r.Dataset, Data: runDataPrefix(c.cfg.RunsPrefix, r.ID)}
	if err := stageData(ctx, c.store, job, dataDir); err != nil {
		return err
	}
	for k := range r.Folds {
		if _, err := downloadPrefix(ctx, c.store, foldPrefix(c.cfg.RunsPrefix, r.ID, k), outDir); err != nil {
			return err
		}
	}
	cfg, err := st.Settings.Config(dataDir, outDir, filepath.Join(dataDir, "folds.csv"), r.Candidate, r.BaseVersion, 0)
	if err != nil {
		return err
	}
	noTrain := func(model.Spec, int64) (train.Backend, error) {
		return nil, errors.New("merge: a fold has no finished checkpoint")
	}
	noExport := func(string, model.Spec, model.Weights, int) error { return errors.New("merge: nothing to export") }
	t1 := time.Now()
	res, err := train.Run(ctx, cfg, noTrain, noExport, nil)
	if err != nil {
		return err
	}
	t2 := time.Now()
	if err := os.RemoveAll(filepath.Join(outDir, "checkpoints")); err != nil {
		return err
	}
	prefix := c.models.cfg.ModelsPrefix + r.Candidate + "/"
	// The manifest last: a set is complete once its manifest is there.
	var files []string
	err = filepath.Walk(outDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	sort.Slice(files, func(i, j int) bool {
		return filepath.Base(files[j]) == "manifest.json" && filepath.Base(files[i]) != "manifest.json"
	})
	for _, p := range files {
		rel, _ := filepath.Rel(outDir, p)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		fi, _ := f.Stat()
		err = c.store.PutReader(ctx, prefix+filepath.ToSlash(rel), f, fi.Size(), "application/octet-stream")
		f.Close()
		if err != nil {
			return err
		}
	}
	f1 := res.Report.MacroF1
	r.MacroF1 = &f1
	r.Report, r.Curves = prefix+"report.json", prefix+"curves.png"
	c.log.Info("model set written", "run", r.ID, "version", r.Candidate, "macro_f1", f1, "stage_s", t1.Sub(t0).Seconds(),
		"finish_s", t2.Sub(t1).Seconds(), "upload_s", time.Since(t2).Seconds())
	return nil
}

// decide runs the guarded promotion of the run's candidate and finishes the run.
func (c *Coordinator) decide(ctx context.Context, st *RunState) error {
	r := &st.Run
	cur, _, err := c.models.Current(ctx)
	if err != nil {
		return err
	}
	if cur.Version == r.Candidate { // promoted before a restart: only the bookkeeping is left
		return c.finish(ctx, st, nil)
	}
	snap, err := readSnapshot(ctx, c.store, r.Dataset)
	if err != nil {
		return err
	}
	d, err := c.models.Decide(ctx, Request{Version: r.Candidate, RunID: r.ID, By: "coordinator", Snapshot: snap, DatasetDigest: r.DatasetDigest})
	if err != nil {
		if errors.Is(err, ErrConflict) {
			c.log.Warn("promotion lost a race; deciding again", "run", r.ID, "err", err)
			return nil
		}
		return c.retryOrFail(ctx, st, fmt.Errorf("decide: %w", err))
	}
	r.Decision = runs.DecisionKey(c.models.cfg.ModelsPrefix, d)
	c.Metrics.decision(d.Action)
	c.log.Info("promotion decision", "run", r.ID, "action", d.Action, "version", d.Version, "reason", d.Reason)
	if d.Action == runs.ActionPromote && c.cfg.Relabel && c.Relabeler != nil {
		// In the background: a replay of a large bucket takes a while, the loop goes on.
		p, _, _ := c.models.Current(ctx)
		go func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(c.cfg.RelabelDelay):
			}
			if err := c.Relabeler.Relabel(ctx, p); err != nil && ctx.Err() == nil {
				c.log.Warn("relabel after promotion", "version", p.Version, "err", err)
			}
		}()
	}
	return c.finish(ctx, st, nil)
}

// maxStepFailures is how often the merge or the decision of a run may fail (an S3 hiccup, a
// production set that does not load) before the run is recorded as failed.
const maxStepFailures = 3

// retryOrFail leaves the run where it is for the next Step, or fails it after maxStepFailures.
func (c *Coordinator) retryOrFail(ctx context.Context, st *RunState, err error) error {
	c.mu.Lock()
	c.failures[st.Run.ID]++
	n := c.failures[st.Run.ID]
	c.mu.Unlock()
	if n < maxStepFailures && ctx.Err() == nil {
		return fmt.Errorf("run %s (attempt %d of %d, retried): %w", st.Run.ID, n, maxStepFailures, err)
	}
	return c.finish(ctx, st, err)
}

// finish records the run's end and releases the lock.
func (c *Coordinator) finish(ctx context.Context, st *RunState, runErr error) error {
	now := time.Now().UTC()
	st.Run.Finished = &now
	st.Run.State = runs.RunDone
	if runErr != nil {
		st.Run.State, st.Run.Error = runs.RunFailed, runErr.Error()
		c.log.Error("training run failed", "run", st.Run.ID, "err", runErr)
	}
	c.Metrics.run(st.Run.State)
	if err := c.saveRun(ctx, st); err != nil {
		return err
	}
	if err := c.kv.Delete(ctx, activeKey); err != nil {
		return err
	}
	c.mu.Lock()
	c.dirty = true
	c.mu.Unlock()
	return nil
}
