package s3local

import (
	"context"
	"fmt"
	"time"

	"github.com/hpa-plates/hpa/internal/bus"
)

// newIntent prepares the event of an object write (before the object becomes visible).
func (s *Server) newIntent(bucket string, m *objectMeta, eventName, reqID, sourceIP string) (*intent, error) {
	ev := bus.ObjectEvent{
		Bucket: bucket, Key: m.Key, Size: m.Size, ETag: m.ETag, Sequencer: s.nextSequencer(),
		EventName: eventName, EventTime: m.LastModified, Region: s.opts.Region,
	}
	data, err := bus.EncodeS3Events(bus.S3EventOptions{
		Region: s.opts.Region, PrincipalID: "s3local", SourceIP: sourceIP, RequestID: reqID,
		HostID: s.hostID, ConfigurationID: "s3local",
	}, ev)
	if err != nil {
		return nil, err
	}
	return &intent{
		Bucket: bucket, Key: m.Key, Version: m.Version,
		Subject: bus.EventSubject(s.opts.EventSubjectPrefix, bucket),
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
