package inference

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/serve"
)

// sampleRec is the KV value of a sample: which channels have been seen.
type sampleRec struct {
	Plate     string            `json:"plate"`
	ID        string            `json:"id"`
	Channels  [4]*bus.ObjectRef `json:"channels"`
	FirstSeen int64             `json:"first_seen"`         // unix nanoseconds of the first channel event
	Reported  bool              `json:"reported,omitempty"` // reported incomplete (error record written)
	Failed    bool              `json:"failed,omitempty"`   // an error record was written for this content
	// Labeled is "<model digest>/<content hash>" of the last label written, so replays of old
	// events do not publish the sample again.
	Labeled string `json:"labeled,omitempty"`
}

func (r *sampleRec) complete() bool {
	for _, c := range r.Channels {
		if c == nil {
			return false
		}
	}
	return true
}

func (r *sampleRec) missing() []string {
	var m []string
	for c, o := range r.Channels {
		if o == nil {
			m = append(m, pipeline.ChannelNames[c])
		}
	}
	return m
}

// contentHash identifies the four objects (keys, ETags, sizes) of a complete sample.
func (r *sampleRec) contentHash() string {
	h := sha256.New()
	for _, c := range r.Channels {
		if c != nil {
			fmt.Fprintf(h, "%s\x00%s\x00%d\n", c.Key, c.ETag, c.Size)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// eventError is a transient failure while handling an event (KV or publish): retried.
type eventError struct {
	Op  string
	Err error
}

func (e *eventError) Error() string { return "event " + e.Op + ": " + e.Err.Error() }
func (e *eventError) Unwrap() error { return e.Err }

// currentDigest is the serving model digest, "v" before any model is loaded.
func (s *Service) currentDigest() string {
	if info, _, ok := s.model.info(); ok {
		return info.ManifestDigest
	}
	return "v"
}

// route says where a complete sample goes: the live ready queue, or (replayed events) the replay
// ready queue; force (a replay's --force) publishes a sample its current label already covers.
type route struct {
	replay bool
	force  string
}

// runAssembler consumes live S3 events until ctx is done, then drains.
func (s *Service) runAssembler(ctx context.Context) error {
	return s.assemble(ctx, s.cfg.EventsStream, s.cfg.EventsConsumer, false)
}

// runReplayAssembler consumes replayed S3 events (producers/replay) the same way; complete samples
// go to the replay ready queue, which the labeler serves after live work.
func (s *Service) runReplayAssembler(ctx context.Context) error {
	if s.replayOff.Load() {
		<-ctx.Done()
		return nil
	}
	return s.assemble(ctx, s.cfg.ReplayStream, s.cfg.ReplayEventsConsumer, true)
}

// assemble consumes the events of one durable consumer until ctx is done, then drains. It returns
// an error when its consumer is gone.
func (s *Service) assemble(ctx context.Context, stream, consumer string, replay bool) error {
	cons, err := s.consumer(ctx, stream, consumer)
	if serve.StoppedWhileStarting(ctx, err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("events consumer %s: %w", consumer, err)
	}
	// Events of one sample go to one worker (by a hash of the sample key), so a replica never
	// races itself on a sample's KV entry: its optimistic writes succeed the first time.
	work := make([]chan parsedEvent, s.cfg.EventWorkers)
	var wg sync.WaitGroup
	opCtx := context.WithoutCancel(ctx)
	for i := range work {
		work[i] = make(chan parsedEvent, 64)
		wg.Add(1)
		go func(in <-chan parsedEvent) {
			defer wg.Done()
			for pe := range in {
				s.handleEvent(opCtx, pe)
			}
		}(work[i])
	}
	closeAll := func() {
		for _, c := range work {
			close(c)
		}
		wg.Wait()
	}
	pull := max(s.cfg.EventWorkers*32, 512)
	if replay {
		// Replayed events wait for the labeler (waitReplayBacklog): pull few at a time, so the
		// ones pulled and waiting do not outlive AckWait.
		pull = max(s.cfg.MaxBatch, 2)
	}
	it, err := cons.Messages(append(pullOptions(), jetstream.PullMaxMessages(pull))...)
	if err != nil {
		closeAll()
		return fmt.Errorf("events consumer: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	// Parsing and routing run on a few goroutines so the pull loop only moves messages.
	raw := make(chan jetstream.Msg, 256)
	var pwg sync.WaitGroup
	for range max(2, s.cfg.EventWorkers/8) {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for msg := range raw {
				pe := parsedEvent{msg: msg, rt: route{replay: replay}}
				if replay && msg.Headers() != nil {
					pe.rt.force = msg.Headers().Get(bus.HeaderReplayForce)
				}
				pe.evs, pe.err = bus.ParseS3Events(msg.Data())
				h := fnv.New32a()
				for _, ev := range pe.evs {
					if sk, ok, _ := s.keys.Map(ev.Key); ok {
						_, _ = h.Write([]byte(kvKey(sk.Plate, sk.ID)))
						break
					}
				}
				work[h.Sum32()%uint32(len(work))] <- pe
			}
		}()
	}
	var fatal error
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				break
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, jetstream.ErrConsumerNotFound) {
				fatal = fmt.Errorf("events consumer %s: %w", consumer, err)
				break
			}
			s.log.Warn("events consumer", "err", err)
			time.Sleep(50 * time.Millisecond) // e.g. missed heartbeats while NATS is away
			continue
		}
		if replay {
			s.waitReplayBacklog(ctx, msg)
		}
		raw <- msg
	}
	it.Stop()
	close(raw)
	pwg.Wait()
	closeAll()
	return fatal
}

// waitReplayBacklog holds the replay assembler while the replay ready queue has more than
// replayBacklog(MaxBatch) samples waiting or in flight: replayed samples are assembled only as
// fast as the labeler takes them, so a backfill of any size costs live work no more than a few
// batches of KV updates (the live assembler never waits). msg, held meanwhile, is kept alive.
func (s *Service) waitReplayBacklog(ctx context.Context, msg jetstream.Msg) {
	limit := uint64(4 * max(s.cfg.MaxBatch, 1))
	last := time.Now()
	for ctx.Err() == nil {
		cons, err := s.js.Consumer(ctx, s.cfg.ReplayReadyStream, s.cfg.ReplayLabelConsumer)
		if err != nil {
			return
		}
		info := cons.CachedInfo()
		if fresh, err := cons.Info(ctx); err == nil {
			info = fresh
		}
		if info == nil || info.NumPending+uint64(info.NumAckPending) <= limit {
			return
		}
		if time.Since(last) > s.cfg.AckWait/3 {
			_ = msg.InProgress()
			last = time.Now()
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// parsedEvent is an event message with its parsed records.
type parsedEvent struct {
	msg jetstream.Msg
	evs []bus.ObjectEvent
	err error
	rt  route
}

// handleEvent applies one notification message and acknowledges it, or hands it back.
func (s *Service) handleEvent(ctx context.Context, pe parsedEvent) {
	msg, evs, err := pe.msg, pe.evs, pe.err
	if err != nil {
		s.m.events.WithLabelValues("bad").Inc()
		s.m.errors.WithLabelValues("event").Inc()
		s.log.Warn("unparsable S3 event", "subject", msg.Subject(), "err", err)
		s.deadLetter(ctx, "", "", "event", err.Error(), "", msg.Data())
		_ = msg.TermWithReason("unparsable S3 event")
		return
	}
	for _, ev := range evs {
		if err := s.applyEvent(ctx, ev, pe.rt); err != nil {
			var ke *bus.KeyError
			if errors.As(err, &ke) {
				s.m.events.WithLabelValues("bad").Inc()
				s.m.errors.WithLabelValues("key").Inc()
				s.log.Warn("refused object key", "bucket", ev.Bucket, "err", err)
				s.deadLetter(ctx, "", "", "key", err.Error(), ev.Key, msg.Data())
				continue
			}
			s.m.errors.WithLabelValues("nats").Inc()
			s.retryLater(msg, err)
			return
		}
	}
	_ = msg.Ack()
}

// retryLater naks msg with exponential backoff; past MaxDeliver the server stops redelivering,
// so the last attempt is dead-lettered instead.
func (s *Service) retryLater(msg jetstream.Msg, cause error) {
	n := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		n = md.NumDelivered
	}
	if n >= uint64(s.cfg.MaxDeliver) {
		s.log.Error("giving up after max deliveries", "subject", msg.Subject(), "deliveries", n, "err", cause)
		s.deadLetter(context.Background(), "", "", "retries", cause.Error(), "", msg.Data())
		_ = msg.TermWithReason("max deliveries")
		return
	}
	s.m.redeliveries.Inc()
	s.log.Warn("transient failure, redelivering", "subject", msg.Subject(), "deliveries", n, "err", cause)
	_ = msg.NakWithDelay(s.backoff(n))
}

func (s *Service) backoff(n uint64) time.Duration {
	d := s.cfg.Backoff
	for i := uint64(1); i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// applyEvent records one object event; the event completing a sample publishes it as ready.
func (s *Service) applyEvent(ctx context.Context, ev bus.ObjectEvent, rt route) error {
	if !ev.IsCreate() || (s.cfg.Bucket != "" && ev.Bucket != s.cfg.Bucket) {
		s.m.events.WithLabelValues("ignored").Inc()
		return nil
	}
	sk, ok, err := s.keys.Map(ev.Key)
	if err != nil {
		return err
	}
	if !ok {
		s.m.events.WithLabelValues("ignored").Inc()
		return nil
	}
	ref := bus.ObjectRef{Key: ev.Key, ETag: ev.ETag, Size: ev.Size, Sequencer: ev.Sequencer}
	key := kvKey(sk.Plate, sk.ID)
	for attempt := 0; ; attempt++ {
		if attempt == 100 {
			return &eventError{"kv", fmt.Errorf("sample %s/%s: too many concurrent updates", sk.Plate, sk.ID)}
		}
		var rec sampleRec
		var rev uint64
		known := false
		if attempt == 0 {
			// Optimistic first try without a read: the revision this replica last wrote, or a
			// Create for a sample it has not seen. A stale guess only costs a failed CAS.
			rec, rev, known = s.recs.get(key)
			if !known {
				rec = sampleRec{Plate: sk.Plate, ID: sk.ID, FirstSeen: time.Now().UnixNano()}
			}
		} else {
			e, err := s.samples.Get(ctx, key)
			switch {
			case err == nil:
				rev = e.Revision()
				if json.Unmarshal(e.Value(), &rec) != nil || rec.Plate != sk.Plate || rec.ID != sk.ID {
					rec = sampleRec{}
				}
			case errors.Is(err, jetstream.ErrKeyNotFound):
			default:
				return &eventError{"kv get", err}
			}
			if rec.ID == "" {
				rec = sampleRec{Plate: sk.Plate, ID: sk.ID, FirstSeen: time.Now().UnixNano()}
			}
		}
		cur := rec.Channels[sk.Channel]
		changed := cur == nil || (cur.ETag != ref.ETag && !(ref.Sequencer != "" && cur.Sequencer != "" &&
			bus.CompareSequencer(ref.Sequencer, cur.Sequencer) < 0))
		if changed {
			rec.Channels[sk.Channel] = &ref
			b, _ := json.Marshal(&rec)
			var err error
			var nrev uint64
			if rev == 0 {
				nrev, err = s.samples.Create(ctx, key, b)
			} else {
				nrev, err = s.samples.Update(ctx, key, b, rev)
			}
			if err != nil {
				if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
					s.recs.drop(key)
					continue // another replica (or an older run) updated the sample: read again
				}
				return &eventError{"kv update", err}
			}
			s.recs.put(key, rec, nrev)
			s.m.events.WithLabelValues("channel").Inc()
		} else if known {
			// A duplicate judged on the cached entry: confirm on the stored one before relying
			// on it (the entry may have moved on, e.g. labeled or re-uploaded elsewhere).
			s.recs.drop(key)
			continue
		} else {
			s.m.events.WithLabelValues("duplicate").Inc()
		}
		if !rec.complete() {
			return nil
		}
		digest := s.currentDigest()
		content := rec.contentHash()
		if rec.Labeled == digest+"/"+content && rt.force == "" {
			return nil // already labeled by this model with these objects (a replayed event)
		}
		return s.publishReady(ctx, &rec, digest, content, rt)
	}
}

func (s *Service) publishReady(ctx context.Context, rec *sampleRec, digest, content string, rt route) error {
	rm := bus.SampleReady{Plate: rec.Plate, ID: rec.ID, Content: content}
	for c, o := range rec.Channels {
		rm.Objects[c] = *o
	}
	b, _ := json.Marshal(&rm)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	subject, id := s.cfg.ReadySubjectOf(rec.Plate), rm.MsgID(digest)
	if rt.replay {
		subject = s.cfg.ReplayReadySubjectOf(rec.Plate)
	}
	if rt.force != "" {
		id += "/force:" + rt.force
	}
	ack, err := s.js.Publish(pctx, subject, b, jetstream.WithMsgID(id))
	if err != nil {
		return &eventError{"publish ready", err}
	}
	if !ack.Duplicate {
		s.m.ready.Inc()
	}
	return nil
}

// deadLetter publishes a dead-letter entry; failures are logged (the error record, when there is
// one, is already in S3).
func (s *Service) deadLetter(ctx context.Context, plate, id, kind, reason, object string, original []byte) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := bus.PublishDeadLetter(pctx, s.js, s.cfg.Topology, bus.NewDeadLetter(plate, id, kind, reason, object, original)); err != nil {
		s.m.errors.WithLabelValues("nats").Inc()
		s.log.Error("dead-letter publish failed", "plate", plate, "sample", id, "err", err)
	}
}

// recCache remembers the sample entries this replica wrote last (value and revision), so the next
// channel event of a sample updates it without reading it first. Bounded: cleared when full.
type recCache struct {
	mu sync.Mutex
	m  map[string]cachedRec
}

type cachedRec struct {
	rec sampleRec
	rev uint64
}

const recCacheMax = 1 << 17

func (c *recCache) get(key string) (sampleRec, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	return e.rec, e.rev, ok
}

func (c *recCache) put(key string, rec sampleRec, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= recCacheMax {
		c.m = make(map[string]cachedRec)
	}
	c.m[key] = cachedRec{rec, rev}
}

func (c *recCache) drop(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}
