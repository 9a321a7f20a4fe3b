// Package bridge is the AWS S3 -> NATS bridge (`hpa bridge`): S3 event notifications that AWS
// delivers to an SQS queue (directly, wrapped in an SNS notification, or as EventBridge events)
// are long-polled and published, one record at a time, to the events stream with a
// deduplication id (bus.ObjectEvent.DedupID: bucket, key, version or ETag, sequencer).
//
// Delivery is at least once end to end: an SQS message is deleted only after JetStream
// acknowledged every record of it; while a batch is slow its visibility is extended; while NATS
// is unreachable nothing is deleted and receiving backs off. Duplicates (SQS redeliveries, a
// crash between the PubAcks and the delete) are absorbed by JetStream's deduplication window and
// by the consumer's per-sample state. A message that cannot be parsed is recorded on the
// dead-letter stream (bus.DeadLetter, kind "event") and left in the queue, so SQS's own redrive
// policy moves it to the queue's dead-letter queue; it is never deleted.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
)

// SQS is the part of the SQS API the bridge calls (*sqs.Client implements it).
type SQS interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// Options configure the bridge. QueueURL, SQS and NC are required.
type Options struct {
	QueueURL string
	SQS      SQS
	NC       *nats.Conn
	// Topology names the events stream (created when missing) and the dead-letter subject.
	Topology bus.Topology
	// SubjectPrefix: records of a bucket go to <prefix>.<bucket> (default bus.EventsSubjectPrefix).
	SubjectPrefix string
	// Pollers are concurrent receive loops (default 4).
	Pollers int
	// WaitTime is the long-poll wait (default 20s, SQS's maximum).
	WaitTime time.Duration
	// Visibility is the visibility timeout the bridge keeps extending while it works on a batch
	// (default 30s).
	Visibility time.Duration
	// PublishTimeout bounds the wait for a batch's acknowledgements (default 10s).
	PublishTimeout time.Duration
	// MaxBackoff caps the wait between attempts while NATS or SQS fail (default 30s).
	MaxBackoff time.Duration
	// RetryDelay is how long a message whose records could not be published stays invisible
	// before SQS delivers it again (default 1s), doubled for each earlier receive and capped at
	// Visibility: the message comes back soon, not after the full visibility timeout. Like
	// benthos's aws_sqs reset_visibility, but with a backoff.
	RetryDelay time.Duration
	Logger     *slog.Logger
	// Metrics, when set, counts (NewMetrics); nil: no metrics.
	Metrics *Metrics
}

func (o *Options) fill() error {
	if o.QueueURL == "" {
		return errors.New("bridge: the SQS queue URL is required (bridge.sqs_queue_url, --sqs-queue-url)")
	}
	if o.SQS == nil || o.NC == nil {
		return errors.New("bridge: an SQS client and a NATS connection are required")
	}
	o.Topology.Fill()
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = bus.EventsSubjectPrefix
	}
	if o.Pollers <= 0 {
		o.Pollers = 4
	}
	if o.WaitTime <= 0 {
		o.WaitTime = 20 * time.Second
	}
	if o.Visibility <= 0 {
		o.Visibility = 30 * time.Second
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 10 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	return nil
}

// Bridge moves S3 notifications from one SQS queue to JetStream.
type Bridge struct {
	o  Options
	js jetstream.JetStream
	m  *Metrics

	mu      sync.Mutex
	sqsOK   bool
	lastErr error
}

// New checks o and sets up the events and dead-letter streams.
func New(ctx context.Context, o Options) (*Bridge, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(o.NC)
	if err != nil {
		return nil, fmt.Errorf("bridge: jetstream: %w", err)
	}
	if _, err := bus.EnsureEventsStream(ctx, js, bus.EventsStreamConfig{Name: o.Topology.EventsStream,
		Subjects: o.Topology.EventsSubjects, MustCapture: o.SubjectPrefix + ".>"}); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	if err := bus.EnsureDLQStream(ctx, js, o.Topology); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	return &Bridge{o: o, js: js, m: o.Metrics}, nil
}

// Ready reports whether the bridge can move messages: NATS connected and the last SQS call
// succeeded.
func (b *Bridge) Ready() error {
	if !b.o.NC.IsConnected() {
		return errors.New("NATS not connected")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.sqsOK {
		if b.lastErr != nil {
			return fmt.Errorf("SQS: %w", b.lastErr)
		}
		return errors.New("SQS not polled yet")
	}
	return nil
}

func (b *Bridge) sqsResult(err error) {
	b.mu.Lock()
	b.sqsOK, b.lastErr = err == nil, err
	b.mu.Unlock()
}

// Run polls until ctx is done, then finishes the batches it holds (published, deleted) and
// returns nil. Pollers share the queue; SQS hands each message to one of them.
func (b *Bridge) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := range b.o.Pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.poll(ctx, i)
		}()
	}
	wg.Wait()
	return nil
}

// poll is one receive loop. A received batch is handled (published, then deleted) while the loop
// receives the next one: at most two batches per loop are in hand.
func (b *Bridge) poll(ctx context.Context, id int) {
	o := b.o
	backoff := time.Duration(0)
	sleep := func() bool {
		backoff = min(max(2*backoff, 100*time.Millisecond), o.MaxBackoff)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
			return true
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait() // graceful drain: the batches in hand are finished
	inHand := make(chan struct{}, 2)
	var failed atomic.Bool
	for ctx.Err() == nil {
		if failed.Swap(false) {
			if !sleep() {
				return
			}
		}
		if !o.NC.IsConnected() {
			// Receiving now would only make messages invisible that cannot be published.
			b.m.waits.WithLabelValues("nats").Inc()
			o.Logger.Debug("NATS not connected; waiting", "poller", id)
			if !sleep() {
				return
			}
			continue
		}
		select {
		case inHand <- struct{}{}:
		case <-ctx.Done():
			return
		}
		out, err := o.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(o.QueueURL), MaxNumberOfMessages: 10,
			WaitTimeSeconds:   int32(o.WaitTime / time.Second),
			VisibilityTimeout: int32(o.Visibility / time.Second),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameSentTimestamp,
				types.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if err != nil || len(out.Messages) == 0 {
			<-inHand
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.sqsResult(err)
			b.m.errors.WithLabelValues("sqs").Inc()
			o.Logger.Warn("SQS receive failed", "queue", o.QueueURL, "err", err, "poller", id)
			if !sleep() {
				return
			}
			continue
		}
		b.sqsResult(nil)
		if len(out.Messages) == 0 {
			continue
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-inHand }()
			// The batch is finished even when ctx ends meanwhile (graceful drain).
			if !b.handle(context.WithoutCancel(ctx), out.Messages) {
				failed.Store(true)
			}
		}()
	}
}

// pending is one SQS message being published.
type pending struct {
	msg    types.Message
	futs   []jetstream.PubAckFuture
	msgs   []*nats.Msg
	poison bool
}

// handle publishes the records of a batch of messages and deletes the messages whose records are
// all acknowledged. It reports whether every message was handled (deleted or poison).
func (b *Bridge) handle(ctx context.Context, msgs []types.Message) bool {
	o := b.o
	b.m.received.Add(float64(len(msgs)))
	now := time.Now()
	for _, m := range msgs {
		if ts, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
			b.m.lag.Set(now.Sub(time.UnixMilli(ts)).Seconds())
		}
	}
	// Keep the batch invisible while it is worked on.
	stop := b.keepInvisible(ctx, msgs)
	defer stop()
	ps := make([]*pending, 0, len(msgs))
	for _, m := range msgs {
		p := &pending{msg: m}
		ps = append(ps, p)
		evs, err := bus.ParseS3Events([]byte(aws.ToString(m.Body)))
		if err != nil {
			p.poison = true
			b.poison(ctx, m, err)
			continue
		}
		for _, ev := range evs {
			data, err := bus.EncodeS3Events(bus.S3EventOptions{Region: ev.Region, EventSource: ev.Source}, ev)
			if err != nil {
				p.poison = true
				b.poison(ctx, m, err)
				break
			}
			nm := nats.NewMsg(bus.EventSubject(o.SubjectPrefix, ev.Bucket))
			nm.Data = data
			nm.Header.Set(jetstream.MsgIDHeader, ev.DedupID())
			p.msgs = append(p.msgs, nm)
		}
	}
	// Publish every record asynchronously, then collect the acknowledgements.
	for _, p := range ps {
		if p.poison {
			continue
		}
		for _, nm := range p.msgs {
			f, err := b.js.PublishMsgAsync(nm)
			if err != nil {
				f = failedFuture{nm, err}
			}
			p.futs = append(p.futs, f)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, o.PublishTimeout)
	defer wcancel()
	var del []types.DeleteMessageBatchRequestEntry
	var retry []types.Message
	all := true
	for i, p := range ps {
		if p.poison {
			continue
		}
		ok := true
		for _, f := range p.futs {
			select {
			case ack := <-f.Ok():
				b.m.published.Inc()
				if ack.Duplicate {
					b.m.duplicates.Inc()
				}
			case err := <-f.Err():
				ok = false
				b.m.errors.WithLabelValues("publish").Inc()
				o.Logger.Warn("record not published; the message stays in the queue", "message", aws.ToString(p.msg.MessageId), "err", err)
			case <-wctx.Done():
				ok = false
				b.m.errors.WithLabelValues("publish").Inc()
				o.Logger.Warn("no acknowledgement in time; the message stays in the queue", "message", aws.ToString(p.msg.MessageId))
			}
			if !ok {
				break
			}
		}
		if ok {
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: p.msg.ReceiptHandle})
		} else {
			retry = append(retry, p.msg)
			all = false
		}
	}
	stop() // before shortening: an extension must not undo it
	if len(retry) > 0 {
		b.retrySoon(ctx, retry)
	}
	if len(del) > 0 {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := o.SQS.DeleteMessageBatch(dctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(o.QueueURL), Entries: del})
		cancel()
		switch {
		case err != nil:
			// Not deleted: redelivered after the visibility timeout and published again (a
			// duplicate JetStream drops).
			b.m.errors.WithLabelValues("sqs").Inc()
			o.Logger.Warn("SQS delete failed; the messages will be delivered again", "err", err)
			all = false
		default:
			b.m.deleted.Add(float64(len(out.Successful)))
			for _, f := range out.Failed {
				b.m.errors.WithLabelValues("sqs").Inc()
				o.Logger.Warn("SQS delete failed for a message", "code", aws.ToString(f.Code), "reason", aws.ToString(f.Message))
				all = false
			}
		}
	}
	return all
}

// poison records an unparsable message on the dead-letter stream. The message is not deleted:
// the queue's redrive policy moves it to the SQS dead-letter queue after its receive limit.
func (b *Bridge) poison(ctx context.Context, m types.Message, cause error) {
	b.m.poison.Inc()
	id := aws.ToString(m.MessageId)
	b.o.Logger.Warn("unparsable SQS message (left for the queue's redrive policy)", "message", id,
		"receives", m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)], "err", cause)
	d := bus.NewDeadLetter("", "", "event", fmt.Sprintf("SQS message %s: %v", id, cause), "", []byte(aws.ToString(m.Body)))
	msg := d.Msg(b.o.Topology)
	msg.Header.Set(jetstream.MsgIDHeader, "bridge-poison:"+id) // once per message, however often received
	pctx, cancel := context.WithTimeout(ctx, b.o.PublishTimeout)
	defer cancel()
	if _, err := b.js.PublishMsg(pctx, msg); err != nil {
		b.m.errors.WithLabelValues("publish").Inc()
		b.o.Logger.Error("dead-letter record not published", "message", id, "err", err)
	}
}

// retrySoon shortens the visibility of messages whose records were not published to RetryDelay
// (doubled per earlier receive, capped at Visibility), so SQS delivers them again soon. When the
// call fails they come back after the visibility timeout instead.
func (b *Bridge) retrySoon(ctx context.Context, msgs []types.Message) {
	if err := b.setVisibility(ctx, msgs, b.retryDelay); err != nil {
		b.m.errors.WithLabelValues("sqs").Inc()
		b.o.Logger.Warn("could not shorten the visibility of unpublished messages; they return after the visibility timeout", "err", err)
		return
	}
	b.m.retries.Add(float64(len(msgs)))
}

// retryDelay is RetryDelay doubled for each earlier receive of m, capped at Visibility, in whole
// seconds (SQS's unit), at least one.
func (b *Bridge) retryDelay(m types.Message) time.Duration {
	d := b.o.RetryDelay
	if n, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil {
		for i := 1; i < n && d < b.o.Visibility; i++ {
			d *= 2
		}
	}
	d = min(d, b.o.Visibility)
	return max(d.Truncate(time.Second), time.Second)
}

// setVisibility sets the visibility timeout of each message to d(message), in one batch call; a
// message SQS did not change makes it an error.
func (b *Bridge) setVisibility(ctx context.Context, msgs []types.Message, d func(types.Message) time.Duration) error {
	entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, 0, len(msgs))
	for i, m := range msgs {
		entries = append(entries, types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)),
			ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: int32(d(m) / time.Second)})
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := b.o.SQS.ChangeMessageVisibilityBatch(cctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(b.o.QueueURL), Entries: entries})
	if err == nil && len(out.Failed) > 0 {
		err = fmt.Errorf("%d of %d entries failed: %s", len(out.Failed), len(entries), aws.ToString(out.Failed[0].Message))
	}
	return err
}

// keepInvisible extends the visibility of msgs every Visibility/2 until stop is called (stop may
// be called more than once).
func (b *Bridge) keepInvisible(ctx context.Context, msgs []types.Message) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(b.o.Visibility / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			err := b.setVisibility(ctx, msgs, func(types.Message) time.Duration { return b.o.Visibility })
			b.m.extensions.Inc()
			if err != nil {
				b.m.errors.WithLabelValues("sqs").Inc()
				b.o.Logger.Warn("visibility extension failed", "err", err)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// failedFuture is the future of a publish that could not even be queued.
type failedFuture struct {
	msg *nats.Msg
	err error
}

func (f failedFuture) Ok() <-chan *jetstream.PubAck { return nil }
func (f failedFuture) Err() <-chan error {
	c := make(chan error, 1)
	c <- f.err
	return c
}
func (f failedFuture) Msg() *nats.Msg { return f.msg }
