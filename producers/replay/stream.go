package replay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
)

// stream re-delivers the stored events of the events stream from Since (before Until) on the
// replay subject of their bucket: JetStream start-time delivery on an ordered consumer, up to the
// last event stored when the replay started.
func (r *runner) stream(ctx context.Context) (Summary, error) {
	o := r.o
	st, err := r.js.Stream(ctx, o.Topology.EventsStream)
	if err != nil {
		return Summary{}, fmt.Errorf("replay: events stream %s: %w", o.Topology.EventsStream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return Summary{}, fmt.Errorf("replay: events stream %s: %w", o.Topology.EventsStream, err)
	}
	last := info.State.LastSeq
	cc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &o.Since}
	if seq, err := strconv.ParseUint(r.cp.Pos, 10, 64); err == nil && seq > 0 {
		cc = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq + 1}
	}
	pos := r.cp.Pos
	if last == 0 || (pos != "" && mustSeq(pos) >= last) {
		return r.finishStream(ctx, pos, nil)
	}
	cons, err := st.OrderedConsumer(ctx, cc)
	if err != nil {
		return Summary{}, fmt.Errorf("replay: consumer on %s: %w", o.Topology.EventsStream, err)
	}
	r.prog = startProgress(ctx, o, nil)
	defer r.prog.stop()
	replayPrefix := strings.TrimSuffix(o.Topology.ReplaySubjects[0], ".>")
	eventsPrefixes := make([]string, 0, len(info.Config.Subjects))
	for _, s := range info.Config.Subjects {
		eventsPrefixes = append(eventsPrefixes, strings.TrimSuffix(s, ">"))
	}
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return r.finishStream(ctx, pos, fmt.Errorf("replay: read %s: %w", o.Topology.EventsStream, err))
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			seq := md.Sequence.Stream
			if !o.Until.IsZero() && !md.Timestamp.Before(o.Until) {
				return r.finishStream(ctx, pos, nil)
			}
			r.sum.Listed++
			out := nats.NewMsg(replaySubject(msg.Subject(), eventsPrefixes, replayPrefix, msg.Data()))
			out.Data = msg.Data()
			out.Header.Set(jetstream.MsgIDHeader, r.msgID("seq:"+strconv.FormatUint(seq, 10)))
			if o.Force {
				out.Header.Set(bus.HeaderReplayForce, r.cp.Run)
			}
			if err := r.publish(ctx, out, 1); err != nil {
				if errors.Is(err, errCrashed) {
					return r.sum, err
				}
				return r.finishStream(ctx, pos, err)
			}
			pos = strconv.FormatUint(seq, 10)
			r.prog.tick(r.sum, r.sum.Listed)
			if err := r.maybeCheckpoint(ctx, pos, nil); err != nil {
				return r.finishStream(ctx, pos, err)
			}
			if seq >= last {
				return r.finishStream(ctx, pos, nil)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return r.finishStream(ctx, pos, fmt.Errorf("replay: read %s: %w", o.Topology.EventsStream, err))
		}
		if ctx.Err() != nil {
			return r.finishStream(ctx, pos, ctx.Err())
		}
		if n == 0 {
			return r.finishStream(ctx, pos, nil) // nothing stored after the position
		}
	}
}

func mustSeq(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

func (r *runner) finishStream(ctx context.Context, pos string, runErr error) (Summary, error) {
	finished := runErr == nil && ctx.Err() == nil
	if err := r.checkpoint(context.WithoutCancel(ctx), pos, nil, finished); err != nil && runErr == nil {
		runErr = err
	}
	r.prog.finish(r.sum)
	return r.sum, runErr
}

// replaySubject maps an events subject (<events prefix>.<bucket>) to <replay prefix>.<bucket>;
// a subject of another shape gets the bucket of its first record.
func replaySubject(subject string, eventsPrefixes []string, replayPrefix string, data []byte) string {
	for _, p := range eventsPrefixes {
		if p != "" && strings.HasPrefix(subject, p) && len(subject) > len(p) {
			return replayPrefix + "." + subject[len(p):]
		}
	}
	if evs, err := bus.ParseS3Events(data); err == nil && len(evs) > 0 {
		return bus.EventSubject(replayPrefix, evs[0].Bucket)
	}
	return replayPrefix + "._"
}
