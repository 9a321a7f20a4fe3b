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
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// inflight is one sample-ready message being worked on by this replica.
type inflight struct {
	msg   jetstream.Msg
	ready bus.SampleReady
	start time.Time
}

// inflightSet tracks the messages that need InProgress heartbeats.
type inflightSet struct {
	mu sync.Mutex
	m  map[*inflight]struct{}
}

func (s *inflightSet) add(f *inflight) {
	s.mu.Lock()
	s.m[f] = struct{}{}
	s.mu.Unlock()
}

func (s *inflightSet) remove(f *inflight) {
	s.mu.Lock()
	delete(s.m, f)
	s.mu.Unlock()
}

func (s *inflightSet) snapshot() []*inflight {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*inflight, 0, len(s.m))
	for f := range s.m {
		out = append(out, f)
	}
	return out
}

// job is a sample moving through fetch -> batch -> infer -> write.
type job struct {
	fl      *inflight
	img     pipeline.Image4
	sources []labels.Source
	// err is a poison failure (error record + dead letter + Term) with the object at fault.
	err    error
	object string
	probs  []float64
	info   ModelInfo
}

// transientError marks a failure worth retrying (S3 or NATS trouble, model failure).
type transientError struct {
	Op  string
	Err error
}

func (e *transientError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *transientError) Unwrap() error { return e.Err }

func (s *Service) labelKey(plate, id string) string {
	return s.cfg.LabelsPrefix + plate + "/" + id + ".json"
}
func (s *Service) errorKey(plate, id string) string {
	return s.cfg.LabelsPrefix + plate + "/" + id + ".error.json"
}

// runLabeler consumes sample-ready messages until ctx is done; then it stops pulling, finishes
// every message it holds (labels written and acknowledged) and returns.
func (s *Service) runLabeler(ctx context.Context) error {
	cons, err := s.js.Consumer(ctx, s.cfg.ReadyStream, s.cfg.LabelConsumer)
	if err != nil {
		return fmt.Errorf("label consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(max(2*s.cfg.MaxBatch, 2*s.cfg.FetchWorkers)))
	if err != nil {
		return fmt.Errorf("label consumer: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	opCtx := context.WithoutCancel(ctx)

	fetchCh := make(chan *inflight, s.cfg.FetchWorkers)
	batchCh := make(chan *job, s.cfg.MaxBatch*2)
	// Unbuffered: while the model is busy the batcher keeps its due batch growing up to MaxBatch,
	// and hands it over the moment the model is free (no I/O between batches).
	inferCh := make(chan []*job)
	writeCh := make(chan *job, s.cfg.MaxBatch*2)

	var fetchWG, writeWG sync.WaitGroup
	for i := 0; i < s.cfg.FetchWorkers; i++ {
		fetchWG.Add(1)
		go func() {
			defer fetchWG.Done()
			for fl := range fetchCh {
				s.m.queueDepth.WithLabelValues("fetch").Dec()
				j, err := s.fetch(opCtx, fl)
				switch {
				case err != nil:
					s.transient(opCtx, fl, err)
				case j.err != nil:
					s.m.queueDepth.WithLabelValues("write").Inc()
					writeCh <- j
				default:
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
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				break
			}
			s.log.Warn("label consumer", "err", err)
			time.Sleep(50 * time.Millisecond) // e.g. missed heartbeats while NATS is away
			continue
		}
		fl := &inflight{msg: msg, start: time.Now()}
		if err := json.Unmarshal(msg.Data(), &fl.ready); err != nil || fl.ready.ID == "" || fl.ready.Plate == "" {
			s.m.errors.WithLabelValues("event").Inc()
			s.log.Error("bad sample-ready message", "subject", msg.Subject(), "err", err)
			s.deadLetter(opCtx, "", "", "ready", fmt.Sprintf("bad sample-ready message: %v", err), "", msg.Data())
			_ = msg.TermWithReason("bad sample-ready message")
			continue
		}
		s.inflight.add(fl)
		s.m.queueDepth.WithLabelValues("fetch").Inc()
		fetchCh <- fl
	}
	close(fetchCh)
	<-inferDone
	close(writeCh)
	writeWG.Wait()
	return nil
}

// fetch gets and decodes the four channels. A returned error is transient (retry); poison input
// comes back as j.err.
func (s *Service) fetch(ctx context.Context, fl *inflight) (*job, error) {
	t0 := time.Now()
	defer func() { s.m.fetchSec.Observe(time.Since(t0).Seconds()) }()
	r := fl.ready
	j := &job{fl: fl, img: pipeline.Image4{ID: r.ID}, sources: make([]labels.Source, 4)}
	for c := range 4 {
		o := r.Objects[c]
		name := o.Key
		data, err := s.getWithRetry(ctx, o.Key)
		if err != nil {
			var oe *objstore.Error
			if errors.As(err, &oe) && (oe.NotFound || oe.TooLarge) {
				kind := pipeline.KindMissingChannel
				reason := fmt.Sprintf("sample %s: %s channel object %s does not exist", r.ID, pipeline.Channel(c), o.Key)
				if oe.TooLarge {
					kind = pipeline.KindTooLarge
					reason = fmt.Sprintf("sample %s: %s channel object %s is larger than %d bytes", r.ID, pipeline.Channel(c), o.Key, s.cfg.MaxObjectBytes)
				}
				j.err = &pipeline.InputError{File: name, Kind: kind, Reason: reason, Err: err}
				j.object = o.Key
				return j, nil
			}
			return nil, &transientError{"get " + o.Key, err}
		}
		p, err := pipeline.DecodeChannel(data, name, pipeline.Channel(c), s.cfg.Decode)
		if err != nil {
			if pipeline.KindOf(err) == "" {
				return nil, &transientError{"decode " + o.Key, err}
			}
			j.err, j.object = err, o.Key
			return j, nil
		}
		if c == 0 {
			j.img.W, j.img.H = p.W, p.H
		} else if p.W != j.img.W || p.H != j.img.H {
			j.err = &pipeline.InputError{File: name, Kind: pipeline.KindSizeMismatch,
				Reason: fmt.Sprintf("sample %s: %s channel is %dx%d but red is %dx%d", r.ID, pipeline.Channel(c), p.W, p.H, j.img.W, j.img.H)}
			j.object = o.Key
			return j, nil
		}
		j.img.Planes[c] = p
		j.sources[c] = labels.SourceOf(pipeline.Channel(c), baseName(o.Key), data)
	}
	return j, nil
}

func baseName(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '/' {
			return key[i+1:]
		}
	}
	return key
}

// getWithRetry retries transient GET failures a few times in place (the S3 client retries too);
// not-found and too-large are returned at once.
func (s *Service) getWithRetry(ctx context.Context, key string) ([]byte, error) {
	var err error
	d := 20 * time.Millisecond
	for attempt := 0; attempt < 4; attempt++ {
		var data []byte
		data, err = s.store.Get(ctx, key, s.cfg.MaxObjectBytes)
		if err == nil {
			return data, nil
		}
		var oe *objstore.Error
		if errors.As(err, &oe) && (oe.NotFound || oe.TooLarge) {
			return nil, err
		}
		s.m.errors.WithLabelValues("s3").Inc()
		time.Sleep(d)
		d *= 2
	}
	return nil, err
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
// between batches) and hands the results to the writers.
func (s *Service) infer(ctx context.Context, batch []*job, writeCh chan<- *job) {
	m := s.model.acquire()
	if m == nil {
		for _, j := range batch {
			s.transient(ctx, j.fl, &transientError{"infer", errors.New("no model loaded")})
		}
		return
	}
	imgs := make([]pipeline.Image4, len(batch))
	for i, j := range batch {
		imgs[i] = j.img
	}
	s.m.batchSize.Observe(float64(len(batch)))
	t0 := time.Now()
	probs, err := m.pred.Predict(ctx, imgs)
	s.m.computeSec.Observe(time.Since(t0).Seconds())
	info := m.info
	m.release()
	if err == nil && len(probs) != len(batch) {
		err = fmt.Errorf("model returned %d results for %d samples", len(probs), len(batch))
	}
	if err != nil {
		s.m.errors.WithLabelValues(string(labels.KindInference)).Inc()
		for _, j := range batch {
			s.transient(ctx, j.fl, &transientError{"infer", err})
		}
		return
	}
	for i, j := range batch {
		j.probs, j.info = probs[i], info
		j.img = pipeline.Image4{} // let the pixels go before the write
		s.m.queueDepth.WithLabelValues("write").Inc()
		writeCh <- j
	}
}

// transient hands a message back for a later retry, or dead-letters it at the last delivery.
func (s *Service) transient(ctx context.Context, fl *inflight, err error) {
	n := uint64(1)
	if md, e := fl.msg.Metadata(); e == nil {
		n = md.NumDelivered
	}
	if n >= uint64(s.cfg.MaxDeliver) {
		s.fail(ctx, &job{fl: fl, err: err})
		return
	}
	s.inflight.remove(fl)
	s.m.redeliveries.Inc()
	s.log.Warn("sample retry later", "plate", fl.ready.Plate, "sample", fl.ready.ID, "deliveries", n, "err", err)
	_ = fl.msg.NakWithDelay(s.backoff(n))
}

// write puts the label (unless an identical one is there), publishes the label event, bumps the
// plate's CSV generation and acknowledges.
func (s *Service) write(ctx context.Context, j *job) {
	if j.err != nil {
		s.fail(ctx, j)
		return
	}
	t0 := time.Now()
	r := j.fl.ready
	label, err := labels.NewLabel(r.ID, j.sources, j.info.ModelInfo, j.info.Thresholds, j.probs)
	if err != nil {
		s.m.errors.WithLabelValues(string(labels.KindInference)).Inc()
		s.fail(ctx, &job{fl: j.fl, err: err})
		return
	}
	b, err := labels.MarshalLabel(label)
	if err != nil {
		s.fail(ctx, &job{fl: j.fl, err: err})
		return
	}
	key := s.labelKey(r.Plate, r.ID)
	marker := label.Model.ManifestDigest + "/" + r.Content
	// The sample's KV entry says whether this digest already labeled this content (fast path,
	// no S3 round trip). When it cannot say for sure (a redelivery: maybe a crash between the
	// PUT and the KV update; a ready message whose content is not the entry's), the existing
	// label object decides.
	rec, _ := s.sampleState(ctx, r.Plate, r.ID)
	n := uint64(1)
	if md, err := j.fl.msg.Metadata(); err == nil {
		n = md.NumDelivered
	}
	unchanged := rec != nil && rec.Labeled == marker
	sure := unchanged || (rec != nil && n == 1 && rec.complete() && rec.contentHash() == r.Content)
	if !sure {
		if old, err := s.store.Get(ctx, key, 8<<20); err == nil {
			if bytes.Equal(old, b) {
				unchanged = true
			} else if ol, err := labels.ParseLabel(old); err == nil && ol.Model.ManifestDigest == label.Model.ManifestDigest &&
				slices.Equal(ol.Sources, label.Sources) {
				unchanged = true
			}
		} else if oe := (*objstore.Error)(nil); !errors.As(err, &oe) || !oe.NotFound {
			s.m.errors.WithLabelValues("s3").Inc()
			s.transient(ctx, j.fl, &transientError{"get " + key, err})
			return
		}
	}
	if unchanged {
		s.m.unchanged.Inc()
	} else {
		if err := s.store.Put(ctx, key, b, "application/json"); err != nil {
			s.m.errors.WithLabelValues("s3").Inc()
			s.transient(ctx, j.fl, &transientError{"put " + key, err})
			return
		}
		s.m.labeled.Inc()
		if rec == nil || rec.Failed || rec.Reported {
			// An error record may be left from an earlier failure of this sample.
			if err := s.store.Delete(ctx, s.errorKey(r.Plate, r.ID)); err != nil {
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
		s.transient(ctx, j.fl, &transientError{"plate generation", err})
		return
	}
	s.markSample(ctx, r.Plate, r.ID, r.Content, func(rec *sampleRec) { rec.Labeled, rec.Failed = marker, false })
	s.inflight.remove(j.fl)
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := j.fl.msg.DoubleAck(actx); err != nil {
		s.log.Warn("ack failed (the sample will be redelivered and found labeled)", "plate", r.Plate, "sample", r.ID, "err", err)
	}
	cancel()
	s.m.writeSec.Observe(time.Since(t0).Seconds())
	s.log.Debug("labeled", "plate", r.Plate, "sample", r.ID, "predicted", label.PredictedIDs(), "unchanged", unchanged,
		"latency", time.Since(j.fl.start))
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

// fail writes the error record next to where the label would be, dead-letters the sample and
// terminates the message (no redelivery).
func (s *Service) fail(ctx context.Context, j *job) {
	r := j.fl.ready
	var infoPtr *labels.ModelInfo
	if info, _, ok := s.model.info(); ok {
		infoPtr = &info.ModelInfo
	}
	rec := labels.NewErrorRecord(r.ID, j.err, infoPtr)
	if j.object != "" {
		rec.Object, rec.File = j.object, ""
	}
	var te *transientError
	if errors.As(j.err, &te) {
		rec.Kind = "retries_exhausted"
		rec.Reason = j.err.Error()
	}
	s.m.errors.WithLabelValues(rec.Kind).Inc()
	s.log.Warn("sample failed", "plate", r.Plate, "sample", r.ID, "kind", rec.Kind, "object", rec.Object, "reason", rec.Reason)
	b, err := labels.MarshalError(rec)
	if err == nil {
		if err := s.store.Put(ctx, s.errorKey(r.Plate, r.ID), b, "application/json"); err != nil {
			s.m.errors.WithLabelValues("s3").Inc()
			n := uint64(1)
			if md, e := j.fl.msg.Metadata(); e == nil {
				n = md.NumDelivered
			}
			if n < uint64(s.cfg.MaxDeliver) {
				s.inflight.remove(j.fl)
				s.m.redeliveries.Inc()
				_ = j.fl.msg.NakWithDelay(s.backoff(n))
				return
			}
		}
	}
	s.markSample(ctx, r.Plate, r.ID, r.Content, func(sr *sampleRec) { sr.Failed = true })
	s.deadLetter(ctx, r.Plate, r.ID, rec.Kind, rec.Reason, rec.Object, j.fl.msg.Data())
	s.inflight.remove(j.fl)
	_ = j.fl.msg.TermWithReason(rec.Kind)
}

// heartbeat tells the server every in-flight message is still being worked on (long batches,
// slow S3), so AckWait does not redeliver it to another replica.
func (s *Service) heartbeat(ctx context.Context) {
	t := time.NewTicker(max(s.cfg.AckWait/3, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, f := range s.inflight.snapshot() {
				_ = f.msg.InProgress()
			}
		}
	}
}
