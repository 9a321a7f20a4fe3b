package inference

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/serve"
	"github.com/hpa-plates/hpa/producers/replay"
)

// Run sets up the streams, buckets and consumers, then works until ctx is done (a ctx that ends
// during the set-up is a clean stop: nil). On cancellation
// it stops taking new messages, finishes the ones it holds (labels written and acknowledged,
// events applied), brings plate CSVs up to date and returns nil. When a stage fails (the
// assembler's or the labeler's consumer is gone) the others drain and Run returns that error. The model set is loaded by
// Load before or while Run runs; messages that arrive before a model is loaded are retried later.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("inference: Run called twice")
	}
	s.running = true
	s.mu.Unlock()
	if err := s.Setup(ctx); err != nil {
		if serve.StoppedWhileStarting(ctx, err) {
			return nil // told to stop while setting up: nothing was taken, a clean stop
		}
		return err
	}
	s.csv = newCSVBuilder(s)

	sub, err := s.nc.Subscribe(s.cfg.PromotedSubject, func(m *nats.Msg) {
		loc := bus.ParsePromotion(m.Data).Location
		if loc == "" {
			s.log.Warn("empty model promotion ignored", "subject", m.Subject)
			return
		}
		if !s.allowedModel(loc) {
			s.log.Warn("model promotion refused: not below inference.model_prefixes", "location", loc)
			return
		}
		if _, cur, ok := s.model.info(); ok && cur == loc {
			return // already serving it (the current-model fact got here first)
		}
		s.log.Info("model promotion received", "location", loc)
		_ = s.Load(context.WithoutCancel(ctx), loc)
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", s.cfg.PromotedSubject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	// The plate CSV builder outlives the other stages: its last flush comes after the last label
	// was written.
	csvCtx, csvStop := context.WithCancel(context.WithoutCancel(ctx))
	csvDone := make(chan struct{})
	go func() { defer close(csvDone); s.csv.run(csvCtx) }()
	stages := []serve.Stage{s.runAssembler, s.runReplayAssembler, s.runLabeler, s.sweep}
	if s.cfg.ModelPointer != "" {
		stages = append(stages, s.pollPointer)
	}
	if !s.cfg.NoWatchCurrent {
		stages = append(stages, s.watchCurrent)
	}
	// Any stage failing (e.g. its durable consumer was deleted) stops the others: the service
	// stops with that error instead of running half.
	err = serve.Run(ctx, stages...)
	csvStop()
	<-csvDone
	return err
}

// pollPointer reloads when the model pointer object names a different location.
func (s *Service) pollPointer(ctx context.Context) error {
	t := time.NewTicker(s.cfg.PointerPoll)
	defer t.Stop()
	for {
		s.checkPointer(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Service) checkPointer(ctx context.Context) {
	data, err := s.store.Get(ctx, s.cfg.ModelPointer, 1<<16)
	if err != nil {
		if !errors.Is(err, objstore.ErrNotFound) {
			s.log.Warn("model pointer unreadable", "key", s.cfg.ModelPointer, "err", err)
		}
		return
	}
	loc := bus.ParsePromotion(data).Location
	s.mu.Lock()
	changed := loc != "" && loc != s.pointer
	s.mu.Unlock()
	if !changed {
		return
	}
	if _, cur, ok := s.model.info(); ok && cur == loc {
		s.mu.Lock()
		s.pointer = loc
		s.mu.Unlock()
		return
	}
	s.log.Info("model pointer changed", "key", s.cfg.ModelPointer, "location", loc)
	// Remember the location even when the load fails: the failure is reported once, and a
	// later change of the pointer is tried again.
	_ = s.Load(ctx, loc)
	s.mu.Lock()
	s.pointer = loc
	s.mu.Unlock()
}

// sweep reconciles the bucket with the labels, reports incomplete samples older than
// IncompleteAge (once each: a CAS-set flag in the sample's KV entry makes one replica report it)
// and re-queues plates whose CSV is behind.
func (s *Service) sweep(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := s.SweepOnce(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("incomplete-sample sweep failed", "err", err)
		}
	}
}

// SweepOnce runs one sweep as of now (exported for tests and tools).
//
// First a reconciliation (producers/replay, as `hpa replay --reconcile`) lists the upload prefix
// and publishes, on the replay path, every sample whose four channels are in the bucket but that
// has neither a label nor an error record and whose newest channel is older than IncompleteAge/2:
// object stores can drop notifications (MinIO does for objects written right after it reports
// live), and a sample whose events were lost, all or some, would otherwise never be labeled.
// Then stale incomplete samples are reported, except those the reconciliation just published.
func (s *Service) SweepOnce(ctx context.Context, now time.Time) error {
	reconciled, err := s.reconcile(ctx, now)
	if err != nil {
		return err
	}
	lister, err := s.samples.ListKeys(ctx)
	if err != nil {
		return err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := s.reportIfStale(ctx, k, now, reconciled); err != nil {
			return err
		}
	}
	pl, err := s.plates.ListKeys(ctx)
	if err != nil {
		return err
	}
	for k := range pl.Keys() {
		e, err := s.plates.Get(ctx, k)
		if err != nil {
			continue
		}
		var p plateGen
		if json.Unmarshal(e.Value(), &p) == nil && p.Built < p.Gen && p.Plate != "" {
			s.csv.mu.Lock()
			s.csv.dirty[p.Plate] = true
			s.csv.mu.Unlock()
		}
	}
	return nil
}

// reconcile runs replay.Run with Reconcile over the upload prefix and returns the samples
// (plate/id) it published.
func (s *Service) reconcile(ctx context.Context, now time.Time) (map[string]bool, error) {
	bucket := s.cfg.Bucket
	if bucket == "" {
		if b, ok := s.store.(*objstore.Bucket); ok {
			bucket = b.Name
		} else {
			bucket = "bucket"
		}
	}
	published := map[string]bool{}
	sum, err := replay.Run(ctx, replay.Options{
		Source: "s3://" + bucket + "/" + s.cfg.UploadPrefix, Reconcile: true,
		MinAge: s.cfg.IncompleteAge / 2, AsOf: now,
		UploadPrefix: s.cfg.UploadPrefix, LabelsPrefix: s.cfg.LabelsPrefix, KeyPattern: s.cfg.KeyPattern,
		Topology: s.cfg.Topology, NC: s.nc, Store: listingStore{s.store}, Progress: replay.ProgressOff,
		Logger: s.log.With("sweep", "reconcile"), Workers: 4,
		OnPublish: func(plate, id string) { published[plate+"/"+id] = true },
	})
	if err != nil {
		return published, fmt.Errorf("reconcile: %w", err)
	}
	if len(published) > 0 {
		s.m.events.WithLabelValues("reconciled").Add(float64(len(published)))
		s.log.Warn("samples without label or error record published again by the sweep (their events were lost?)",
			"samples", sum.Published, "listed", sum.Listed)
	}
	return published, nil
}

// listingStore gives an objstore.Store the resumable listing replay.Store needs (the store's own
// when it has one, as *objstore.Bucket does).
type listingStore struct{ objstore.Store }

func (l listingStore) ObjectsAfter(ctx context.Context, prefix, startAfter string) iter.Seq2[objstore.ObjectInfo, error] {
	if o, ok := l.Store.(interface {
		ObjectsAfter(context.Context, string, string) iter.Seq2[objstore.ObjectInfo, error]
	}); ok {
		return o.ObjectsAfter(ctx, prefix, startAfter)
	}
	return func(yield func(objstore.ObjectInfo, error) bool) {
		objs, err := l.List(ctx, prefix)
		if err != nil {
			yield(objstore.ObjectInfo{}, err)
			return
		}
		for _, o := range objs {
			if o.Key > startAfter && !yield(o, nil) {
				return
			}
		}
	}
}

func (s *Service) reportIfStale(ctx context.Context, key string, now time.Time, reconciled map[string]bool) error {
	for range 10 {
		e, err := s.samples.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var rec sampleRec
		if json.Unmarshal(e.Value(), &rec) != nil || rec.ID == "" {
			return nil
		}
		if rec.complete() || rec.Reported || now.Sub(time.Unix(0, rec.FirstSeen)) < s.cfg.IncompleteAge {
			return nil
		}
		// Its four channels are in the bucket (their events were lost): the reconciliation
		// published it on the replay path, which labels it. Judged; nothing to report.
		handed := reconciled[rec.Plate+"/"+rec.ID]
		rec.Reported = true
		b, _ := json.Marshal(&rec)
		if _, err := s.samples.Update(ctx, key, b, e.Revision()); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
			return err
		}
		if handed {
			return nil
		}
		missing := rec.missing()
		reason := fmt.Sprintf("sample %s has no %s channel after %s (first channel seen %s)", rec.ID,
			strings.Join(missing, ", "), s.cfg.IncompleteAge, time.Unix(0, rec.FirstSeen).UTC().Format(time.RFC3339))
		s.m.incomplete.Inc()
		s.m.errors.WithLabelValues(string(pipeline.KindMissingChannel)).Inc()
		s.log.Warn("incomplete sample", "plate", rec.Plate, "sample", rec.ID, "missing", missing)
		var infoPtr *labels.ModelInfo
		if info, _, ok := s.model.info(); ok {
			infoPtr = &info
		}
		er := labels.ErrorRecord{Schema: labels.ErrorSchema, SampleID: rec.ID, Kind: string(pipeline.KindMissingChannel),
			Reason: reason, Model: infoPtr}
		if doc, err := labels.MarshalError(er); err == nil {
			if err := s.sink.WriteError(ctx, labels.Ref{Plate: rec.Plate, ID: rec.ID}, doc); err != nil {
				s.log.Warn("incomplete-sample record not written", "plate", rec.Plate, "sample", rec.ID, "err", err)
			}
		}
		s.deadLetter(ctx, rec.Plate, rec.ID, string(pipeline.KindMissingChannel), reason, "", nil)
		return nil
	}
	return nil
}
