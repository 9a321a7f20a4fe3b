package inference

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labeling"
)

// readyInput is the JetStream input of the labeler: sample-ready messages of the durable consumer
// on the ready stream. It alone touches the messages: it keeps the ones it handed out alive with
// InProgress heartbeats and turns each outcome reported to its AckFunc into the transport's
// answer: nil -> acknowledge (double ack); a recorded failure (*labeling.Failed) -> dead-letter
// and terminate; anything else -> redeliver after a backoff (the processors turn a transient
// failure on the final delivery into a recorded one).
type readyInput struct {
	s        *Service
	it       jetstream.MessagesContext
	consumer string

	mu       sync.Mutex
	inflight map[*inflight]struct{}
}

// inflight is one sample-ready message handed out and not yet answered.
type inflight struct {
	msg   jetstream.Msg
	ready bus.SampleReady
	final bool
	n     uint64 // deliveries
}

func newReadyInput(s *Service, it jetstream.MessagesContext, consumer string) *readyInput {
	return &readyInput{s: s, it: it, consumer: consumer, inflight: map[*inflight]struct{}{}}
}

// Read implements labeling.Input. It returns ErrEndOfInput once the iterator was drained (the
// service stops) and an error when the consumer is gone.
func (in *readyInput) Read(ctx context.Context) (labeling.Message, labeling.AckFunc, error) {
	s := in.s
	for {
		msg, err := in.it.Next()
		if err != nil {
			switch {
			case errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil:
				return labeling.Message{}, nil, labeling.ErrEndOfInput
			case errors.Is(err, jetstream.ErrMsgIteratorClosed), errors.Is(err, jetstream.ErrConsumerDeleted),
				errors.Is(err, jetstream.ErrConsumerNotFound):
				return labeling.Message{}, nil, fmt.Errorf("label consumer %s: %w", in.consumer, err)
			}
			s.log.Warn("label consumer", "err", err)
			time.Sleep(50 * time.Millisecond) // e.g. missed heartbeats while NATS is away
			continue
		}
		fl := &inflight{msg: msg, n: 1}
		if err := json.Unmarshal(msg.Data(), &fl.ready); err != nil || fl.ready.ID == "" || fl.ready.Plate == "" {
			s.m.errors.WithLabelValues("event").Inc()
			s.log.Error("bad sample-ready message", "subject", msg.Subject(), "err", err)
			s.deadLetter(context.WithoutCancel(ctx), "", "", "ready", fmt.Sprintf("bad sample-ready message: %v", err), "", msg.Data())
			_ = msg.TermWithReason("bad sample-ready message")
			continue
		}
		if md, err := msg.Metadata(); err == nil {
			fl.n = md.NumDelivered
		}
		fl.final = fl.n >= uint64(s.cfg.MaxDeliver)
		in.mu.Lock()
		in.inflight[fl] = struct{}{}
		in.mu.Unlock()
		r := fl.ready
		m := labeling.Message{Sample: labeling.Sample{Plate: r.Plate, ID: r.ID}, Content: r.Content, Attempt: int(fl.n), Final: fl.final}
		for c, o := range r.Objects {
			m.Sample.Keys[c] = o.Key
		}
		return m, func(ctx context.Context, err error) { in.ack(ctx, fl, err) }, nil
	}
}

// ack answers one message: see readyInput.
func (in *readyInput) ack(ctx context.Context, fl *inflight, err error) {
	in.mu.Lock()
	delete(in.inflight, fl)
	in.mu.Unlock()
	s, r := in.s, fl.ready
	var failed *labeling.Failed
	switch {
	case err == nil:
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := fl.msg.DoubleAck(actx); err != nil {
			s.log.Warn("ack failed (the sample will be redelivered and found labeled)", "plate", r.Plate, "sample", r.ID, "err", err)
		}
		cancel()
	case errors.As(err, &failed):
		rec := failed.Record
		s.deadLetter(ctx, r.Plate, r.ID, rec.Kind, rec.Reason, rec.Object, fl.msg.Data())
		_ = fl.msg.TermWithReason(rec.Kind)
	case fl.final:
		// Only reached when a failure could not even be recorded on the last delivery.
		s.deadLetter(ctx, r.Plate, r.ID, labeling.KindRetriesExhausted, err.Error(), "", fl.msg.Data())
		_ = fl.msg.TermWithReason(labeling.KindRetriesExhausted)
	default:
		s.m.redeliveries.Inc()
		s.log.Warn("sample retry later", "plate", r.Plate, "sample", r.ID, "deliveries", fl.n, "err", err)
		_ = fl.msg.NakWithDelay(s.backoff(fl.n))
	}
}

// heartbeat tells the server every message handed out is still being worked on (long batches,
// slow S3), so AckWait does not redeliver it to another replica. It runs until ctx ends.
func (in *readyInput) heartbeat(ctx context.Context) {
	t := time.NewTicker(max(in.s.cfg.AckWait/3, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			in.mu.Lock()
			out := make([]*inflight, 0, len(in.inflight))
			for f := range in.inflight {
				out = append(out, f)
			}
			in.mu.Unlock()
			for _, f := range out {
				_ = f.msg.InProgress()
			}
		}
	}
}
