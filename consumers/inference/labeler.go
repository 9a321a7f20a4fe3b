package inference

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labeling"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/serve"
)

// The labeler is the sample path of the service: its JetStream input (readyInput, which alone
// acknowledges, redelivers and dead-letters) feeds the labeling processors (labeling.Assemble in
// FetchWorkers goroutines, a batcher with Triton's dynamic-batching semantics, labeling.Predict on
// one inference goroutine, labeling.Label in WriteWorkers goroutines) whose results go to the
// plate's labels in the object store (labels.ObjectSink) and to the bus (label-written events,
// plate CSV generations, the sample's KV entry).

// job is a sample moving through fetch -> batch -> infer -> write.
type job struct {
	msg   labeling.Message
	ack   labeling.AckFunc
	start time.Time
	a     labeling.Assembled
	// err is a poison failure: error record + dead letter + no redelivery.
	err   error
	probs []float64
	info  labels.ModelInfo
	th    labels.Thresholds
}

func (j *job) ref() labels.Ref { return labels.Ref{Plate: j.msg.Sample.Plate, ID: j.msg.Sample.ID} }

// runLabeler consumes sample-ready messages until ctx is done; then it stops pulling, finishes
// every message it holds (labels written and acknowledged) and returns. It returns an error when
// its consumer is gone.
func (s *Service) runLabeler(ctx context.Context) error {
	cons, err := s.consumer(ctx, s.cfg.ReadyStream, s.cfg.LabelConsumer)
	if serve.StoppedWhileStarting(ctx, err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("label consumer: %w", err)
	}
	it, err := cons.Messages(append(pullOptions(), jetstream.PullMaxMessages(max(2*s.cfg.MaxBatch, 2*s.cfg.FetchWorkers)))...)
	if err != nil {
		return fmt.Errorf("label consumer: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	defer it.Stop()
	live := newReadyInput(s, it, s.cfg.LabelConsumer)
	opCtx := context.WithoutCancel(ctx)
	hbCtx, hbStop := context.WithCancel(opCtx)
	defer hbStop()
	go live.heartbeat(hbCtx)
	var in labeling.Input = live
	if !s.replayOff.Load() {
		rcons, err := s.consumer(ctx, s.cfg.ReplayReadyStream, s.cfg.ReplayLabelConsumer)
		if serve.StoppedWhileStarting(ctx, err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("replay label consumer: %w", err)
		}
		// Replayed samples are pulled a batch at a time: they may wait behind live work, and
		// only messages handed out get heartbeats.
		rit, err := rcons.Messages(append(pullOptions(), jetstream.PullMaxMessages(max(s.cfg.MaxBatch, 2)))...)
		if err != nil {
			return fmt.Errorf("replay label consumer: %w", err)
		}
		rstop := context.AfterFunc(ctx, rit.Drain)
		defer rstop()
		defer rit.Stop()
		replayed := newReadyInput(s, rit, s.cfg.ReplayLabelConsumer)
		go replayed.heartbeat(hbCtx)
		in = newPriorityInput(ctx, live, replayed, s.cfg.MaxBatch)
	}

	fetchCh := make(chan *job, s.cfg.FetchWorkers)
	batchCh := make(chan *job, s.cfg.MaxBatch*2)
	// Unbuffered: while the model is busy the batcher keeps its due batch growing up to MaxBatch,
	// and hands it over the moment the model is free (no I/O between batches).
	inferCh := make(chan []*job)
	writeCh := make(chan *job, s.cfg.MaxBatch*2)
	fetcher := labeling.ObjectFetcher{Store: s.store, MaxBytes: s.cfg.MaxObjectBytes,
		OnRetry: func() { s.m.errors.WithLabelValues("s3").Inc() }}

	var fetchWG, writeWG sync.WaitGroup
	for i := 0; i < s.cfg.FetchWorkers; i++ {
		fetchWG.Add(1)
		go func() {
			defer fetchWG.Done()
			for j := range fetchCh {
				s.m.queueDepth.WithLabelValues("fetch").Dec()
				t0 := time.Now()
				a, err := labeling.Assemble(opCtx, fetcher, j.msg.Sample, s.cfg.Decode)
				s.m.fetchSec.Observe(time.Since(t0).Seconds())
				switch {
				case labeling.IsTransient(err):
					s.retry(opCtx, j, err)
				case err != nil:
					j.err = err
					s.m.queueDepth.WithLabelValues("write").Inc()
					writeCh <- j
				default:
					j.a = a
					s.m.queueDepth.WithLabelValues("batch").Inc()
					batchCh <- j
				}
			}
		}()
	}
	go func() { fetchWG.Wait(); close(batchCh) }()
	go s.batcher(batchCh, inferCh)
	inferDone := make(chan struct{})
	go func() {
		defer close(inferDone)
		for batch := range inferCh {
			s.infer(opCtx, batch, writeCh)
		}
	}()
	for i := 0; i < s.cfg.WriteWorkers; i++ {
		writeWG.Add(1)
		go func() {
			defer writeWG.Done()
			for j := range writeCh {
				s.m.queueDepth.WithLabelValues("write").Dec()
				s.write(opCtx, j)
			}
		}()
	}
	var readErr error
	for {
		msg, ack, err := in.Read(ctx)
		if err != nil {
			if !errors.Is(err, labeling.ErrEndOfInput) {
				readErr = err
			}
			break
		}
		s.m.queueDepth.WithLabelValues("fetch").Inc()
		fetchCh <- &job{msg: msg, ack: ack, start: time.Now()}
	}
	close(fetchCh)
	<-inferDone
	close(writeCh)
	writeWG.Wait()
	return readErr
}

// batcher forms batches with Triton's dynamic-batching semantics: a batch is sent when it holds
// MaxBatch samples or when its oldest sample has waited MaxBatchDelay; while the model is busy
// with the previous batch a due batch keeps growing up to MaxBatch.
func (s *Service) batcher(in <-chan *job, out chan<- []*job) {
	defer close(out)
	var batch []*job
	var timer *time.Timer
	var timerC <-chan time.Time
	due := false
	send := func() {
		s.m.queueDepth.WithLabelValues("batch").Sub(float64(len(batch)))
		out <- batch
		batch, due, timerC = nil, false, nil
		if timer != nil {
			timer.Stop()
		}
	}
	for {
		if due && len(batch) > 0 {
			var inC <-chan *job
			if len(batch) < s.cfg.MaxBatch {
				inC = in
			}
			select {
			case out <- batch:
				s.m.queueDepth.WithLabelValues("batch").Sub(float64(len(batch)))
				batch, due, timerC = nil, false, nil
			case j, ok := <-inC:
				if !ok {
					send()
					return
				}
				batch = append(batch, j)
			}
			continue
		}
		select {
		case j, ok := <-in:
			if !ok {
				if len(batch) > 0 {
					send()
				}
				return
			}
			batch = append(batch, j)
			if len(batch) == 1 {
				if s.cfg.MaxBatchDelay <= 0 {
					due = true
				} else {
					timer = time.NewTimer(s.cfg.MaxBatchDelay)
					timerC = timer.C
				}
			}
			if len(batch) >= s.cfg.MaxBatch {
				due = true
			}
		case <-timerC:
			due = true
			timerC = nil
		}
	}
}

// infer runs one batch on the serving model set (taken once per batch, so a hot reload swaps
// between batches) and hands the results to the writers. A sample the model fails on (alone, when
// its batch failed) is retried later.
func (s *Service) infer(ctx context.Context, batch []*job, writeCh chan<- *job) {
	m := s.model.acquire()
	if m == nil {
		for _, j := range batch {
			s.retry(ctx, j, &labeling.TransientError{Op: "infer", Err: errors.New("no model loaded")})
		}
		return
	}
	imgs := make([]pipeline.Image4, len(batch))
	for i, j := range batch {
		imgs[i] = j.a.Image
	}
	s.m.batchSize.Observe(float64(len(batch)))
	t0 := time.Now()
	probs, errs, batchErr := labeling.Predict(ctx, m.pred, imgs)
	s.m.computeSec.Observe(time.Since(t0).Seconds())
	info, th := m.info, m.th
	m.release()
	if batchErr != nil {
		s.m.errors.WithLabelValues(string(labels.KindInference)).Inc()
	}
	for i, j := range batch {
		if errs[i] != nil {
			s.retry(ctx, j, &labeling.TransientError{Op: "infer", Err: errs[i]})
			continue
		}
		j.probs, j.info, j.th = probs[i], info, th
		j.a.Image = pipeline.Image4{} // let the pixels go before the write
		s.m.queueDepth.WithLabelValues("write").Inc()
		writeCh <- j
	}
}

// retry hands a sample back for a later delivery, or records it as failed on its final one.
func (s *Service) retry(ctx context.Context, j *job, err error) {
	if j.msg.Final {
		j.err = err
		s.fail(ctx, j)
		return
	}
	j.ack(ctx, err)
}

// write puts the label (unless an identical one is there), publishes the label event, bumps the
// plate's CSV generation and acknowledges.
func (s *Service) write(ctx context.Context, j *job) {
	if j.err != nil {
		s.fail(ctx, j)
		return
	}
	t0 := time.Now()
	r, ref := j.msg.Sample, j.ref()
	label, b, err := labeling.Label(r.ID, j.a.Sources, j.info, j.th, j.probs)
	if err != nil {
		s.m.errors.WithLabelValues(string(labels.KindInference)).Inc()
		j.err = err
		s.fail(ctx, j)
		return
	}
	key := s.sink.LabelKey(ref)
	marker := label.Model.ManifestDigest + "/" + j.msg.Content
	// The sample's KV entry says whether this digest already labeled this content (fast path,
	// no S3 round trip). When it cannot say for sure (a redelivery: maybe a crash between the
	// PUT and the KV update; a ready message whose content is not the entry's), the existing
	// label object decides.
	rec, _ := s.sampleState(ctx, r.Plate, r.ID)
	unchanged := rec != nil && rec.Labeled == marker
	sure := unchanged || (rec != nil && j.msg.Attempt == 1 && rec.complete() && rec.contentHash() == j.msg.Content)
	if !sure {
		if old, err := s.sink.ReadLabel(ctx, ref); err == nil {
			if bytes.Equal(old, b) {
				unchanged = true
			} else if ol, err := labels.ParseLabel(old); err == nil && ol.Model.ManifestDigest == label.Model.ManifestDigest &&
				slices.Equal(ol.Sources, label.Sources) {
				unchanged = true
			}
		} else if !errors.Is(err, objstore.ErrNotFound) {
			s.m.errors.WithLabelValues("s3").Inc()
			s.retry(ctx, j, &labeling.TransientError{Op: "get " + key, Err: err})
			return
		}
	}
	if unchanged {
		s.m.unchanged.Inc()
	} else {
		if err := s.sink.PutLabel(ctx, ref, b); err != nil {
			s.m.errors.WithLabelValues("s3").Inc()
			s.retry(ctx, j, &labeling.TransientError{Op: "put " + key, Err: err})
			return
		}
		s.m.labeled.Inc()
		if rec == nil || rec.Failed || rec.Reported {
			// An error record may be left from an earlier failure of this sample.
			if err := s.sink.RemoveError(ctx, ref); err != nil {
				s.log.Warn("could not remove an old error record", "plate", r.Plate, "sample", r.ID, "err", err)
			}
		}
		ev, _ := json.Marshal(bus.LabelWritten{Plate: r.Plate, SampleID: r.ID, Key: key,
			ManifestDigest: label.Model.ManifestDigest, Predicted: label.PredictedIDs()})
		if err := s.nc.Publish(s.cfg.LabelsSubjectOf(r.Plate), ev); err != nil {
			s.log.Warn("label event publish failed", "plate", r.Plate, "sample", r.ID, "err", err)
		}
	}
	if err := s.csv.labelWritten(ctx, r.Plate); err != nil {
		s.m.errors.WithLabelValues("nats").Inc()
		s.retry(ctx, j, &labeling.TransientError{Op: "plate generation", Err: err})
		return
	}
	s.markSample(ctx, r.Plate, r.ID, j.msg.Content, func(rec *sampleRec) { rec.Labeled, rec.Failed = marker, false })
	j.ack(ctx, nil)
	s.m.writeSec.Observe(time.Since(t0).Seconds())
	s.log.Debug("labeled", "plate", r.Plate, "sample", r.ID, "predicted", label.PredictedIDs(), "unchanged", unchanged,
		"latency", time.Since(j.start))
}

// sampleState reads a sample's KV entry (nil when absent or unreadable).
func (s *Service) sampleState(ctx context.Context, plate, id string) (*sampleRec, uint64) {
	e, err := s.samples.Get(ctx, kvKey(plate, id))
	if err != nil {
		return nil, 0
	}
	var rec sampleRec
	if json.Unmarshal(e.Value(), &rec) != nil || rec.Plate != plate || rec.ID != id {
		return nil, 0
	}
	return &rec, e.Revision()
}

// markSample applies f to the sample's KV entry if it still describes content (compare-and-set;
// best effort: a failure only costs an extra check later). Labeled records that the label of a
// digest and content is written, so replayed events do not publish the sample again; Failed
// that an error record may exist.
func (s *Service) markSample(ctx context.Context, plate, id, content string, f func(*sampleRec)) {
	key := kvKey(plate, id)
	for range 10 {
		rec, rev := s.sampleState(ctx, plate, id)
		if rec == nil || !rec.complete() || rec.contentHash() != content {
			return
		}
		before, _ := json.Marshal(rec)
		f(rec)
		b, _ := json.Marshal(rec)
		if bytes.Equal(before, b) {
			return
		}
		if _, err := s.samples.Update(ctx, key, b, rev); err == nil || !(errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
			return
		}
	}
}

// fail writes the error record next to where the label would be, marks the sample failed and
// reports the failure to the input (which dead-letters the message and stops its redelivery).
// When the record cannot be written and deliveries remain, the sample is retried instead.
func (s *Service) fail(ctx context.Context, j *job) {
	r := j.msg.Sample
	var infoPtr *labels.ModelInfo
	if info, _, ok := s.model.info(); ok {
		infoPtr = &info
	}
	rec := labeling.Failure(r.ID, j.err, infoPtr, true)
	s.m.errors.WithLabelValues(rec.Kind).Inc()
	s.log.Warn("sample failed", "plate", r.Plate, "sample", r.ID, "kind", rec.Kind, "object", rec.Object, "reason", rec.Reason)
	if b, err := labels.MarshalError(rec); err == nil {
		if err := s.sink.WriteError(ctx, j.ref(), b); err != nil {
			s.m.errors.WithLabelValues("s3").Inc()
			if !j.msg.Final {
				j.ack(ctx, &labeling.TransientError{Op: "put error record", Err: err})
				return
			}
		}
	}
	s.markSample(ctx, r.Plate, r.ID, j.msg.Content, func(sr *sampleRec) { sr.Failed = true })
	j.ack(ctx, &labeling.Failed{Record: rec, Err: j.err})
}
