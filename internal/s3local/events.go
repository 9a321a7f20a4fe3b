package s3local

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/s3events"
)

// Publisher delivers one event message and returns once the bus has durably accepted it (for
// JetStream: once the PubAck came back). msgID identifies the event; a bus that deduplicates on
// it (JetStream's Nats-Msg-Id) makes repeated deliveries harmless.
type Publisher interface {
	Publish(ctx context.Context, subject string, data []byte, msgID string) error
}

// JetStreamPublisher publishes with Nats-Msg-Id and waits for the PubAck.
type JetStreamPublisher struct {
	JS jetstream.JetStream
}

// Publish implements Publisher.
func (p JetStreamPublisher) Publish(ctx context.Context, subject string, data []byte, msgID string) error {
	_, err := p.JS.Publish(ctx, subject, data, jetstream.WithMsgID(msgID))
	return err
}

// DefaultEventSubjectPrefix is the subject prefix of object events: "<prefix>.<bucket>".
const DefaultEventSubjectPrefix = "s3.events"

// DefaultDuplicateWindow is the JetStream deduplication window EnsureStream configures: a repeat
// of an event (same Nats-Msg-Id) within it is dropped. It must cover the time between a crash and
// the restart that republishes pending intents.
const DefaultDuplicateWindow = 24 * time.Hour

// StreamConfig describes the event stream EnsureStream creates.
type StreamConfig struct {
	Name            string        // stream name, e.g. "S3_EVENTS"
	SubjectPrefix   string        // events go to <SubjectPrefix>.<bucket>; default DefaultEventSubjectPrefix
	DuplicateWindow time.Duration // default DefaultDuplicateWindow
	MaxAge          time.Duration // 0 = keep forever
	Storage         jetstream.StorageType
	Replicas        int
}

// EnsureStream creates the event stream (LIMITS retention, so consumers can replay it) when it
// does not exist, and checks that an existing stream captures <SubjectPrefix>.> subjects.
func EnsureStream(ctx context.Context, js jetstream.JetStream, c StreamConfig) (jetstream.Stream, error) {
	if c.Name == "" {
		return nil, fmt.Errorf("s3local: EnsureStream: empty stream name")
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultEventSubjectPrefix
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	subject := c.SubjectPrefix + ".>"
	st, err := js.Stream(ctx, c.Name)
	if err == nil {
		info, err := st.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3local: stream %s: %w", c.Name, err)
		}
		for _, s := range info.Config.Subjects {
			if s == subject || s == ">" || s == c.SubjectPrefix+".*" {
				return st, nil
			}
		}
		return nil, fmt.Errorf("s3local: stream %s exists but does not capture %s (subjects %v)", c.Name, subject, info.Config.Subjects)
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("s3local: stream %s: %w", c.Name, err)
	}
	st, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        c.Name,
		Description: "S3 object events published by s3local",
		Subjects:    []string{subject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     c.Storage,
		Duplicates:  c.DuplicateWindow,
		MaxAge:      c.MaxAge,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("s3local: create stream %s: %w", c.Name, err)
	}
	return st, nil
}

// EventSubject is the subject events of bucket go to. Bucket names may contain '.', which adds
// subject tokens; subscribe to "<prefix>.>" to see every bucket.
func EventSubject(prefix, bucket string) string {
	if prefix == "" {
		prefix = DefaultEventSubjectPrefix
	}
	return strings.TrimSuffix(prefix, ".") + "." + bucket
}

// newIntent prepares the event of an object write (before the object becomes visible).
func (s *Server) newIntent(bucket string, m *objectMeta, eventName, reqID, sourceIP string) (*intent, error) {
	ev := s3events.ObjectEvent{
		Bucket: bucket, Key: m.Key, Size: m.Size, ETag: m.ETag, Sequencer: s.nextSequencer(),
		EventName: eventName, EventTime: m.LastModified, Region: s.opts.Region,
	}
	data, err := s3events.Encode(s3events.EncodeOptions{
		Region: s.opts.Region, PrincipalID: "s3local", SourceIP: sourceIP, RequestID: reqID,
		HostID: s.hostID, ConfigurationID: "s3local",
	}, ev)
	if err != nil {
		return nil, err
	}
	return &intent{
		Bucket: bucket, Key: m.Key, Version: m.Version,
		Subject: EventSubject(s.opts.EventSubjectPrefix, bucket),
		MsgID:   "s3local:" + bucket + ":" + m.Version,
		Event:   data, Created: s.now(),
	}, nil
}

func (s *Server) nextSequencer() string {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	n := uint64(s.now().UnixNano())
	if n <= s.lastSeq {
		n = s.lastSeq + 1
	}
	s.lastSeq = n
	return fmt.Sprintf("%016X", n)
}

// deliver publishes an intent's event and clears the intent on success. An intent whose object
// version is no longer current (never committed, or already replaced by a newer write that has
// its own intent) is cleared without publishing.
func (s *Server) deliver(ctx context.Context, in *intent) error {
	if m, err := s.store.head(in.Bucket, in.Key); err != nil || m.Version != in.Version {
		return s.journal.done(in)
	}
	pctx, cancel := context.WithTimeout(ctx, s.opts.PublishTimeout)
	defer cancel()
	if err := s.opts.Publisher.Publish(pctx, in.Subject, in.Event, in.MsgID); err != nil {
		s.journal.release(in)
		return fmt.Errorf("s3local: publish event for s3://%s/%s to %s: %w", in.Bucket, in.Key, in.Subject, err)
	}
	s.published.Add(1)
	return s.journal.done(in)
}

// RepublishPending tries to deliver every pending intent once (Start does it, then a background
// loop repeats it every RetryInterval). It returns how many remain pending and the first error.
func (s *Server) RepublishPending(ctx context.Context) (int, error) {
	return s.republish(ctx, false)
}

// republish delivers the idle pending intents, oldest first; with stopOnError it gives up at the
// first failure (the bus is likely down) and leaves the rest to the background loop.
func (s *Server) republish(ctx context.Context, stopOnError bool) (int, error) {
	if s.opts.Publisher == nil {
		return s.journal.len(), nil
	}
	var first error
	claimed := s.journal.claim()
	for i, in := range claimed {
		err := s.deliver(ctx, in)
		if err != nil && first == nil {
			first = err
		}
		if err != nil && stopOnError {
			for _, rest := range claimed[i+1:] {
				s.journal.release(rest)
			}
			break
		}
	}
	return s.journal.len(), first
}

// PendingEvents is the number of events written to the journal and not yet acknowledged.
func (s *Server) PendingEvents() int { return s.journal.len() }

// PublishedEvents counts events acknowledged by the Publisher since New.
func (s *Server) PublishedEvents() int64 { return s.published.Load() }

func (s *Server) retryLoop() {
	defer close(s.retryDone)
	t := time.NewTicker(s.opts.RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if _, err := s.RepublishPending(s.baseCtx); err != nil {
				s.logf("retry: %v", err)
			}
		}
	}
}
