package training

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
	"github.com/hpa-plates/hpa/internal/model/torch"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/runs"
	"github.com/hpa-plates/hpa/internal/serve"
	"github.com/hpa-plates/hpa/internal/train"
)

// WorkerConfig configures a training worker (`hpa training worker`, config section
// training_worker).
type WorkerConfig struct {
	// Name identifies the worker in fold progress (default: the host name).
	Name string
	// CacheDir holds the jobs' local data and outputs.
	CacheDir string
	// Device is cpu | cuda | cuda:N; Torch says which libtorch shim to open.
	Device string
	Torch  torch.Options
	// Workers decode and augment images.
	Workers int
	// AckWait is how long a job stays with a worker that stopped heartbeating before another takes it.
	AckWait time.Duration
	// RunsPrefix is where fold checkpoints and members go (default runs.DefaultRunsPrefix).
	RunsPrefix string
	// Once stops the worker after one job (tests, batch pods).
	Once bool
	// Replicas of the stream and KV bucket the worker creates when missing (config nats.replicas).
	Replicas int
}

func (c *WorkerConfig) fill() {
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(os.TempDir(), "hpa-training-worker")
	}
	if c.Device == "" {
		c.Device = "cpu"
	}
	if c.AckWait <= 0 {
		c.AckWait = time.Minute
	}
	if c.RunsPrefix == "" {
		c.RunsPrefix = runs.DefaultRunsPrefix
	}
}

// FoldState is a fold's progress as its worker reports it (KV bus.TrainingBucket, key
// fold.<run>.<k>): the fold record of the run plus where its outputs are.
type FoldState struct {
	runs.Fold
	Run string `json:"run"`
	Out string `json:"out"`
}

func foldKey(run string, fold int) string { return fmt.Sprintf("fold.%s.%d", run, fold) }

// Worker pulls fold jobs one at a time and trains them.
type Worker struct {
	cfg   WorkerConfig
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	store *objstore.Bucket
	log   *slog.Logger
	// Metrics, when set, counts fold jobs and epochs.
	Metrics *Metrics
	// newModel and export train and write members; nil means the libtorch backend of cfg.
	newModel func(train.Config) train.BackendFactory
	export   train.Exporter
}

// NewWorker creates a worker over the bus and the bucket.
func NewWorker(ctx context.Context, cfg WorkerConfig, js jetstream.JetStream, store *objstore.Bucket, log *slog.Logger) (*Worker, error) {
	cfg.fill()
	if log == nil {
		log = slog.Default()
	}
	t := bus.Topology{Replicas: cfg.Replicas}
	if err := EnsureJobsStream(ctx, js, t); err != nil {
		return nil, err
	}
	kv, err := trainingKV(ctx, js, t)
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, js: js, kv: kv, store: store, log: log}
	return w, nil
}

// EnsureJobsStream creates the fold-job work queue when it does not exist (t.Replicas).
func EnsureJobsStream(ctx context.Context, js jetstream.JetStream, t bus.Topology) error {
	return bus.EnsureTrainJobsStream(ctx, js, t)
}

func trainingKV(ctx context.Context, js jetstream.JetStream, t bus.Topology) (jetstream.KeyValue, error) {
	return bus.EnsureTrainingBucket(ctx, js, t)
}

// torchBackend is the libtorch trainer and the ONNX exporter, as `hpa train` uses them.
func torchBackend(o torch.Options, device string) (func(train.Config) train.BackendFactory, train.Exporter, error) {
	lib, err := torch.OpenWith(o)
	if err != nil {
		return nil, nil, err
	}
	newModel := func(c train.Config) train.BackendFactory {
		return func(spec model.Spec, seed int64) (train.Backend, error) {
			return torch.NewBackend(lib, spec, device, uint64(seed), torch.BackendOptions{
				Optimizer: c.Optimizer, LR: c.LR, Momentum: c.Momentum, WeightDecay: c.WeightDecay, Nesterov: c.Nesterov,
				Loss: c.Loss, FocalGamma: c.FocalGamma,
			})
		}
	}
	export := func(path string, spec model.Spec, w model.Weights, size int) error {
		return onnx.ExportFile(path, spec, w, onnx.ExportOptions{InputSize: size, InputName: "input", OutputName: "logits", Opset: 17})
	}
	return newModel, export, nil
}

// Run pulls and trains jobs until ctx ends (or after one job with Once).
func (w *Worker) Run(ctx context.Context) error {
	if w.newModel == nil {
		nm, ex, err := torchBackend(w.cfg.Torch, w.cfg.Device)
		if err != nil {
			return err
		}
		w.newModel, w.export = nm, ex
	}
	cons, err := w.js.CreateOrUpdateConsumer(ctx, bus.TrainJobsStream, jetstream.ConsumerConfig{
		Durable: bus.TrainWorkersConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: w.cfg.AckWait,
		MaxDeliver: -1, MaxAckPending: 1000,
	})
	if serve.StoppedWhileStarting(ctx, err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", bus.TrainWorkersConsumer, err)
	}
	w.log.Info("training worker ready", "worker", w.cfg.Name, "device", w.cfg.Device)
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.log.Warn("fetch fold job", "err", err)
			time.Sleep(time.Second)
			continue
		}
		for msg := range batch.Messages() {
			w.handle(ctx, msg)
			if w.cfg.Once {
				return nil
			}
		}
	}
	return nil
}

// handle trains one job and acknowledges it.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	var job Job
	if err := json.Unmarshal(msg.Data(), &job); err != nil || runs.CheckName(job.Run) != nil {
		w.log.Error("bad fold job", "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason("bad job")
		return
	}
	attempts := 1
	if md, err := msg.Metadata(); err == nil {
		attempts = int(md.NumDelivered)
	}
	if st, ok := w.foldState(ctx, job); ok && st.State == runs.FoldDone {
		_ = msg.DoubleAck(ctx) // trained and uploaded; only the ack was lost
		return
	}
	if e, err := w.kv.Get(ctx, runKVKey(job.Run)); err == nil {
		var rs RunState
		if json.Unmarshal(e.Value(), &rs) == nil && (rs.Run.State == runs.RunFailed || rs.Run.State == runs.RunDone) {
			w.log.Info("fold job of a finished run dropped", "run", job.Run, "fold", job.Fold, "state", rs.Run.State)
			_ = msg.DoubleAck(ctx)
			return
		}
	}
	hctx, stop := context.WithCancel(ctx)
	var hb sync.WaitGroup
	hb.Add(1)
	go func() {
		defer hb.Done()
		t := time.NewTicker(max(w.cfg.AckWait/4, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	began := time.Now()
	err := w.trainJob(hctx, job, attempts)
	stop()
	hb.Wait()
	switch {
	case err == nil:
		w.Metrics.foldJob("done", time.Since(began).Seconds())
		if err := msg.DoubleAck(ctx); err != nil {
			w.log.Warn("ack fold job", "run", job.Run, "fold", job.Fold, "err", err)
		}
	case ctx.Err() != nil:
		w.Metrics.foldJob("interrupted", 0)
		_ = msg.Nak() // shutting down: another worker resumes from the checkpoint
	default:
		w.Metrics.foldJob("failed", 0)
		w.log.Error("fold job failed", "run", job.Run, "fold", job.Fold, "err", err)
		w.putFold(context.WithoutCancel(ctx), FoldState{Run: job.Run, Out: job.Out, Fold: runs.Fold{Fold: job.Fold, State: runs.FoldFailed, Worker: w.cfg.Name, Attempts: attempts, Updated: time.Now().UTC()}})
		_ = msg.TermWithReason(firstLine(err.Error()))
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (w *Worker) foldState(ctx context.Context, job Job) (FoldState, bool) {
	e, err := w.kv.Get(ctx, foldKey(job.Run, job.Fold))
	if err != nil {
		return FoldState{}, false
	}
	var st FoldState
	return st, json.Unmarshal(e.Value(), &st) == nil
}

func (w *Worker) putFold(ctx context.Context, st FoldState) {
	b, _ := json.Marshal(st)
	if _, err := w.kv.Put(ctx, foldKey(st.Run, st.Fold.Fold), b); err != nil {
		w.log.Warn("fold progress", "run", st.Run, "fold", st.Fold.Fold, "err", err)
	}
}

// trainJob stages the run's data and the fold's last checkpoint from S3, trains the fold (resuming),
// uploads checkpoints and members after every epoch and at the end, and marks the fold done.
func (w *Worker) trainJob(ctx context.Context, job Job, attempts int) error {
	t0 := time.Now()
	root := filepath.Join(w.cfg.CacheDir, job.Run)
	dataDir := filepath.Join(root, "data")
	outDir := filepath.Join(root, fmt.Sprintf("fold-%d", job.Fold))
	if err := stageData(ctx, w.store, job, dataDir); err != nil {
		return err
	}
	if err := os.RemoveAll(outDir); err != nil {
		return err
	}
	if _, err := downloadPrefix(ctx, w.store, job.Out, outDir); err != nil {
		return err
	}
	cfg, err := job.Settings.Config(dataDir, outDir, filepath.Join(dataDir, "folds.csv"), job.Version, job.Parent, w.cfg.Workers)
	if err != nil {
		return err
	}
	cfg.TrainFolds = []int{job.Fold}
	cfg.TrainOnly = true // the coordinator's merge picks thresholds and writes the report, once
	st := FoldState{Run: job.Run, Out: job.Out, Fold: runs.Fold{Fold: job.Fold, State: runs.FoldRunning, Worker: w.cfg.Name,
		Attempts: attempts, Cycles: cfg.Cycles, Epochs: cfg.Cycles * cfg.EpochsPerCycle, Updated: time.Now().UTC()}}
	w.putFold(ctx, st)
	sy := &syncer{store: w.store, dir: outDir, prefix: job.Out, seen: map[string]fileStamp{}}
	// Files already in S3 (the resumed checkpoint) need no upload.
	_ = sy.scan(func(string, fileStamp) error { return nil })
	sy.start(ctx)
	defer sy.stop()
	lastEpoch, lastReport := -1, time.Time{}
	var syncErr error
	progress := func(p train.Progress) {
		if p.Phase != "train" {
			return
		}
		epoch := p.Cycle*p.Epochs + p.Epoch
		if p.Batch == 0 && epoch > 0 && epoch != lastEpoch && syncErr == nil {
			// The previous epoch's checkpoint (and any member it exported) is on disk: upload it.
			// Uploaded in the background from a hard link: training goes on meanwhile.
			syncErr = sy.snapshot()
			w.Metrics.epoch()
		}
		lastEpoch = epoch
		if time.Since(lastReport) >= 2*time.Second || p.Batch == p.Batches-1 {
			lastReport = time.Now()
			loss, eta := p.Loss, p.ETA.Seconds()
			st.Cycle, st.Epoch, st.Loss, st.ETASeconds, st.Updated = p.Cycle+1, epoch+1, &loss, &eta, time.Now().UTC()
			w.putFold(ctx, st)
		}
	}
	t1 := time.Now()
	if _, err := train.Run(ctx, cfg, w.newModel(cfg), w.export, progress); err != nil {
		return err
	}
	t2 := time.Now()
	if syncErr != nil {
		return syncErr
	}
	if err := sy.snapshot(); err != nil {
		return err
	}
	if err := sy.flush(); err != nil {
		return err
	}
	w.log.Info("fold trained", "run", job.Run, "fold", job.Fold, "attempt", attempts, "stage_s", t1.Sub(t0).Seconds(),
		"train_s", t2.Sub(t1).Seconds(), "upload_wait_s", time.Since(t2).Seconds())
	st.State, st.Updated, st.ETASeconds = runs.FoldDone, time.Now().UTC(), nil
	st.Epoch = st.Epochs
	st.Cycle = st.Cycles
	w.putFold(ctx, st)
	return nil
}

// stageData writes the run's train.csv and folds.csv and the snapshot's images (the versions the
// snapshot froze: an object whose ETag changed since fails the job) into dir.
func stageData(ctx context.Context, store *objstore.Bucket, job Job, dir string) error {
	imgDir := filepath.Join(dir, "train")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"train.csv", "folds.csv"} {
		b, err := store.Get(ctx, job.Data+name, 1<<30)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	snap, err := readSnapshot(ctx, store, job.Dataset)
	if err != nil {
		return err
	}
	// Several GETs in flight: the first job of a run stages every image, before any training.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(stageParallel)
	for _, s := range snap.Samples {
		for c, key := range s.Keys {
			local := filepath.Join(imgDir, filepath.Base(key))
			stamp := local + ".etag"
			if b, err := os.ReadFile(stamp); err == nil && string(b) == s.ETags[c] {
				continue
			}
			etag := s.ETags[c]
			g.Go(func() error {
				if err := getExact(gctx, store, key, etag, local); err != nil {
					return err
				}
				return os.WriteFile(stamp, []byte(etag), 0o644)
			})
		}
	}
	return g.Wait()
}

// stageParallel is how many images a worker downloads at once when it stages a run's data.
const stageParallel = 16

// ErrChanged is returned when an object of a snapshot changed after the snapshot was frozen.
var ErrChanged = errors.New("object changed since the dataset snapshot")

func getExact(ctx context.Context, store *objstore.Bucket, key, etag, local string) error {
	body, info, err := store.Open(ctx, key)
	if err != nil {
		return err
	}
	defer body.Close()
	if etag != "" && info.ETag != etag {
		return fmt.Errorf("%s: ETag %s, snapshot has %s: %w", key, info.ETag, etag, ErrChanged)
	}
	return writeFileFrom(local, body)
}

func writeFileFrom(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// downloadPrefix copies every object below prefix into dir (keys relative to prefix).
func downloadPrefix(ctx context.Context, store *objstore.Bucket, prefix, dir string) (int, error) {
	objs, err := store.List(ctx, prefix)
	if err != nil {
		return 0, err
	}
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, prefix)
		if rel == "" || strings.Contains(rel, "..") {
			continue
		}
		body, _, err := store.Open(ctx, o.Key)
		if err != nil {
			return 0, err
		}
		err = writeFileFrom(filepath.Join(dir, filepath.FromSlash(rel)), body)
		body.Close()
		if err != nil {
			return 0, err
		}
	}
	return len(objs), nil
}

// syncer uploads a fold's checkpoints and members when they change: members first, so a
// checkpoint in S3 never names a member that is not there.
type syncer struct {
	store  *objstore.Bucket
	dir    string
	prefix string
	seen   map[string]fileStamp
	n      int

	mu     sync.Mutex
	idle   *sync.Cond
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{}
	queue  []upload
	busy   bool
	closed bool
	err    error
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func (s *syncer) scan(fn func(rel string, st fileStamp) error) error {
	for _, sub := range []string{"members", "checkpoints"} {
		root := filepath.Join(s.dir, sub)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() || strings.HasSuffix(p, ".tmp") {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(s.dir, p)
			st := fileStamp{fi.Size(), fi.ModTime()}
			if s.seen[rel] == st {
				return nil
			}
			if err := fn(filepath.ToSlash(rel), st); err != nil {
				return err
			}
			s.seen[rel] = st
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// upload is one file to put: a hard link to the version to upload (the trainer replaces
// checkpoints by rename, so the link keeps this version's bytes).
type upload struct {
	rel, link string
	size      int64
}

// start runs the uploader: one goroutine putting queued files in order.
func (s *syncer) start(ctx context.Context) {
	s.mu.Lock()
	// Uploads outlive the job's context by a grace period: a worker told to stop still puts its
	// last epoch's checkpoint in S3, so the worker that takes the job over loses no epoch.
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wake, s.done = make(chan struct{}, 1), make(chan struct{})
	s.mu.Unlock()
	go func() {
		defer close(s.done)
		for {
			s.mu.Lock()
			for len(s.queue) == 0 && !s.closed {
				s.mu.Unlock()
				<-s.wake
				s.mu.Lock()
			}
			if len(s.queue) == 0 && s.closed {
				s.mu.Unlock()
				return
			}
			u := s.queue[0]
			s.queue = s.queue[1:]
			s.busy = true
			s.mu.Unlock()
			err := s.put(u)
			s.mu.Lock()
			s.busy = false
			if err != nil && s.err == nil {
				s.err = err
			}
			s.cond().Broadcast()
			s.mu.Unlock()
		}
	}()
}

func (s *syncer) cond() *sync.Cond {
	if s.idle == nil {
		s.idle = sync.NewCond(&s.mu)
	}
	return s.idle
}

func (s *syncer) put(u upload) error {
	defer os.Remove(u.link)
	f, err := os.Open(u.link)
	if err != nil {
		return err
	}
	defer f.Close()
	return s.store.PutReader(s.ctx, s.prefix+u.rel, f, u.size, "application/octet-stream")
}

// snapshot queues every new or changed member and checkpoint (members first); a checkpoint still
// waiting from an earlier epoch is replaced by the newer one. It returns the uploader's first error.
func (s *syncer) snapshot() error {
	linkDir := filepath.Join(s.dir, ".upload")
	if err := os.MkdirAll(linkDir, 0o755); err != nil {
		return err
	}
	var add []upload
	err := s.scan(func(rel string, st fileStamp) error {
		s.n++
		link := filepath.Join(linkDir, fmt.Sprintf("%06d-%s", s.n, filepath.Base(rel)))
		if err := os.Link(filepath.Join(s.dir, filepath.FromSlash(rel)), link); err != nil {
			return err
		}
		add = append(add, upload{rel: rel, link: link, size: st.size})
		return nil
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range add {
		kept := s.queue[:0]
		for _, q := range s.queue {
			if q.rel == u.rel {
				os.Remove(q.link)
				continue
			}
			kept = append(kept, q)
		}
		s.queue = append(kept, u)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if err == nil {
		err = s.err
	}
	return err
}

// flush waits until everything queued is uploaded and returns the first upload error.
func (s *syncer) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.queue) > 0 || s.busy {
		if s.err != nil {
			return s.err
		}
		s.cond().Wait()
	}
	return s.err
}

// uploadGrace bounds how long a stopping worker keeps uploading what it queued.
const uploadGrace = 2 * time.Minute

// stop ends the uploader after what is queued, waiting at most uploadGrace.
func (s *syncer) stop() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case <-s.done:
	case <-time.After(uploadGrace):
		s.cancel()
		<-s.done
	}
	s.cancel()
}
